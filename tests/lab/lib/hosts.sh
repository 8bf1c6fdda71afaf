# shellcheck shell=bash
# Hosts: systemd-nspawn machines booted on an overlay of the base image, each in its own
# network namespace. Per host, $LAB_RUN/<lab>/hosts/<host>/ holds upper/ work/ merged/ (the
# overlay), nspawn.pid, console.log, cgroups and the public halves of its SSH host keys.

host_dir() { printf '%s/hosts/%s\n' "$(lab_dir "$1")" "$2"; }
host_machine() { printf 'il-%s-%s\n' "$1" "$2"; }

# Mounts the host's overlay root (on the image of its OS) and writes its identity into the
# upper layer the first time: hostname, hosts, empty resolv.conf, machine-id, SSH host keys, the
# lab user's authorized key, apt sources pointing at the lab mirror, and on the busy-apt host
# the boot-time dpkg lock holder.
host_prepare() { # LAB HOST (after load_state)
	local lab=$1 host=$2 hdir m t uid gid h suite image
	hdir=$(host_dir "$lab" "$host")
	m=$hdir/merged
	suite=$(os_suite "$(host_os "$host")")
	image=$(map_get "$LAB_IMAGES" "$suite") ||
		die "no $suite image recorded for lab $lab; take it down and up again"
	mkdir -p "$hdir/upper" "$hdir/work" "$m"
	if ! mountpoint -q "$m"; then
		mount -t overlay overlay \
			-o "lowerdir=$image,upperdir=$hdir/upper,workdir=$hdir/work" "$m"
	fi
	[ -f "$hdir/prepared" ] && return 0

	printf '%s\n' "$host" >"$m/etc/hostname"
	{
		printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
		while read -r h; do printf '%s\t%s\n' "$(host_ip "$h")" "$h"; done < <(host_names "$LAB_MASTERS" "$LAB_WORKERS")
		printf '%s\t%s\n' "$LAB_GATEWAY" "$LAB_MIRROR_NAME"
	} >"$m/etc/hosts"
	# No name servers: nothing on a host may try to leave the lab network.
	: >"$m/etc/resolv.conf"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$m/etc/machine-id"
	echo >>"$m/etc/machine-id"

	for t in ed25519 ecdsa; do
		rm -f "$m/etc/ssh/ssh_host_${t}_key" "$m/etc/ssh/ssh_host_${t}_key.pub"
		ssh-keygen -q -t "$t" -N '' -C "root@$host" -f "$m/etc/ssh/ssh_host_${t}_key"
		cp "$m/etc/ssh/ssh_host_${t}_key.pub" "$hdir/ssh_host_${t}_key.pub"
	done

	uid=$(awk -F: -v u="$LAB_USER" '$1 == u { print $3 }' "$m/etc/passwd")
	gid=$(awk -F: -v u="$LAB_USER" '$1 == u { print $4 }' "$m/etc/passwd")
	[ -n "$uid" ] || die "the base image has no user '$LAB_USER'; rebuild it (tests/lab/image/)"
	install -d -m 0700 -o "$uid" -g "$gid" "$m/home/$LAB_USER/.ssh"
	install -m 0600 -o "$uid" -g "$gid" "$(lab_dir "$lab")/id_ed25519.pub" \
		"$m/home/$LAB_USER/.ssh/authorized_keys"

	install -m 0644 "$LAB_KEYDIR/archive-keyring.gpg" "$m/usr/share/keyrings/installer-lab-archive-keyring.gpg"
	{
		printf 'Types: deb\nURIs: http://%s%s/debian\n' "$LAB_MIRROR_NAME" "$(port_suffix)"
		printf 'Suites: %s\nComponents: main\n' "$suite"
		printf 'Signed-By: /usr/share/keyrings/installer-lab-archive-keyring.gpg\n'
	} >"$m/etc/apt/sources.list.d/debian.sources"
	[ "$host" != "${LAB_BUSY_APT:-none}" ] || busy_apt_prepare "$m"
	touch "$hdir/prepared"
}

# The busy-apt host: apt-daily-upgrade.timer also fires one second after every boot and its
# service holds the dpkg lock for LAB_BUSY_APT_SECONDS (default 25), as unattended-upgrade
# does on a server catching up after being off.
busy_apt_prepare() { # MERGED_ROOT
	local m=$1 secs=${LAB_BUSY_APT_SECONDS:-25}
	install -D -m 0755 "$LAB_HOME/lib/busy-apt/unattended-upgrade" \
		"$m/usr/local/lib/installer-lab/unattended-upgrade"
	install -D -m 0644 "$LAB_HOME/lib/busy-apt/apt-daily-upgrade.timer.conf" \
		"$m/etc/systemd/system/apt-daily-upgrade.timer.d/lab-busy-apt.conf"
	mkdir -p "$m/etc/systemd/system/apt-daily-upgrade.service.d"
	sed "s/@SECONDS@/$secs/g" "$LAB_HOME/lib/busy-apt/apt-daily-upgrade.service.conf" \
		>"$m/etc/systemd/system/apt-daily-upgrade.service.d/lab-busy-apt.conf"
}

port_suffix() { [ "$LAB_PORT" = 80 ] || printf ':%s' "$LAB_PORT"; }

host_pid() { # LAB HOST -> pid of the host's running systemd-nspawn
	local hdir pid
	hdir=$(host_dir "$1" "$2")
	pid=$(cat "$hdir/nspawn.pid" 2>/dev/null) || return 1
	tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qxF -- "--directory=$hdir/merged" || return 1
	printf '%s\n' "$pid"
}

host_init_pid() { # LAB HOST -> pid of the host's init (nspawn's only child)
	local pid child
	pid=$(host_pid "$1" "$2") || return 1
	child=$(awk '{ print $1 }' "/proc/$pid/task/$pid/children" 2>/dev/null)
	[ -n "$child" ] || return 1
	printf '%s\n' "$child"
}

host_running() { host_pid "$1" "$2" >/dev/null; }

# Moves the calling (sub)shell into its own cgroup in each hierarchy nspawn and the figures
# care about, so hosts never share a leftover cgroup and each has its own memory/CPU counters.
# The created directories are listed in FILE for `down`.
cgroup_enter() { # RELPATH FILE
	local rel=$1 file=$2 mnt type opts key ctl cur dir
	: >"$file"
	while read -r _ mnt type opts _; do
		case $type in
		cgroup2) key="" ;;
		cgroup)
			key=$(tr ',' '\n' <<<"$opts" | grep -E '^(name=systemd|memory|pids|cpu|cpuacct)$' | paste -sd, - || true)
			[ -n "$key" ] || continue
			;;
		*) continue ;;
		esac
		cur=""
		while IFS=: read -r _ ctl cur_path; do
			if [ "$ctl" = "$key" ]; then cur=${cur_path%/}; fi
		done </proc/self/cgroup
		dir=$mnt$cur/$rel
		if mkdir -p "$dir" 2>/dev/null && echo "$BASHPID" >"$dir/cgroup.procs" 2>/dev/null; then
			printf '%s\n' "$dir" >>"$file"
		fi
	done </proc/self/mounts
}

host_boot() { # LAB HOST (after load_state, host_net_up and host_prepare)
	local lab=$1 host=$2 hdir
	host_running "$lab" "$host" && return 0
	hdir=$(host_dir "$lab" "$host")
	(
		cd /
		exec 6>&- 7>&- 8>&- 9>&- # lock files of this script
		cgroup_enter "installer-lab/$lab/$host" "$hdir/cgroups"
		echo "$BASHPID" >"$hdir/nspawn.pid"
		# API_VFS_WRITABLE=network: per-netns sysctls (ip_forward, bridge-nf-call-*) writable.
		# CAP_NET_ADMIN: keepalived and kube-proxy-like tools manage addresses and rules.
		exec setsid env SYSTEMD_NSPAWN_API_VFS_WRITABLE=network systemd-nspawn \
			--register=no --keep-unit --boot \
			--directory="$hdir/merged" \
			--machine="$(host_machine "$lab" "$host")" --hostname="$host" \
			--network-namespace-path="/run/netns/$(host_netns "$lab" "$host")" \
			--capability=CAP_NET_ADMIN \
			--console=passive --resolv-conf=off --link-journal=no
	) </dev/null >>"$hdir/console.log" 2>&1 &
}

# Waits until sshd answers on every HOST; lists those that do not after TIMEOUT seconds.
wait_ssh() { # TIMEOUT HOST...
	local deadline=$(($(date +%s) + $1)) h pending
	shift
	pending=("$@")
	while [ ${#pending[@]} -gt 0 ]; do
		local left=()
		for h in "${pending[@]}"; do
			ssh_banner "$(host_ip "$h")" || left+=("$h")
		done
		pending=("${left[@]}")
		[ ${#pending[@]} -eq 0 ] && break
		if [ "$(date +%s)" -ge "$deadline" ]; then
			printf '%s\n' "${pending[@]}"
			return 1
		fi
		sleep 0.1
	done
}

ssh_banner() { # IP -> true when an SSH server greets on port 22
	# shellcheck disable=SC2016 # $0 is expanded by the inner bash
	timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/22" && head -c 4 <&3' "$1" 2>/dev/null | grep -q '^SSH-'
}

host_wait_gone() { # PID SECONDS
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -d "/proc/$1" ] || return 0
		sleep 0.1
	done
	return 1
}

# Hard crash: the host's init dies at once, taking every process of the host with it.
host_kill() { # LAB HOST
	local pid init
	pid=$(host_pid "$1" "$2") || return 0
	init=$(host_init_pid "$1" "$2") || init=""
	[ -z "$init" ] || kill -KILL "$init" 2>/dev/null || true
	host_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
	host_wait_gone "$pid" 5 || true
	host_net_silence "$1" "$2"
}

# What a broken SSH connection leaves on the server at worst: the session's sshd processes and
# every command they ran are gone (a dpkg run included), while sshd itself still listens.
# Done from outside (the host's own PID and mount namespaces), so it works while partitioned.
host_drop_ssh() { # LAB HOST
	local init
	init=$(host_init_pid "$1" "$2") || die "$2 is not running"
	nsenter -t "$init" -p -m -- sh -c '
		listener=$(pgrep -o -x sshd) || exit 0
		kill_tree() { for child in $(pgrep -P "$1"); do kill_tree "$child"; done; kill -KILL "$1" 2>/dev/null || true; }
		for session in $(pgrep -P "$listener"); do kill_tree "$session"; done'
}

# A raw disk for the host: a sparse file on a loop device, its node made at DEV inside the
# host (mknod from outside: the host itself may not create device nodes). Empty, or with an
# ext4 filesystem to prove that preflight refuses a disk in use. The
# node is gone after a reboot of the host; `down` detaches the loop device.
host_add_disk() { # LAB HOST DEV MB [empty|ext4]
	local init img loop major minor
	init=$(host_init_pid "$1" "$2") || die "$2 is not running"
	img="$(host_dir "$1" "$2")/disk-${3//\//_}.img"
	rm -f "$img"
	truncate -s "${4}M" "$img"
	case ${5:-empty} in
	empty) ;;
	ext4) mkfs.ext4 -q -F "$img" ;;
	*) die "unknown disk content '$5' (empty or ext4)" ;;
	esac
	loop=$(losetup --find --show "$img")
	major=$((16#$(stat -c '%t' "$loop")))
	minor=$((16#$(stat -c '%T' "$loop")))
	nsenter -t "$init" -m -p -- sh -c "rm -f '$3' && mknod -m 0660 '$3' b $major $minor && chgrp disk '$3'"
	printf '%s\n' "$loop"
}

# Loop devices of the lab's disks, found by their backing files (also after a crash).
disks_down() { # LAB
	local dir loop file
	dir=$(lab_dir "$1")
	losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null | while read -r loop file; do
		case $file in "$dir"/*) losetup -d "$loop" 2>/dev/null || true ;; esac
	done
}

# A machine that is off answers nothing, not even ARP or a TCP reset: its namespace's kernel
# would otherwise keep answering for its addresses (and for a VIP keepalived had put there).
# It boots again with a fresh kernel: host_net_up gives it back its own address and link only.
host_net_silence() { # LAB HOST
	local ns
	ns=$(host_netns "$1" "$2")
	ip -n "$ns" link set eth0 down 2>/dev/null || true
	ip -n "$ns" addr flush dev eth0 2>/dev/null || true
}

# Clean shutdown: SIGTERM to nspawn makes systemd inside power off.
host_stop() { # LAB HOST
	local pid
	pid=$(host_pid "$1" "$2") || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if host_wait_gone "$pid" "${LAB_STOP_TIMEOUT:-30}"; then
		host_net_silence "$1" "$2"
		return 0
	fi
	warn "$2 did not shut down cleanly; killing it"
	host_kill "$1" "$2"
}

# Everything a lab's hosts hold on this machine, found by name and path so that it also works
# when the state is incomplete (a failed or interrupted `up`).
hosts_down() { # LAB
	local lab=$1 dir pid p hdir children
	dir=$(lab_dir "$lab")
	local pids=()
	for p in /proc/[0-9]*; do
		if tr '\0' '\n' 2>/dev/null <"$p/cmdline" | grep -q "^--directory=$dir/hosts/"; then
			pids+=("${p#/proc/}")
		fi
	done
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		host_wait_gone "$pid" "${LAB_STOP_TIMEOUT:-30}" && continue
		read -ra children 2>/dev/null <"/proc/$pid/task/$pid/children" || children=()
		for p in "${children[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
		kill -KILL "$pid" 2>/dev/null || true
		host_wait_gone "$pid" 5 || warn "process $pid of lab $lab does not exit"
	done
	for hdir in "$dir"/hosts/*; do
		[ -f "$hdir/cgroups" ] || continue
		while read -r p; do
			[ ! -d "$p" ] || find "$p" -depth -type d -exec rmdir {} + 2>/dev/null || true
		done <"$hdir/cgroups"
	done
	for p in /sys/fs/cgroup/installer-lab/"$lab" /sys/fs/cgroup/*/installer-lab/"$lab" \
		/sys/fs/cgroup/*/*/*/installer-lab/"$lab"; do
		[ -d "$p" ] || continue
		find "$p" -depth -type d -exec rmdir {} + 2>/dev/null || true
		rmdir "${p%/*}" 2>/dev/null || true # installer-lab/ itself, once no lab uses it
	done
	for p in /run/systemd/nspawn/propagate/"il-$lab"-*; do
		[ ! -d "$p" ] || rmdir "$p" 2>/dev/null || true
	done
	disks_down "$lab"
	return 0
}

# Pairs "name,address type key" for every host, so clients can check host keys strictly.
write_known_hosts() { # LAB
	local dir h f
	dir=$(lab_dir "$1")
	while read -r h; do
		for f in "$(host_dir "$1" "$h")"/ssh_host_*_key.pub; do
			[ -f "$f" ] || continue
			awk -v n="$h,$(host_ip "$h")" '{ print n, $1, $2 }' "$f"
		done
	done < <(host_names "$LAB_MASTERS" "$LAB_WORKERS") >"$dir/known_hosts.tmp"
	mv "$dir/known_hosts.tmp" "$dir/known_hosts"
}

ssh_opts() { # LAB -> options for ssh/scp that use the lab's key and known_hosts, strictly
	local dir
	dir=$(lab_dir "$1")
	printf '%s\n' -F /dev/null -i "$dir/id_ed25519" -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$dir/known_hosts" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR
}
