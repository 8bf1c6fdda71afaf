# Prints "mode owner group sha256" of the file named by $1, or "absent".
if [ -e "$1" ]; then
  printf '%s %s\n' "$(stat -c '%a %U %G' "$1")" "$(sha256sum < "$1" | cut -d' ' -f1)"
else
  echo absent
fi
