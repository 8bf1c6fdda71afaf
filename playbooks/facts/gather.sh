# Facts about this host, one `key=value` per line. Read-only; no root needed.
# Administrative commands live in sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
kv() { printf '%s=%s\n' "$1" "$2"; }
if [ -r /etc/os-release ]; then
  . /etc/os-release
  kv os_id "${ID:-unknown}"
  kv os_version "${VERSION_ID:-unknown}"
  kv os_pretty "${PRETTY_NAME:-unknown}"
  kv os_codename "${VERSION_CODENAME:-unknown}"
  kv os_like "${ID_LIKE:-}"
fi
kv arch "$(uname -m)"
kv hostname "$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
kv cpus "$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
kv mem_kb "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
kv swap_active "$(awk 'NR > 1' /proc/swaps | wc -l)"
kv machine_id "$(cat /etc/machine-id 2>/dev/null)"
kv user "$(id -un)"
kv uid "$(id -u)"
if [ -d /run/systemd/system ]; then kv init systemd; else kv init other; fi
for bin in sh systemctl apt-get apt-mark dpkg dpkg-query dnf rpm ip modprobe sysctl sudo curl; do
  if command -v "$bin" >/dev/null 2>&1; then kv binary "$bin"; fi
done
ip -o link show 2>/dev/null | awk '{name=$2; sub(":$", "", name); sub("@.*", "", name); for (i = 1; i < NF; i++) if ($i == "link/ether") print "mac=" name " " $(i+1)}'
ip -o addr show 2>/dev/null | awk '$3 == "inet" || $3 == "inet6" {print "addr=" $2 " " $4}'
ss -ltnH 2>/dev/null | awk '{n = split($4, a, ":"); print "listen=" a[n]}' | sort -u
kv cgroup_fs "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='pkg=${Package} ${Version} ${Status}\n' \
    kubelet kubeadm kubectl cri-tools kubernetes-cni containerd containerd.io docker.io docker-ce cri-dockerd \
    keepalived haproxy 2>/dev/null | awk '$5 == "installed" {print $1 " " $2}'
fi
# One systemctl for all units: it answers one line per unit, in order.
units="kubelet containerd docker cri-docker.socket keepalived haproxy"
systemctl is-active $units 2>/dev/null |
  awk -v units="$units" 'BEGIN { split(units, unit, " ") } { print "active_" unit[NR] "=" $0 }'
[ -f /etc/kubernetes/manifests/kube-apiserver.yaml ] && kv control_plane_manifests yes
[ -f /etc/kubernetes/kubelet.conf ] && kv kubelet_conf yes
exit 0
