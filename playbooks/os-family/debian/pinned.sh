for p in {% for p in packages %}{{ p | quote }} {% endfor %}; do
  # Fully installed, not only at the version: a dpkg run killed mid-unpack leaves the package
  # "half-installed" with the new version already recorded.
  s=$(dpkg-query -W -f='${Status}|${Version}' "$p" 2>/dev/null) || exit 1
  case "${s%%|*}" in *" ok installed") ;; *) exit 1 ;; esac
  v=${s#*|}
  [ "${v%%-*}" = {{ version | quote }} ] || exit 1
done
