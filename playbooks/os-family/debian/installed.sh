# One dpkg-query for all of them; each must be fully installed.
test "$(dpkg-query -W -f='${Status}\n' {% for p in packages %}{{ p | quote }} {% endfor %}2>/dev/null | grep -c ' ok installed$')" = {{ packages | length }}
