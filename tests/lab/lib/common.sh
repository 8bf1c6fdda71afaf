# shellcheck shell=bash
# Shared helpers for tests/lab/lab: logging, paths, naming, dependencies, state files.
# Sourced, never executed.

LAB_CACHE=${LAB_CACHE:-/var/cache/installer-lab}
LAB_RUN=${LAB_RUN:-/run/installer-lab}
# Host operating systems the lab can boot, and their Debian suites.
LAB_OS_LIST="debian12 debian13"
LAB_DEFAULT_OS=debian12
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

os_suite() { # OS -> Debian suite
	case $1 in
	debian12) echo bookworm ;;
	debian13) echo trixie ;;
	*) return 1 ;;
	esac
}
suite_number() { case $1 in bookworm) echo 12 ;; trixie) echo 13 ;; *) return 1 ;; esac }

# The Debian release this machine's apt sources are for (the lab derives every suite's archive
# URIs from them).
machine_suite() {
	# shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
	apt-get indextargets --format '$(RELEASE) $(TARGET_OF) $(IDENTIFIER) $(ORIGIN)' 2>/dev/null |
		awk '$2 == "deb" && $3 == "Packages" && $4 == "Debian" && $1 !~ /-/ { print $1; exit }'
}

# Debian archive URIs for SUITE (and its -updates and -security companions), as "URI SUITE"
# lines: the archives this machine's apt uses for its own release, with the suite renamed. Read
# through apt so both sources formats count; nothing about any particular mirror is written
# into the project.
debian_sources() { # SUITE
	local suite=$1 base
	base=$(machine_suite)
	[ -n "$base" ] || return 0
	# shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(TARGET_OF) $(IDENTIFIER)' 2>/dev/null |
		awk -v b="$base" -v s="$suite" '$3 == "deb" && $4 == "Packages" && ($2 == b || index($2, b "-") == 1) {
			print $1, s substr($2, length(b) + 1) }' |
		sort -u
}

# apt for SUITE: this machine's own configuration for its release; for another release a
# private configuration under $LAB_CACHE/apt/SUITE (same archives, that suite), updated when it
# has no package lists yet. Prints the APT_CONFIG file to use, or nothing for the machine's.
apt_env() { # SUITE
	local suite=$1 dir uri s
	[ "$suite" = "$(machine_suite)" ] && return 0
	dir=$LAB_CACHE/apt/$suite
	if [ ! -s "$dir/apt.conf" ] || ! ls "$dir"/lists/*Packages* >/dev/null 2>&1; then
		mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d"
		: >"$dir/sources.list"
		while read -r uri s; do
			printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
				"$uri" "$s" >>"$dir/sources.list"
		done < <(debian_sources "$suite")
		[ -s "$dir/sources.list" ] ||
			die "no Debian source to derive '$suite' from in this machine's apt configuration"
		{
			printf 'Dir::Etc::SourceList "%s";\n' "$dir/sources.list"
			printf 'Dir::Etc::SourceParts "%s";\n' "$dir/sources.list.d"
			printf 'Dir::State::Lists "%s";\n' "$dir/lists"
			printf 'Dir::Cache "%s";\n' "$dir/cache"
			printf 'Acquire::Languages "none";\n'
		} >"$dir/apt.conf"
		log "fetching the Debian $suite package lists (once)"
		APT_CONFIG=$dir/apt.conf apt-get update >&2 ||
			die "apt-get update for $suite failed; check the machine's network and apt sources"
	fi
	printf '%s\n' "$dir/apt.conf"
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

# The OS of every host for `up --os OS [--host-os HOST=OS...]`, as "HOST=OS" words.
# mixed: even-numbered hosts (master-2, worker-2, ...) run Debian 13, the others Debian 12.
plan_host_os() { # MASTERS WORKERS OS [HOST=OS...]
	local masters=$1 workers=$2 os=$3 h n o ov out=()
	shift 3
	while read -r h; do
		n=${h##*-}
		case $os in
		mixed) if ((n % 2 == 0)); then o=debian13; else o=debian12; fi ;;
		*) o=$os ;;
		esac
		for ov in "$@"; do [ "${ov%%=*}" = "$h" ] && o=${ov#*=}; done
		out+=("$h=$o")
	done < <(host_names "$masters" "$workers")
	printf '%s\n' "${out[*]}"
}

host_os() { # HOST (after load_state)
	local w
	for w in ${LAB_HOST_OS:-}; do
		[ "${w%%=*}" = "$1" ] && echo "${w#*=}" && return 0
	done
	echo "$LAB_DEFAULT_OS"
}

# The Debian suites the lab needs: bookworm always (the upstream-like packages take etcd and
# the CNI plugins from it), plus those of its hosts.
lab_suites() { # (after load_state, or with LAB_HOST_OS set)
	local w
	{
		echo bookworm
		for w in ${LAB_HOST_OS:-}; do os_suite "${w#*=}"; done
	} | awk '!seen[$0]++'
}

# Lists of "KEY:VALUE" words kept in lab.env (suite -> directory).
map_get() { # LIST KEY
	local w
	for w in $1; do
		[ "${w%%:*}" = "$2" ] && echo "${w#*:}" && return 0
	done
	return 1
}

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
		printf 'LAB_HOST_OS=%q\nLAB_BUSY_APT=%q\n' "$LAB_HOST_OS" "${LAB_BUSY_APT:-none}"
		printf 'LAB_IMAGES=%q\nLAB_WWW_DEBIAN=%q\nLAB_WWW_DOCKER=%q\nLAB_WWW_KUBE=%q\n' \
			"$LAB_IMAGES" "${LAB_WWW_DEBIAN:-}" "${LAB_WWW_DOCKER:-}" "${LAB_WWW_KUBE:-}"
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
