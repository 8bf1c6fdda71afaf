# Runs the task script that arrives on stdin. It is spooled to a private temp file first so that
# commands inside it cannot swallow the rest of the script from stdin, and secrets in it never
# appear on a command line.
umask 077
script=$(mktemp /tmp/installer-task.XXXXXXXX) || exit 125
trap 'rm -f "$script"' EXIT
cat > "$script"
# The task itself runs with the usual umask: files it creates are meant to be readable.
umask 022
sh -e "$script" </dev/null
