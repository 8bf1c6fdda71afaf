#!/usr/bin/env bash
# Builds the upstream-like part of the lab mirror:
#   kubernetes/core:/stable:/vMINOR/deb/   flat repos as on pkgs.k8s.io (InRelease, Release.key)
#   docker/                                a download.docker.com-like repo holding cri-dockerd
# Package names, versions, paths and dependencies follow upstream; the kubeadm, kubelet,
# crictl and cri-dockerd binaries are the lab simulators, kubectl is the real binary, etcd and
# the CNI plugins come from Debian's packages.
#
#   kubernetes.sh OUT SIMBIN DEBIAN_POOL KUBECTL
#   (GNUPGHOME: the lab's signing key ring; LAB_ARCHIVE_KEY: its armored public key)
#
# Whatever simulator binary is missing is reported (and listed in OUT/MISSING.txt); the
# packages that need it are left out, the others are built.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage="usage: kubernetes.sh OUT SIMBIN DEBIAN_POOL KUBECTL"
out=${1:?$usage}
simbin=${2:?$usage}
pool=${3:?$usage}
kubectl=${4:?$usage}
: "${GNUPGHOME:?GNUPGHOME must point at the lab key ring}"
: "${LAB_ARCHIVE_KEY:?LAB_ARCHIVE_KEY must name the lab key (armored)}"
# shellcheck source=repo.sh
. "$here/repo.sh"

work=$(mktemp -d)
trap 'rm -rf --one-file-system "$work"' EXIT
mkdir -p "$out"
: >"$out/MISSING.txt"

missing() { # WHAT WHY
	printf '%s: %s\n' "$1" "$2" >>"$out/MISSING.txt"
	echo "mirror: missing $1 ($2)" >&2
}

have() { # BINARY -> true when the simulator binary exists
	[ -x "$simbin/$1" ] && return 0
	missing "$1" "not in $simbin; build it with: cargo build -p sim-node -p sim-apiserver --bins"
	return 1
}

# Unpacks the Debian package NAME from the mirror pool into a scratch dir; prints the dir.
debian_files() { # NAME
	local deb dir=$work/debian-$1
	deb=$(find "$pool" -name "${1}_*.deb" | sort | tail -n 1)
	[ -n "$deb" ] || return 1
	[ -d "$dir" ] || dpkg-deb -x "$deb" "$dir"
	printf '%s\n' "$dir"
}

debian_version() { # NAME -> upstream part of the pool package's version
	find "$pool" -name "${1}_*.deb" | sort | tail -n 1 | sed 's/.*_\([0-9.]*\)[^_]*_[^_]*\.deb$/\1/'
}

# build_deb NAME VERSION ROOT DEPENDS DESCRIPTION [UNIT|-] -> .deb in $4's repo dir ($dest)
build_deb() {
	local name=$1 version=$2 root=$3 depends=$4 description=$5 unit=${6:-}
	mkdir -p "$root/DEBIAN" "$root/usr/share/kubernetes-sim"
	printf '%s\n' "${version%%-*}" >"$root/usr/share/kubernetes-sim/$name.version"
	{
		printf 'Package: %s\nVersion: %s\nArchitecture: amd64\n' "$name" "$version"
		printf 'Maintainer: installer lab <lab@mirror.lab>\n'
		printf 'Installed-Size: %s\n' "$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
		[ -z "$depends" ] || printf 'Depends: %s\n' "$depends"
		printf 'Section: admin\nPriority: optional\nHomepage: https://kubernetes.io\n'
		printf 'Description: %s\n' "$description"
		printf ' Built by the installer lab; not the upstream package.\n'
	} >"$root/DEBIAN/control"
	if [ -n "$unit" ]; then
		for script in postinst prerm postrm; do
			sed "s/@UNIT@/$unit/g" "$here/packaging/$script.in" >"$root/DEBIAN/$script"
			chmod 755 "$root/DEBIAN/$script"
		done
	fi
	dpkg-deb --root-owner-group -Zgzip -z1 --build "$root" "$dest/${name}_${version}_amd64.deb" >/dev/null
	rm -rf --one-file-system "$root"
	echo "mirror: built $name $version" >&2
}

put() { # SRC DEST MODE
	install -D -m "$3" "$1" "$2"
	# The simulators come from the debug build the tests already made; without their debug
	# info they are a fifth of the size, which keeps the packages and installs quick.
	case $1 in "$simbin"/*) strip --strip-debug "$2" ;; esac
}

# --- inputs ----------------------------------------------------------------------------------

etcd_dir=$(debian_files etcd-server) || missing etcd "etcd-server is not in the Debian mirror"
etcdctl_dir=$(debian_files etcd-client) || missing etcdctl "etcd-client is not in the Debian mirror"
cni_dir=$(debian_files containernetworking-plugins) ||
	missing cni-plugins "containernetworking-plugins is not in the Debian mirror"
cni_version=$(debian_version containernetworking-plugins)
[ -x "$kubectl" ] || missing kubectl "$kubectl does not exist on this machine"
control_plane=()
for b in kube-apiserver kube-controller-manager kube-scheduler; do
	have "$b" && control_plane+=("$b")
done

# --- kubernetes/core:/stable:/vMINOR/deb/ ---------------------------------------------------

kube_packages() { # MINOR PATCH...
	local minor=$1 repo root v b
	shift
	repo=$out/kubernetes/core:/stable:/v$minor/deb
	dest=$repo/amd64
	mkdir -p "$dest"
	for v in "$@"; do
		if have kubeadm; then
			root=$work/kubeadm
			put "$simbin/kubeadm" "$root/usr/bin/kubeadm" 755
			put "$here/packaging/kubeadm/10-kubeadm.conf" \
				"$root/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf" 644
			mkdir -p "$root/DEBIAN"
			cp "$here/packaging/postrm.in" "$root/DEBIAN/postinst" && chmod 755 "$root/DEBIAN/postinst"
			build_deb kubeadm "$v-1.1" "$root" "cri-tools (>= 1.30.0)" \
				"Command-line utility for administering a Kubernetes cluster"
		fi
		if have kubelet; then
			root=$work/kubelet
			put "$simbin/kubelet" "$root/usr/bin/kubelet" 755
			put "$here/packaging/kubelet/kubelet.service" "$root/usr/lib/systemd/system/kubelet.service" 644
			mkdir -p "$root/etc/kubernetes/manifests"
			# The control-plane "images" the kubelet simulator runs as processes.
			for b in "${control_plane[@]}"; do
				put "$simbin/$b" "$root/usr/libexec/kubernetes-sim/$b" 755
			done
			[ -z "${etcd_dir:-}" ] || put "$etcd_dir/usr/bin/etcd" "$root/usr/libexec/kubernetes-sim/etcd" 755
			[ -z "${etcdctl_dir:-}" ] || put "$etcdctl_dir/usr/bin/etcdctl" "$root/usr/libexec/kubernetes-sim/etcdctl" 755
			build_deb kubelet "$v-1.1" "$root" \
				"conntrack, ebtables, ethtool, iproute2, iptables (>= 1.4.21), kubernetes-cni (>= 1.1.1), mount, socat, util-linux" \
				"Node agent for Kubernetes clusters" kubelet.service
		fi
		if [ -x "$kubectl" ]; then
			root=$work/kubectl
			put "$kubectl" "$root/usr/bin/kubectl" 755
			build_deb kubectl "$v-1.1" "$root" "" "Command-line utility for interacting with a Kubernetes cluster"
		fi
	done
	if have crictl; then
		root=$work/cri-tools
		put "$simbin/crictl" "$root/usr/bin/crictl" 755
		build_deb cri-tools "$minor.0-1.1" "$root" "" "Command-line utility for interacting with a container runtime"
	fi
	if [ -n "${cni_dir:-}" ]; then
		root=$work/kubernetes-cni
		mkdir -p "$root/opt/cni/bin" "$root/etc/cni/net.d"
		cp -a "$cni_dir/usr/lib/cni/." "$root/opt/cni/bin/"
		build_deb kubernetes-cni "$cni_version-1.1" "$root" "" \
			"Binaries required to provision kubernetes container networking"
	fi
	index_packages "$repo" amd64 "$repo"
	release_and_sign "$repo" "isv:kubernetes:core:stable:v$minor"
	cp "$LAB_ARCHIVE_KEY" "$repo/Release.key"
}

# --- docker/ (cri-dockerd) ------------------------------------------------------------------

docker_packages() { # DEBVERSION
	local repo=$out/docker root
	dest=$repo/pool/stable/c/cri-dockerd
	mkdir -p "$dest" "$repo/dists/bookworm/stable/binary-amd64"
	if have cri-dockerd; then
		root=$work/cri-dockerd
		put "$simbin/cri-dockerd" "$root/usr/bin/cri-dockerd" 755
		put "$here/packaging/cri-dockerd/cri-docker.service" "$root/lib/systemd/system/cri-docker.service" 644
		# Like the upstream package: systemd owns the socket, cri-dockerd gets it as fd://.
		put "$here/packaging/cri-dockerd/cri-docker.socket" "$root/lib/systemd/system/cri-docker.socket" 644
		build_deb cri-dockerd "$1" "$root" "docker-ce | docker.io | moby-engine" \
			"Container Runtime Interface shim for Docker Engine" cri-docker.service
	fi
	index_packages "$repo" pool/stable "$repo/dists/bookworm/stable/binary-amd64"
	release_and_sign "$repo/dists/bookworm" "Docker CE" bookworm bookworm stable
	cp "$LAB_ARCHIVE_KEY" "$repo/gpg"
}

while read -ra fields; do
	case ${fields[0]} in
	kubernetes) kube_packages "${fields[@]:1}" ;;
	cri-dockerd) docker_packages "${fields[1]}" ;;
	esac
done < <(grep -v '^#' "$here/versions" | grep .)
sort -u -o "$out/MISSING.txt" "$out/MISSING.txt"
