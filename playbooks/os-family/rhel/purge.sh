dnf remove -y -q{% for p in packages %} {{ p | quote }}{% endfor %}
