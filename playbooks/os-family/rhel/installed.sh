rpm -q{% for p in packages %} {{ p | quote }}{% endfor %} >/dev/null 2>&1
