# Does anything already answer on the VIP? A refused connection is an answer too;
# only a timeout or "no route" (no ARP reply) means the address is free.
# `seen` says what answered, so the user can find the machine that squats the address.
answers=false
seen=""
started=$(date +%s)
before=$(ip neigh show {{ vars.vip }} 2>/dev/null || true)
for port in 22 {{ vars.vip_port }}; do
  if err=$(timeout 3 bash -c ': </dev/tcp/{{ vars.vip }}/'"$port" 2>&1); then
    answers=true seen="$seen${seen:+, }port $port accepts connections"
  else
    case "$err" in *"Connection refused"*) answers=true seen="$seen${seen:+, }port $port refuses connections" ;; esac
  fi
done
# A neighbour that answers ARP holds the address, even with its ports firewalled. An entry
# that was already REACHABLE before these probes may be an earlier holder's (a cluster reset
# seconds ago): keep using the address until the kernel asks again (after its reachable
# time, up to about 45 s) and see whether anyone answers then.
if [ "$answers" = false ]; then
  case "$before" in *REACHABLE*) fresh=false ;; *) fresh=true ;; esac
  while :; do
    case "$(ip neigh show {{ vars.vip }} 2>/dev/null || true)" in
      *REACHABLE*) if [ "$fresh" = true ]; then answers=true; break; fi ;;
      *STALE* | *DELAY* | *PROBE*) fresh=true ;;
      *) break ;; # no entry, INCOMPLETE or FAILED: nobody answered ARP
    esac
    if [ $(( $(date +%s) - started )) -ge 60 ]; then
      # Still REACHABLE after a minute: someone keeps confirming it.
      [ "$fresh" = true ] || answers=true
      break
    fi
    timeout 1 bash -c ': </dev/tcp/{{ vars.vip }}/22' 2>/dev/null || sleep 1
  done
fi
if [ "$answers" = true ]; then
  mac=$(ip neigh show {{ vars.vip }} 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }' | head -n 1)
  seen="$seen${seen:+, }${mac:+MAC $mac}"
  seen=${seen%, }
fi
