# Entries pinned as name=version become dnf's name-version.
dnf install -y -q --setopt=install_weak_deps=False --disableexcludes=kubernetes{% for p in packages %} {{ p | replace("=", "-") | quote }}{% endfor %}
