test "$(apt-mark showhold{% for p in packages %} {{ p | quote }}{% endfor %} | wc -l)" = {{ packages | length }}
