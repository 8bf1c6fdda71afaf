# shellcheck shell=bash
# Shared helpers for tests/lab/lab: logging, paths, naming, dependencies, state files.
# Sourced, never executed.

LAB_CACHE=${LAB_CACHE:-/var/cache/installer-lab}
LAB_RUN=${LAB_RUN:-/run/installer-lab}
LAB_SUITE=bookworm
LAB_MIRROR_NAME=mirror.lab
LAB_SUBNET_PREFIX=10.213
LAB_MAX_MASTERS=9
LAB_MAX_WORKERS=79
LAB_USER=ops

log() { printf 'lab: %s\n' "$*" >&2; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die() {
	printf 'lab: error: %s\n' "$*" >&2
	exit 1
}

# Milliseconds since the epoch, for the timings `up` reports.
now_ms() { date +%s%3N; }
elapsed() { # START_MS -> "12.3s"
	local d=$(($(now_ms) - $1))
	printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100))
}

require_root() {
	[ "$(id -u)" -eq 0 ] && return 0
	die "the lab needs root (network namespaces, bridges, overlay mounts, systemd-nspawn).
       Run it as root, e.g.: sudo $0 $*"
}

# command -> Debian package that provides it. Installed on demand so a fresh CI machine works.
LAB_DEPS=(
	debootstrap:debootstrap
	systemd-nspawn:systemd-container
	ip:iproute2
	bridge:iproute2
	dpkg-deb:dpkg-dev
	dpkg-scanpackages:dpkg-dev
	apt-ftparchive:apt-utils
	gpg:gnupg
	gpgv:gpgv
	/usr/bin/python3:python3
	ssh:openssh-client
	ssh-keygen:openssh-client
	setsid:util-linux
	flock:util-linux
	nsenter:util-linux
	mount:mount
	depmod:kmod
	sha256sum:coreutils
)

ensure_deps() {
	local entry cmd pkg missing=()
	for entry in "${LAB_DEPS[@]}"; do
		cmd=${entry%%:*} pkg=${entry#*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	log "installing the lab's dependencies: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		apt-get update >&2 || die "apt-get update failed; check the machine's apt sources"
		apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
			die "could not install ${missing[*]}; install them by hand and retry"
	fi
}

# Debian archive URIs configured on this machine for the lab's suite (and its -updates and
# -security companions), as "URI SUITE" lines. Read through apt so both sources formats count;
# nothing about any particular mirror is written into the project.
debian_sources() {
	# shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF) $(IDENTIFIER)' 2>/dev/null |
		awk -v s="$LAB_SUITE" '$3 == "deb" && $4 == "Packages" && ($2 == s || index($2, s "-") == 1) { print $1, $2 }' |
		sort -u
}

debian_main_uri() {
	local uri
	uri=$(debian_sources | awk -v s="$LAB_SUITE" '$2 == s { print $1; exit }')
	[ -n "$uri" ] || die "no '$LAB_SUITE' Debian source in this machine's apt configuration
       (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list); add one and retry"
	printf '%s\n' "$uri"
}

sha_of_files() { # FILE... -> one hash over the paths (relative) and contents
	local f
	for f in "$@"; do
		printf '%s\n' "${f#"$LAB_HOME"/}"
		sha256sum <"$f"
	done | sha256sum | cut -c1-16
}

# --- lab naming -------------------------------------------------------------------------------

validate_name() {
	[[ $1 =~ ^[a-z][a-z0-9-]{0,30}$ ]] ||
		die "bad lab name '$1': use 1-31 characters a-z, 0-9 and '-', starting with a letter"
}

# Short form of a lab name for interface names (15 characters at most on Linux).
lab_short() {
	if [ ${#1} -le 8 ]; then
		printf '%s\n' "$1"
	else
		printf '%s' "$1" | sha256sum | cut -c1-8
	fi
}

lab_dir() { printf '%s/%s\n' "$LAB_RUN" "$1"; }

# master-1.. then worker-1..
host_names() { # MASTERS WORKERS
	local i
	for ((i = 1; i <= $1; i++)); do printf 'master-%d\n' "$i"; done
	for ((i = 1; i <= $2; i++)); do printf 'worker-%d\n' "$i"; done
}

host_octet() { # HOST -> last octet of its address
	case $1 in
	master-*) printf '%d\n' $((10 + ${1#master-})) ;;
	worker-*) printf '%d\n' $((20 + ${1#worker-})) ;;
	*) return 1 ;;
	esac
}

host_role() { case $1 in master-*) echo master ;; *) echo worker ;; esac }

# Interface and namespace names that carry the lab's identity, so `down` can find them even
# when the state directory is gone.
host_netns() { printf 'il-%s-%s\n' "$1" "$2"; }           # LAB HOST
host_veth() { # LAB HOST
	local h=$2
	h=${h/master-/m} h=${h/worker-/w}
	printf 'lv-%s-%s\n' "$(lab_short "$1")" "$h"
}
lab_bridge() { printf 'lb-%s\n' "$(lab_short "$1")"; }

# --- state ------------------------------------------------------------------------------------

# The lab's settings live in $dir/lab.env as shell assignments written by save_state.
save_state() { # LAB
	local dir
	dir=$(lab_dir "$1")
	{
		printf 'LAB_NAME=%q\n' "$1"
		printf 'LAB_MASTERS=%q\nLAB_WORKERS=%q\n' "$LAB_MASTERS" "$LAB_WORKERS"
		printf 'LAB_OCTET=%q\nLAB_PORT=%q\n' "$LAB_OCTET" "$LAB_PORT"
		printf 'LAB_IMAGE=%q\nLAB_WWW_DEBIAN=%q\nLAB_WWW_KUBE=%q\n' \
			"$LAB_IMAGE" "${LAB_WWW_DEBIAN:-}" "${LAB_WWW_KUBE:-}"
	} >"$dir/lab.env.tmp"
	mv "$dir/lab.env.tmp" "$dir/lab.env"
}

load_state() { # LAB -> sets LAB_* from lab.env; fails when the lab does not exist
	local f
	f=$(lab_dir "$1")/lab.env
	[ -f "$f" ] || return 1
	# shellcheck disable=SC1090
	. "$f"
	LAB_SUBNET=$LAB_SUBNET_PREFIX.$LAB_OCTET
	LAB_GATEWAY=$LAB_SUBNET.1
	LAB_VIP=$LAB_SUBNET.100
}

require_lab() { # LAB
	load_state "$1" || die "no lab named '$1' is up; start it with: $0 up --name $1"
}

host_ip() { printf '%s.%s\n' "$LAB_SUBNET" "$(host_octet "$1")"; }

require_host() { # HOST (after load_state)
	local h
	while read -r h; do [ "$h" = "$1" ] && return 0; done < <(host_names "$LAB_MASTERS" "$LAB_WORKERS")
	die "lab '$LAB_NAME' has no host '$1'; hosts: $(host_names "$LAB_MASTERS" "$LAB_WORKERS" | tr '\n' ' ')"
}
