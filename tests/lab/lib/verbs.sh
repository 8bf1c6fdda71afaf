# shellcheck shell=bash
# The verbs of tests/lab/lab, one function each: verb_<name> LAB [ARGS].

# --os OS for the verbs that build without a lab: sets SUITES to the suites that OS needs.
os_suites_arg() { # VERB [--os OS]
	local verb=$1 os=$LAB_DEFAULT_OS
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--os) os=${2:?--os needs a value} && shift 2 ;;
		*) die "$verb: unknown argument '$1' (usage: $verb [--os debian12|debian13|mixed])" ;;
		esac
	done
	check_os "$os"
	LAB_HOST_OS=$(plan_host_os 2 2 "$os")
	mapfile -t SUITES < <(lab_suites)
}

check_os() { # OS
	case " $LAB_OS_LIST mixed " in
	*" $1 "*) ;;
	*) die "unknown OS '$1': use one of $LAB_OS_LIST mixed" ;;
	esac
}

verb_image() { # LAB [--os OS]
	local suite
	shift
	os_suites_arg image "$@"
	ensure_deps
	for suite in "${SUITES[@]}"; do
		printf '%s %s\n' "$suite" "$(ensure_image "$suite")"
	done
}

verb_mirror() { # LAB [--os OS]
	local w f rel
	shift
	os_suites_arg mirror "$@"
	ensure_deps
	ensure_mirror "${SUITES[@]}"
	for w in $LAB_WWW_DEBIAN; do printf 'debian %s %s\n' "${w%%:*}" "${w#*:}"; done
	for w in $LAB_WWW_DOCKER; do printf 'docker %s %s\n' "${w%%:*}" "${w#*:}"; done
	printf 'kubernetes+github %s\n' "$LAB_WWW_KUBE"
	# The release assets' checksums, as served next to them (github/.../vVERSION/SHA256SUMS).
	while read -r f; do
		rel=${f#"$LAB_WWW_KUBE"/}
		awk -v d="${rel%/SHA256SUMS}" '{ print "sha256", $1, d "/" $2 }' "$f"
	done < <(find "$LAB_WWW_KUBE/github" -name SHA256SUMS 2>/dev/null | sort)
}

lab_lock() { # LAB: one verb at a time changes a lab
	mkdir -p "$LAB_RUN"
	exec 9>"$LAB_RUN/.$1.lock"
	flock 9
	# Hosts and the mirror server outlive this process; the lock must not.
	trap 'flock -u 9 2>/dev/null || true' EXIT
}

verb_up() { # LAB [--masters N] [--workers M] [--os OS] [--host-os HOST=OS]... [--busy-apt HOST|none]
	local lab=$1 masters=3 workers=2 os=$LAB_DEFAULT_OS overrides=() busy="" start t plan ov suites
	local usage="usage: up [--masters N] [--workers M] [--os debian12|debian13|mixed] [--host-os HOST=OS]... [--busy-apt HOST|none] [--name LAB]"
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--masters) masters=${2:?--masters needs a number} && shift 2 ;;
		--workers) workers=${2:?--workers needs a number} && shift 2 ;;
		--os) os=${2:?--os needs a value} && shift 2 ;;
		--host-os) overrides+=("${2:?--host-os needs HOST=OS}") && shift 2 ;;
		--busy-apt) busy=${2:?--busy-apt needs a host or none} && shift 2 ;;
		*) die "up: unknown argument '$1' ($usage)" ;;
		esac
	done
	[[ $masters =~ ^[0-9]+$ && $masters -ge 1 && $masters -le $LAB_MAX_MASTERS ]] ||
		die "up: --masters must be 1..$LAB_MAX_MASTERS"
	[[ $workers =~ ^[0-9]+$ && $workers -le $LAB_MAX_WORKERS ]] ||
		die "up: --workers must be 0..$LAB_MAX_WORKERS"
	check_os "$os"
	for ov in "${overrides[@]}"; do
		[[ $ov == *=* ]] || die "up: --host-os needs HOST=OS, not '$ov'"
		host_names "$masters" "$workers" | grep -qx "${ov%%=*}" || die "up: --host-os: no host '${ov%%=*}' in this lab"
		[[ " $LAB_OS_LIST " == *" ${ov#*=} "* ]] || die "up: --host-os: unknown OS '${ov#*=}' (use one of $LAB_OS_LIST)"
	done
	plan=$(plan_host_os "$masters" "$workers" "$os" "${overrides[@]}")
	# One host keeps apt busy right after boot: the first worker, else the last master.
	if [ -z "$busy" ]; then
		if [ "$workers" -gt 0 ]; then busy=worker-1; else busy=master-$masters; fi
	fi
	[ "$busy" = none ] || host_names "$masters" "$workers" | grep -qx "$busy" ||
		die "up: --busy-apt: no host '$busy' in this lab"
	start=$(now_ms)
	ensure_deps
	lab_lock "$lab"
	if load_state "$lab"; then
		if [ "$LAB_MASTERS" != "$masters" ] || [ "$LAB_WORKERS" != "$workers" ] ||
			[ "$LAB_HOST_OS" != "$plan" ] || [ "$LAB_BUSY_APT" != "$busy" ]; then
			die "lab '$lab' exists with another shape ($LAB_MASTERS masters, $LAB_WORKERS workers, $LAB_HOST_OS, busy apt: $LAB_BUSY_APT); take it down first: $0 down --name $lab"
		fi
		local images=$LAB_IMAGES
		mapfile -t suites < <(lab_suites)
		ensure_mirror "${suites[@]}"
		# Running hosts keep the image they booted on.
		LAB_IMAGES=$images
		save_state "$lab"
	else
		LAB_HOST_OS=$plan LAB_BUSY_APT=$busy
		lab_create "$lab" "$masters" "$workers"
	fi
	load_state "$lab"

	t=$(now_ms)
	net_up "$lab"
	mirror_www "$lab"
	mirror_start "$lab"
	# Every host's systemd takes inotify instances from root's shared budget (128 by default).
	if [ "$(sysctl -n fs.inotify.max_user_instances)" -lt 8192 ]; then
		sysctl -qw fs.inotify.max_user_instances=8192 2>/dev/null ||
			warn "could not raise fs.inotify.max_user_instances; large labs may boot degraded"
	fi
	# The kernel's ARP table is one for all network namespaces (gc_thresh3 1024 entries by
	# default): every host knowing every other host overflows it past ~32 hosts
	# ("neighbour: arp_cache: neighbor table overflow!"), and probes fail as unreachable.
	if [ "$(sysctl -n net.ipv4.neigh.default.gc_thresh3)" -lt 16384 ]; then
		sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=8192 \
			net.ipv4.neigh.default.gc_thresh3=16384 2>/dev/null ||
			warn "could not raise the ARP table's size; labs past ~32 hosts will lose neighbours"
	fi
	boot_hosts "$lab"
	log "lab '$lab' is up: $((LAB_MASTERS + LAB_WORKERS)) hosts ready in $(elapsed "$t") (whole run $(elapsed "$start"))"
	verb_status "$lab" >&2
}

# First `up` of a lab: images, mirror, subnet, client key, state (LAB_HOST_OS and LAB_BUSY_APT
# are set by the caller).
lab_create() { # LAB MASTERS WORKERS
	local lab=$1 dir suites
	dir=$(lab_dir "$lab")
	# Leftovers of an earlier lab of this name (a killed `up`, a reboot of this machine).
	lab_teardown "$lab"
	mapfile -t suites < <(lab_suites)
	ensure_mirror "${suites[@]}"
	LAB_MASTERS=$2 LAB_WORKERS=$3
	LAB_PORT=${LAB_MIRROR_PORT:-$LAB_MIRROR_PORT_DEFAULT}
	mkdir -p "$dir/hosts"
	ssh-keygen -q -t ed25519 -N '' -C "installer-lab-$lab" -f "$dir/id_ed25519"
	(
		exec 6>"$LAB_RUN/.alloc.lock"
		flock 6
		LAB_OCTET=$(allocate_octet "$lab")
		save_state "$lab"
	)
}

# Prepares and boots every host in parallel (each job reports its own failure), then waits
# for all sshds; writes known_hosts and the inventory.
boot_hosts() { # LAB (after load_state)
	local lab=$1 h failed=0 pids=() hosts dir
	dir=$(lab_dir "$lab")
	mapfile -t hosts < <(host_names "$LAB_MASTERS" "$LAB_WORKERS")
	for h in "${hosts[@]}"; do
		(
			host_net_up "$lab" "$h"
			host_prepare "$lab" "$h"
			host_heal "$lab" "$h"
			host_boot "$lab" "$h"
		) &
		pids+=($!)
	done
	for h in "${pids[@]}"; do wait "$h" || failed=1; done
	[ "$failed" = 0 ] || die "preparing the hosts failed (see above); clean up with: $0 down --name $lab"
	write_known_hosts "$lab"
	write_inventory "$lab" >"$dir/inventory.yaml"

	if ! failed=$(wait_ssh "${LAB_BOOT_TIMEOUT:-60}" "${hosts[@]}"); then
		for h in $failed; do
			warn "$h: sshd does not answer; last console lines:"
			tail -n 15 "$(host_dir "$lab" "$h")/console.log" >&2 || true
		done
		die "the lab did not come up; inspect with '$0 status --name $lab', clean up with '$0 down --name $lab'"
	fi
}

verb_down() { # LAB
	local lab=$1
	lab_lock "$lab"
	lab_teardown "$lab"
	log "lab '$lab' is down"
}

lab_teardown() { # LAB
	local dir
	dir=$(lab_dir "$1")
	hosts_down "$1"
	mirror_stop "$1"
	net_down "$1"
	remove_tree "$dir"
}

verb_status() { # LAB
	local lab=$1 h state link mem cg
	require_lab "$lab"
	printf 'lab %s: %s masters, %s workers on %s.0/24 (bridge %s)\n' "$lab" "$LAB_MASTERS" \
		"$LAB_WORKERS" "$LAB_SUBNET" "$(lab_bridge "$lab")"
	printf '%-10s %-7s %-9s %-15s %-9s %-12s %s\n' HOST ROLE OS ADDRESS STATE LINK MEMORY
	while read -r h; do
		state=stopped mem=-
		if host_running "$lab" "$h"; then
			state=running
			cg=$(grep '/memory/' "$(host_dir "$lab" "$h")/cgroups" 2>/dev/null || true)
			if [ -n "$cg" ] && [ -r "$cg/memory.usage_in_bytes" ]; then
				mem="$(($(cat "$cg/memory.usage_in_bytes") / 1048576)) MiB"
			fi
		fi
		link=connected
		host_partitioned "$lab" "$h" && link=partitioned
		printf '%-10s %-7s %-9s %-15s %-9s %-12s %s\n' "$h" "$(host_role "$h")" "$(host_os "$h")" \
			"$(host_ip "$h")" "$state" "$link" "$mem"
	done < <(host_names "$LAB_MASTERS" "$LAB_WORKERS")
	printf 'vip:         %s (reserved, unassigned by the lab)\n' "$LAB_VIP"
	printf 'busy apt:    %s (holds the dpkg lock for %ss after each boot)\n' "$LAB_BUSY_APT" \
		"${LAB_BUSY_APT_SECONDS:-25}"
	if mirror_pid "$lab" >/dev/null; then state=serving; else state="not running"; fi
	printf 'mirror:      %s/ (%s; hosts know it as %s)\n' "$(mirror_url)" "$state" "$LAB_MIRROR_NAME"
	printf 'ssh:         %s@HOST, key %s\n' "$LAB_USER" "$(lab_dir "$lab")/id_ed25519"
	printf 'known_hosts: %s\n' "$(lab_dir "$lab")/known_hosts"
	printf 'inventory:   %s\n' "$(lab_dir "$lab")/inventory.yaml"
}

verb_inventory() { # LAB
	require_lab "$1"
	write_inventory "$1"
}

# The installer's inventory for this lab (see DESIGN.md "The inventory").
write_inventory() { # LAB
	local dir h version
	dir=$(lab_dir "$1")
	version=$(grep -m1 '^kubernetes ' "$LAB_HOME/mirror/versions" | awk '{ print $NF }')
	cat <<EOF
# Generated by tests/lab/lab for lab '$1'; regenerate with: tests/lab/lab inventory --name $1
apiVersion: installer/v1
kind: Inventory
cluster:
  name: $1
  kubernetes: $version
  runtime: docker
  network: {pods: 10.244.0.0/16, services: 10.96.0.0/12}
  controlPlane: {vip: $LAB_VIP, port: 8443}
EOF
	# This machine's kernel runs cgroup v1 (hybrid), and so do the lab's hosts: kubelet 1.35+
	# starts there only when told to, as on any real cgroup v1 server.
	if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
		cat <<EOF
  kubeadm:
    KubeletConfiguration: {failCgroupV1: false}
EOF
	fi
	cat <<EOF
ssh:
  user: $LAB_USER
  identityFile: $dir/id_ed25519
  knownHosts: $dir/known_hosts
  hostKeyPolicy: strict
packages:
  kubernetesRepo: $(mirror_url)/kubernetes/core:/stable:/v{minor}/{format}/
  dockerRepo: $(mirror_url)/docker/linux/{distro}
  criDockerdRepo: $(mirror_url)/github/Mirantis/cri-dockerd/releases/download
  manifestsMirror: $(mirror_url)/addons/
EOF
	# The lab's cri-dockerd packages are pinned the way a user pins upstream's.
	local sums
	sums=$(find "$LAB_WWW_KUBE/github" -name SHA256SUMS 2>/dev/null | sort | xargs -r cat |
		awk '$2 ~ /[.]deb$/ { printf "    %s: %s\n", $2, $1 }')
	if [ -n "$sums" ]; then
		printf '  criDockerdSha256:\n%s\n' "$sums"
	fi
	cat <<EOF
hosts:
EOF
	while read -r h; do
		printf '  - {name: %s, address: %s, roles: [%s]}\n' "$h" "$(host_ip "$h")" "$(host_role "$h")"
	done < <(host_names "$LAB_MASTERS" "$LAB_WORKERS")
}

verb_ssh() { # LAB HOST [CMD...]
	local lab=$1 host=${2:?usage: ssh HOST [CMD...]} opts
	shift 2
	require_lab "$lab"
	require_host "$host"
	mapfile -t opts < <(ssh_opts "$lab")
	exec ssh "${opts[@]}" -- "$LAB_USER@$(host_ip "$host")" "$@"
}

verb_exec() { # LAB HOST CMD...
	local lab=$1 host=${2:?usage: exec HOST CMD...} opts
	shift 2
	[ $# -gt 0 ] || die "usage: exec HOST CMD..."
	require_lab "$lab"
	require_host "$host"
	mapfile -t opts < <(ssh_opts "$lab")
	exec ssh "${opts[@]}" -o BatchMode=yes -- "$LAB_USER@$(host_ip "$host")" "$@"
}

verb_kill() { # LAB HOST
	host_verb "$@"
	host_running "$1" "$2" || die "$2 is not running"
	host_kill "$1" "$2"
	log "$2 killed (its init got SIGKILL)"
}

verb_stop() { # LAB HOST
	host_verb "$@"
	host_stop "$1" "$2"
	log "$2 stopped"
}

verb_start() { # LAB HOST
	local failed
	host_verb "$@"
	if ! host_running "$1" "$2"; then
		host_net_up "$1" "$2"
		host_prepare "$1" "$2"
		host_boot "$1" "$2"
	fi
	if ! failed=$(wait_ssh "${LAB_BOOT_TIMEOUT:-60}" "$2"); then
		tail -n 15 "$(host_dir "$1" "$2")/console.log" >&2 || true
		die "$failed: sshd does not answer after start"
	fi
	log "$2 is running"
}

verb_partition() { # LAB HOST
	host_verb "$@"
	host_partition "$1" "$2"
	log "$2 is cut off the lab network"
}

verb_heal() { # LAB HOST
	host_verb "$@"
	host_heal "$1" "$2"
	log "$2 is back on the lab network"
}

verb_disk() { # LAB HOST DEV MB [empty|ext4]
	[ $# -ge 4 ] || die "usage: $0 disk HOST DEV MB [empty|ext4] [--name LAB]"
	lab_lock "$1"
	require_lab "$1"
	require_host "$2"
	case $3 in /dev/*) ;; *) die "DEV must be a path under /dev" ;; esac
	host_add_disk "$@"
	log "$2: $4 MB raw disk at $3 (${5:-empty})"
}

verb_drop-ssh() { # LAB HOST
	host_verb "$@"
	host_running "$1" "$2" || die "$2 is not running"
	host_drop_ssh "$1" "$2"
	log "$2: every SSH session and the commands it ran are gone"
}

host_verb() { # LAB HOST: common checks of the per-host verbs
	[ $# -eq 2 ] || die "usage: $0 VERB HOST [--name LAB]"
	lab_lock "$1"
	require_lab "$1"
	require_host "$2"
}
