for p in {% for p in packages %}{{ p | quote }} {% endfor %}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || exit 1
done
