for p in {% for p in packages %}{{ p | quote }} {% endfor %}; do
  v=$(rpm -q --qf '%{VERSION}' "$p" 2>/dev/null) || exit 1
  [ "$v" = {{ version | quote }} ] || exit 1
done
