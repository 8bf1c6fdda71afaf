# Does anything already answer on the VIP? A refused connection is an answer too;
# only a timeout or "no route" (no ARP reply) means the address is free.
answers=false
for port in 22 {{ vars.vip_port }}; do
  err=$(timeout 3 bash -c ': </dev/tcp/{{ vars.vip }}/'"$port" 2>&1) && answers=true
  case "$err" in *"Connection refused"*) answers=true ;; esac
done
# A neighbour that answered ARP just now (stale entries from an old holder do not count).
if ip neigh show {{ vars.vip }} 2>/dev/null | grep -q REACHABLE; then answers=true; fi
