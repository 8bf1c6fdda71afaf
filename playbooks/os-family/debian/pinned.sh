for p in {% for p in packages %}{{ p | quote }} {% endfor %}; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || exit 1
  [ "${v%%-*}" = {{ version | quote }} ] || exit 1
done
