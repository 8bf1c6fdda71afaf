apt-mark hold{% for p in packages %} {{ p | quote }}{% endfor %}
