DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 purge -y -q{% for p in packages %} {{ p | quote }}{% endfor %}
