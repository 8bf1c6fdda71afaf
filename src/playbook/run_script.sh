# Runs the task script that arrives on stdin. It is read whole before it runs, so that
# commands inside it cannot swallow the rest of it from stdin, and it is run with eval, so
# that secrets in it never appear on a command line. In memory, not spooled to a temp file:
# three fewer processes (mktemp, sh, rm) on every round trip.
script=$(cat) || exit 125
# The task runs with the usual umask: files it creates are meant to be readable.
umask 022
# The errexit of `sh -e`, in a subshell: the task's own `exit` and traps stay its own.
(set -e; eval "$script") </dev/null
