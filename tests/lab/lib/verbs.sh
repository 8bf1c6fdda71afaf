# shellcheck shell=bash
# The verbs of tests/lab/lab, one function each: verb_<name> LAB [ARGS].

verb_image() { # LAB
	ensure_deps
	ensure_image
}

verb_mirror() { # LAB
	local rootfs
	ensure_deps
	rootfs=$(ensure_image)
	ensure_mirror "$rootfs"
	printf '%s\n%s\n' "$LAB_WWW_DEBIAN" "$LAB_WWW_KUBE"
}

lab_lock() { # LAB: one verb at a time changes a lab
	mkdir -p "$LAB_RUN"
	exec 9>"$LAB_RUN/.$1.lock"
	flock 9
	# Hosts and the mirror server outlive this process; the lock must not.
	trap 'flock -u 9 2>/dev/null || true' EXIT
}

verb_up() { # LAB [--masters N] [--workers M]
	local lab=$1 masters=3 workers=2 start t
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--masters) masters=${2:?--masters needs a number} && shift 2 ;;
		--workers) workers=${2:?--workers needs a number} && shift 2 ;;
		*) die "up: unknown argument '$1' (usage: up [--masters N] [--workers M] [--name LAB])" ;;
		esac
	done
	[[ $masters =~ ^[0-9]+$ && $masters -ge 1 && $masters -le $LAB_MAX_MASTERS ]] ||
		die "up: --masters must be 1..$LAB_MAX_MASTERS"
	[[ $workers =~ ^[0-9]+$ && $workers -le $LAB_MAX_WORKERS ]] ||
		die "up: --workers must be 0..$LAB_MAX_WORKERS"
	start=$(now_ms)
	ensure_deps
	lab_lock "$lab"
	if load_state "$lab"; then
		if [ "$LAB_MASTERS" != "$masters" ] || [ "$LAB_WORKERS" != "$workers" ]; then
			die "lab '$lab' exists with $LAB_MASTERS masters and $LAB_WORKERS workers; take it down first: $0 down --name $lab"
		fi
		ensure_mirror "$LAB_IMAGE"
		save_state "$lab"
	else
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
	boot_hosts "$lab"
	log "lab '$lab' is up: $((LAB_MASTERS + LAB_WORKERS)) hosts ready in $(elapsed "$t") (whole run $(elapsed "$start"))"
	verb_status "$lab" >&2
}

# First `up` of a lab: image, mirror, subnet, client key, state.
lab_create() { # LAB MASTERS WORKERS
	local lab=$1 dir
	dir=$(lab_dir "$lab")
	# Leftovers of an earlier lab of this name (a killed `up`, a reboot of this machine).
	lab_teardown "$lab"
	LAB_IMAGE=$(ensure_image)
	ensure_mirror "$LAB_IMAGE"
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
	printf '%-10s %-7s %-15s %-9s %-12s %s\n' HOST ROLE ADDRESS STATE LINK MEMORY
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
		printf '%-10s %-7s %-15s %-9s %-12s %s\n' "$h" "$(host_role "$h")" "$(host_ip "$h")" \
			"$state" "$link" "$mem"
	done < <(host_names "$LAB_MASTERS" "$LAB_WORKERS")
	printf 'vip:         %s (reserved, unassigned by the lab)\n' "$LAB_VIP"
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
ssh:
  user: $LAB_USER
  identityFile: $dir/id_ed25519
  knownHosts: $dir/known_hosts
  hostKeyPolicy: strict
packages:
  kubernetesRepo: $(mirror_url)/kubernetes/core:/stable:/v{minor}/deb/
  dockerRepo: $(mirror_url)/docker/
  manifestsMirror: $(mirror_url)/addons/
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

host_verb() { # LAB HOST: common checks of the per-host verbs
	[ $# -eq 2 ] || die "usage: $0 VERB HOST [--name LAB]"
	lab_lock "$1"
	require_lab "$1"
	require_host "$2"
}
