apt-mark unhold{% for p in packages %} {{ p | quote }}{% endfor %} >/dev/null 2>&1 || true
