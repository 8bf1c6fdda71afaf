# move_leader: when this master's etcd member leads, hands the leadership to another member
# (etcd's transfer-leadership through its gRPC gateway, with the healthcheck client
# certificate), so the others need no election while this one restarts and the API never
# waits on one. Prints what it did; a failure to move is not fatal (the others elect).
tls="--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key"
etcd=https://127.0.0.1:{{ defaults.ports.etcdClient }}
move_leader() {
  st=$(curl -sS --max-time 5 $tls -X POST -d '{}' $etcd/v3/maintenance/status 2>/dev/null) || return 0
  me=$(echo "$st" | sed -n 's/.*"member_id": *"\([0-9]*\)".*/\1/p')
  leader=$(echo "$st" | sed -n 's/.*"leader": *"\([0-9]*\)".*/\1/p')
  [ -n "$me" ] && [ "$me" = "$leader" ] || return 0
  other=$(curl -sS --max-time 5 $tls -X POST -d '{}' $etcd/v3/cluster/member/list 2>/dev/null |
    grep -o '"ID": *"[0-9]*"' | grep -o '[0-9][0-9]*' | grep -vx "$me" | head -n 1)
  [ -n "$other" ] || return 0
  curl -sS --max-time 10 $tls -X POST -d "{\"targetID\": \"$other\"}" $etcd/v3/maintenance/transfer-leadership >/dev/null 2>&1 || true
  echo "etcd leadership moved to member $other"
}
