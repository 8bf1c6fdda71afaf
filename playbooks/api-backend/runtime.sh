# haproxy's runtime API on this master (the stats socket in load-balancer/haproxy.cfg.j2).
backend={{ defaults.haproxy.backend }}
# haproxy_cli COMMAND: prints haproxy's answer; fails, saying why, when it cannot be asked.
haproxy_cli() {
  if [ ! -S {{ defaults.haproxy.adminSocket }} ]; then
    echo "haproxy on this master has no runtime API socket {{ defaults.haproxy.adminSocket }} (its configuration predates it): run \`installer up\` once to rewrite it, then run this command again" >&2
    return 1
  fi
  echo "$1" | socat -t 5 stdio unix-connect:{{ defaults.haproxy.adminSocket }}
}
# drained NAME: whether NAME's admin state has haproxy's forced-drain bit (8).
drained() {
  haproxy_cli "show servers state $backend" |
    awk -v s="$1" '$4 == s { found = 1; drain = int($7 / 8) % 2 } END { exit !(found && drain) }'
}
# set_state NAME STATE: ready or drain; haproxy answers nothing when it obeys.
set_state() {
  said=$(haproxy_cli "set server $backend/$1 state $2") || return 1
  if [ -n "$said" ]; then
    echo "haproxy refused to set $backend/$1 to $2: $said" >&2
    return 1
  fi
}
# status NAME: haproxy's view of NAME (UP, DOWN, DRAIN, "UP 1/2" while going down...).
status() {
  haproxy_cli "show stat" | awk -F, -v s="$1" -v b="$backend" '$1 == b && $2 == s { print $18 }'
}
