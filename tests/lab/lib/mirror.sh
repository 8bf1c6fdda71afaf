# shellcheck shell=bash
# The lab mirror: content built by tests/lab/mirror/*.sh and cached under $LAB_CACHE, served
# per lab over HTTP on the lab bridge by python3's http.server (GET/HEAD only: read-only).
#
#   $LAB_CACHE/mirror-key/             the lab's archive signing key (gnupg home, public key)
#   $LAB_CACHE/debs/                   downloaded Debian packages (kept across rebuilds)
#   $LAB_CACHE/apt/<suite>/            apt configuration and lists for suites other than the
#                                      machine's own
#   $LAB_CACHE/debian-<suite>-<hash>/  signed Debian archive of one suite for the hosts
#   $LAB_CACHE/docker-<suite>-<hash>/  one suite of the download.docker.com-like repo
#   $LAB_CACHE/kube-<hash>/            kubernetes/ (pkgs.k8s.io-like) and github/ (release assets)
#   $LAB_CACHE/addons-<hash>/          addon manifests: links to ../shared/upstream, Weave Net's
#                                      release asset derived from its template
#   $LAB_RUN/<lab>/www/                what the lab's server serves: links to the above + addons/

LAB_KEYDIR=$LAB_CACHE/mirror-key
LAB_MIRROR_PORT_DEFAULT=80

mirror_lock() {
	mkdir -p "$LAB_CACHE"
	exec 7>"$LAB_CACHE/.mirror.lock"
	flock 7
}
mirror_unlock() {
	flock -u 7
	exec 7>&-
}

# Creates the lab's signing key once. It signs only lab repositories and never leaves the
# cache directory; hosts get the public half.
ensure_mirror_key() {
	export GNUPGHOME=$LAB_KEYDIR/gnupg
	export LAB_ARCHIVE_KEY=$LAB_KEYDIR/archive-key.asc
	[ -s "$LAB_KEYDIR/archive-keyring.gpg" ] && return 0
	mirror_lock
	if [ -s "$LAB_KEYDIR/archive-keyring.gpg" ]; then
		mirror_unlock
		return 0
	fi
	rm -rf --one-file-system "$LAB_KEYDIR"
	install -d -m 0700 "$LAB_KEYDIR" "$GNUPGHOME"
	gpg --batch --quiet --passphrase '' --quick-gen-key \
		'installer lab mirror <lab@mirror.lab>' ed25519 sign never 2>/dev/null
	gpg --batch --armor --export >"$LAB_ARCHIVE_KEY.tmp"
	gpg --batch --export >"$LAB_KEYDIR/archive-keyring.gpg.tmp"
	mv "$LAB_ARCHIVE_KEY.tmp" "$LAB_ARCHIVE_KEY"
	mv "$LAB_KEYDIR/archive-keyring.gpg.tmp" "$LAB_KEYDIR/archive-keyring.gpg"
	stop_gpg_agent
	mirror_unlock
	log "created the lab's archive signing key in $LAB_KEYDIR"
}

# gpg starts an agent per key ring; it must not outlive the build.
stop_gpg_agent() { gpgconf --homedir "$GNUPGHOME" --kill gpg-agent 2>/dev/null || true; }

# Builds DIR with CMD into a temporary sibling, renamed into place when complete, so a killed
# build never leaves a half-made cache entry. Holds the mirror lock while building; returns
# at once when another `up` built DIR meanwhile. CMD gets the temporary directory as its first
# argument, before the others.
build_atomically() { # DIR LOG CMD [ARGS...]
	local dir=$1 logf=$2 tmp=$1.tmp-$$ d rc=0 cmd=()
	shift 2
	# "env [VAR=...]... PROGRAM": the directory goes right after PROGRAM.
	while [ $# -gt 0 ]; do
		cmd+=("$1")
		case $1 in env | *=*) shift ;; *) shift && break ;; esac
	done
	mirror_lock
	if [ ! -d "$dir" ]; then
		for d in "${dir%-*}"-*.tmp-*; do remove_tree "$d"; done
		if "${cmd[@]}" "$tmp" "$@" >"$logf" 2>&1; then
			mv "$tmp" "$dir"
			prune_mirrors "$dir"
		else
			grep -v '^Get:\|^Fetched' "$logf" | tail -n 30 >&2
			remove_tree "$tmp"
			rc=1
		fi
		stop_gpg_agent
	fi
	mirror_unlock
	return "$rc"
}

apt_lists_dir() { # APT_CONFIG file or "" -> the package lists directory apt uses
	if [ -n "$1" ]; then
		dirname "$1" | sed 's|$|/lists|'
	else
		echo /var/lib/apt/lists
	fi
}
apt_lists_stamp() { # LISTS_DIR
	stat -c '%n %Y %s' "$1"/*Packages* 2>/dev/null | sha256sum | cut -c1-16
}

# Prints the Debian archive's directory for SUITE and its image ROOTFS, building it when needed.
ensure_debian_mirror() { # SUITE ROOTFS
	local suite=$1 rootfs=$2 key dir start aptconf lists
	aptconf=$(apt_env "$suite")
	lists=$(apt_lists_dir "$aptconf")
	if ! ls "$lists"/*Packages* >/dev/null 2>&1; then
		log "this machine has no apt package lists yet: running apt-get update"
		apt-get update >&2 || die "apt-get update failed; check the machine's apt sources"
	fi
	key=$({
		cat "$LAB_HOME"/mirror/debian-packages* "$LAB_HOME"/mirror/debian.sh "$LAB_HOME"/mirror/repo.sh
		printf '%s\n' "$suite" "$rootfs" "$(apt_lists_stamp "$lists")" "$(cat "$LAB_KEYDIR/archive-key.asc")"
	} | sha256sum | cut -c1-16)
	dir=$LAB_CACHE/debian-$suite-$key
	if [ ! -d "$dir" ]; then
		start=$(now_ms)
		log "building the Debian $suite mirror $key (downloads are cached in $LAB_CACHE/debs)"
		build_atomically "$dir" "$LAB_CACHE/debian-$suite.log" \
			env ${aptconf:+APT_CONFIG="$aptconf"} "$LAB_HOME/mirror/debian.sh" "$rootfs" "$LAB_CACHE/debs" "$suite" ||
			die "building the Debian $suite mirror failed (log above, full log: $LAB_CACHE/debian-$suite.log)"
		log "Debian $suite mirror built in $(elapsed "$start"): $(wc -l <"$dir/PACKAGES.txt") packages"
	fi
	touch "$dir" # in use: not pruned for another hour
	printf '%s\n' "$dir"
}

# Builds the simulators (unless LAB_SIM_BUILD=0). A failed build is reported, not fatal: the
# packages are made from whatever binaries exist and the missing ones are listed.
build_simulators() {
	local cargo=${CARGO:-}
	[ "${LAB_SIM_BUILD:-1}" = 0 ] && return 0
	[ -n "$cargo" ] || cargo=$(command -v cargo || true)
	[ -n "$cargo" ] || [ ! -x "$HOME/.cargo/bin/cargo" ] || cargo=$HOME/.cargo/bin/cargo
	if [ -z "$cargo" ]; then
		warn "cargo not found: the simulators cannot be built; install Rust or set CARGO"
		return 0
	fi
	local start
	start=$(now_ms)
	mkdir -p "$LAB_CACHE"
	if (cd "$LAB_REPO" && "$cargo" build -p sim-node -p sim-apiserver --bins) >"$LAB_CACHE/sim-build.log" 2>&1; then
		log "simulators built ($(elapsed "$start"))"
	else
		grep -E '^(error|warning: unused)' "$LAB_CACHE/sim-build.log" | head -n 10 >&2 || true
		warn "building the simulators failed (full log: $LAB_CACHE/sim-build.log);
       packaging whatever binaries exist from earlier builds"
	fi
}

sim_bindir() { printf '%s/debug\n' "${CARGO_TARGET_DIR:-$LAB_REPO/target}"; }
kubectl_path() { printf '%s\n' "${LAB_KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}"; }

# Prints the upstream-like repos' directory, building it when an input changed.
ensure_kube_mirror() { # DEBIAN_DIR (Debian 12's)
	local debian=$1 key dir start bindir b
	bindir=$(sim_bindir)
	key=$({
		cat "$LAB_HOME"/mirror/kubernetes.sh "$LAB_HOME"/mirror/repo.sh "$LAB_HOME"/mirror/deb.sh "$LAB_HOME"/mirror/versions
		find "$LAB_HOME/mirror/packaging" -type f | LC_ALL=C sort | xargs cat
		for b in kubeadm kubelet crictl cri-dockerd kube-apiserver kube-controller-manager kube-scheduler; do
			[ -x "$bindir/$b" ] && sha256sum <"$bindir/$b"
		done
		[ -x "$(kubectl_path)" ] && stat -c '%n %s %Y' "$(kubectl_path)"
		find "$debian/pool" \( -name 'etcd-*' -o -name 'containernetworking-plugins*' \) -printf '%f\n'
		cat "$LAB_KEYDIR/archive-key.asc"
	} 2>/dev/null | sha256sum | cut -c1-16)
	dir=$LAB_CACHE/kube-$key
	if [ ! -d "$dir" ]; then
		start=$(now_ms)
		log "building the Kubernetes repos and release assets $key"
		build_atomically "$dir" "$LAB_CACHE/kube.log" \
			"$LAB_HOME/mirror/kubernetes.sh" "$(sim_bindir)" "$debian/pool" "$(kubectl_path)" ||
			die "building the Kubernetes repos failed (log above, full log: $LAB_CACHE/kube.log)"
		log "Kubernetes repos and release assets built in $(elapsed "$start")"
	fi
	touch "$dir" # in use: not pruned for another hour
	if [ -s "$dir/MISSING.txt" ]; then
		warn "the lab's Kubernetes packages are incomplete:"
		sed 's/^/         /' "$dir/MISSING.txt" >&2
	fi
	printf '%s\n' "$dir"
}

# Prints the Docker repository's directory for SUITE, building it when an input changed.
ensure_docker_mirror() { # SUITE DEBIAN_DIR
	local suite=$1 debian=$2 key dir start bindir b
	bindir=$(sim_bindir)
	key=$({
		cat "$LAB_HOME"/mirror/docker.sh "$LAB_HOME"/mirror/repo.sh "$LAB_HOME"/mirror/deb.sh "$LAB_HOME"/mirror/versions
		find "$LAB_HOME/mirror/packaging" -type f | LC_ALL=C sort | xargs cat
		for b in containerd ctr; do
			[ -x "$bindir/$b" ] && sha256sum <"$bindir/$b"
		done
		printf '%s\n' "$suite"
		find "$debian/pool" -name '*.deb' -printf '%f\n' | sort
		cat "$LAB_KEYDIR/archive-key.asc"
	} 2>/dev/null | sha256sum | cut -c1-16)
	dir=$LAB_CACHE/docker-$suite-$key
	if [ ! -d "$dir" ]; then
		start=$(now_ms)
		log "building the Docker repository for $suite $key"
		build_atomically "$dir" "$LAB_CACHE/docker-$suite.log" \
			"$LAB_HOME/mirror/docker.sh" "$suite" "$bindir" "$debian/pool" ||
			die "building the Docker repository failed (log above, full log: $LAB_CACHE/docker-$suite.log)"
		log "Docker repository for $suite built in $(elapsed "$start")"
	fi
	touch "$dir"
	printf '%s\n' "$dir"
}

# Builds or finds all mirror content for the suites SUITE...: base images, Debian archives,
# Docker repositories, and the suite-independent Kubernetes repos and release assets. Sets
# LAB_IMAGES, LAB_WWW_DEBIAN and LAB_WWW_DOCKER ("suite:dir" words) and LAB_WWW_KUBE. Cargo has
# its own lock, so the simulators are built first; the mirror lock is taken only to build (a
# cached mirror never waits for another lab's build).
ensure_mirror() { # SUITE...
	local suite rootfs debian
	build_simulators
	ensure_mirror_key
	LAB_IMAGES="" LAB_WWW_DEBIAN="" LAB_WWW_DOCKER=""
	for suite in "$@"; do
		rootfs=$(ensure_image "$suite")
		debian=$(ensure_debian_mirror "$suite" "$rootfs")
		LAB_IMAGES="${LAB_IMAGES:+$LAB_IMAGES }$suite:$rootfs"
		LAB_WWW_DEBIAN="${LAB_WWW_DEBIAN:+$LAB_WWW_DEBIAN }$suite:$debian"
		LAB_WWW_DOCKER="${LAB_WWW_DOCKER:+$LAB_WWW_DOCKER }$suite:$(ensure_docker_mirror "$suite" "$debian")"
	done
	LAB_WWW_KUBE=$(ensure_kube_mirror "$(map_get "$LAB_WWW_DEBIAN" bookworm)")
}

# Cached mirror builds that no lab uses and that are older than an hour go away (an `up`
# running alongside may have picked one a moment ago without having recorded it yet).
prune_mirrors() { # KEEP_DIR
	local d in_use
	in_use=$(cat "$LAB_RUN"/*/lab.env 2>/dev/null || true)
	while read -r d; do
		case $d in *.tmp-* | "$1" | "${LAB_WWW_KUBE:-}") continue ;; esac
		grep -qF "$d" <<<"$in_use ${LAB_WWW_DEBIAN:-} ${LAB_WWW_DOCKER:-}" && continue
		remove_tree "$d"
	done < <(find "$LAB_CACHE" -mindepth 1 -maxdepth 1 -type d \( -name 'debian-*' -o -name 'docker-*' -o -name 'kube-*' \) -mmin +60)
}

# The tree the lab's HTTP server serves:
#   debian/dists/SUITE, debian/pool/SUITE         each suite's Debian archive
#   docker/linux/debian/dists/SUITE, .../gpg       the Docker repository, download.docker.com's layout
#   kubernetes/core:/stable:/vMINOR/deb/           pkgs.k8s.io's layout
#   github/Mirantis/cri-dockerd/releases/download/ GitHub's layout
mirror_www() { # LAB
	local www w suite dir new
	www=$(lab_dir "$1")/www
	mkdir -p "$www"
	# Rebuilt beside the served tree and swapped in, so the server never sees half of it.
	new=$www/.new-$$
	rm -rf --one-file-system "$new"
	mkdir -p "$new/debian/dists" "$new/debian/pool" "$new/docker/linux/debian/dists"
	for w in $LAB_WWW_DEBIAN; do
		suite=${w%%:*} dir=${w#*:}
		ln -sfn "$dir/dists/$suite" "$new/debian/dists/$suite"
		ln -sfn "$dir/pool/$suite" "$new/debian/pool/$suite"
	done
	for w in $LAB_WWW_DOCKER; do
		suite=${w%%:*} dir=${w#*:}
		ln -sfn "$dir/dists/$suite" "$new/docker/linux/debian/dists/$suite"
		ln -sfn "$dir/gpg" "$new/docker/linux/debian/gpg"
	done
	for w in debian docker; do
		rm -rf --one-file-system "$www/.old-$w"
		[ ! -e "$www/$w" ] || mv "$www/$w" "$www/.old-$w"
		mv "$new/$w" "$www/$w"
		rm -rf --one-file-system "$www/.old-$w"
	done
	rmdir "$new"
	ln -sfn "$LAB_WWW_KUBE/kubernetes" "$www/kubernetes"
	ln -sfn "$LAB_WWW_KUBE/github" "$www/github"
	ln -sfn "$LAB_KEYDIR/archive-key.asc" "$www/lab-archive-key.asc"
	# The addon manifests, as a user's internal mirror would serve them.
	local addons
	if addons=$(ensure_addons_mirror); then
		ln -sfn "$addons" "$www/addons"
	else
		rm -f "$www/addons"
	fi
}

# Prints the addons mirror's directory, building it when the upstream files change:
# $LAB_CACHE/addons-<hash>/ holds a link to every file of ../shared/upstream (pinned upstream
# files, never copied into the repository), except Weave Net's. Upstream's repository holds
# only the *template* weave-daemonset-k8s-*.yaml; the release asset users download is made
# from it by rajch/weave's bin/release (see ../shared/upstream/SOURCES.md), and that is what
# is served under the same name. Small (links and one derived file), so never pruned.
ensure_addons_mirror() {
	local src key dir
	if [ ! -d "$LAB_REPO/../shared/upstream" ]; then
		warn "no addon manifests at $LAB_REPO/../shared/upstream: addons/ is not served"
		return 1
	fi
	src=$(cd "$LAB_REPO/../shared/upstream" && pwd)
	key=$({
		declare -f build_addons_mirror
		printf '%s\n' "$src"
		(cd "$src" && find . -type f -printf '%P %s %T@\n' | LC_ALL=C sort)
	} | sha256sum | cut -c1-16)
	dir=$LAB_CACHE/addons-$key
	if [ ! -d "$dir" ]; then
		build_atomically "$dir" "$LAB_CACHE/addons.log" build_addons_mirror "$src" ||
			die "building the addons mirror failed (log above, full log: $LAB_CACHE/addons.log)"
		log "addons mirror built: $dir"
	fi
	touch "$dir"
	printf '%s\n' "$dir"
}

build_addons_mirror() { # OUT SRC
	local out=$1 src=$2 f version
	mkdir -p "$out"
	while IFS= read -r -d '' f; do
		f=${f#./}
		mkdir -p "$out/$(dirname "$f")"
		case $f in
		weave-net/v*/weave-daemonset-k8s*.yaml)
			# rajch/weave bin/release: image tags pinned to the version (the tag without
			# its "v"), `imagePullPolicy: Always` dropped.
			version=${f#weave-net/v}
			version=${version%%/*}
			sed -e "s/:latest/:$version/" -e "/imagePullPolicy: Always/d" "$src/$f" >"$out/$f"
			printf 'derived %s sha256 %s\n' "$f" "$(sha256sum <"$out/$f" | cut -d' ' -f1)"
			;;
		*) ln -s "$src/$f" "$out/$f" ;;
		esac
	done < <(cd "$src" && find . -type f -print0 | LC_ALL=C sort -z)
}

mirror_pid() { # LAB -> pid of the lab's running server, if any
	local dir pid
	dir=$(lab_dir "$1")
	pid=$(cat "$dir/mirror.pid" 2>/dev/null) || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "--directory $dir/www" || return 1
	printf '%s\n' "$pid"
}

mirror_url() { printf 'http://%s:%s\n' "$LAB_GATEWAY" "$LAB_PORT"; }

mirror_start() { # LAB (after load_state and net_up)
	local dir pid i
	dir=$(lab_dir "$1")
	mirror_pid "$1" >/dev/null && return 0
	(
		cd /
		exec 6>&- 7>&- 8>&- 9>&- # lock files of this script
		exec setsid /usr/bin/python3 -m http.server --bind "$LAB_GATEWAY" --directory "$dir/www" "$LAB_PORT"
	) </dev/null >"$dir/mirror.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/mirror.pid"
	for ((i = 0; i < 50; i++)); do
		if (exec 3<>"/dev/tcp/$LAB_GATEWAY/$LAB_PORT") 2>/dev/null; then
			return 0
		fi
		[ -d "/proc/$pid" ] || break
		sleep 0.1
	done
	tail -n 5 "$dir/mirror.log" >&2
	die "the mirror server did not start on $LAB_GATEWAY:$LAB_PORT (is the port taken? set LAB_MIRROR_PORT)"
}

# Stops the lab's server, found by the directory it serves (its pid file may be missing after
# an interrupted `up`).
mirror_stop() { # LAB
	local dir p pid
	dir=$(lab_dir "$1")
	for p in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "http.server --bind " || continue
		tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "--directory $dir/www " || continue
		pid=${p#/proc/}
		kill "$pid" 2>/dev/null || true
		host_wait_gone "$pid" 2 || kill -9 "$pid" 2>/dev/null || true
	done
	rm -f "$dir/mirror.pid"
}
