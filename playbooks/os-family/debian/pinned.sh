# One dpkg-query for all of them; each must be fully installed, not only at the version (a dpkg
# run killed mid-unpack leaves the package "half-installed" with the new version recorded).
dpkg-query -W -f='${Package} ${Status} ${Version}\n' {% for p in packages %}{{ p | quote }} {% endfor %}2>/dev/null |
  awk -v want={{ version | quote }} -v n={{ packages | length }} '
    $3 == "ok" && $4 == "installed" { sub(/-.*/, "", $5); if ($5 == want) ok++ }
    END { exit ok != n }'
