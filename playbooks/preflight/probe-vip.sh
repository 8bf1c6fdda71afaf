# Does anything already answer on the VIP? A refused connection is an answer too;
# only a timeout or "no route" (no ARP reply) means the address is free.
# `seen` says what answered, so the user can find the machine that squats the address.
answers=false
seen=""
for port in 22 {{ vars.vip_port }}; do
  if err=$(timeout 3 bash -c ': </dev/tcp/{{ vars.vip }}/'"$port" 2>&1); then
    answers=true seen="$seen${seen:+, }port $port accepts connections"
  else
    case "$err" in *"Connection refused"*) answers=true seen="$seen${seen:+, }port $port refuses connections" ;; esac
  fi
done
# A neighbour that answered ARP just now (stale entries from an old holder do not count).
if ip neigh show {{ vars.vip }} 2>/dev/null | grep -q REACHABLE; then answers=true; fi
if [ "$answers" = true ]; then
  mac=$(ip neigh show {{ vars.vip }} 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }' | head -n 1)
  seen="$seen${seen:+, }${mac:+MAC $mac}"
  seen=${seen%, }
fi
