apt-mark -o DPkg::Lock::Timeout=300 hold{% for p in packages %} {{ p | quote }}{% endfor %}
