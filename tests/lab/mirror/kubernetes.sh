#!/usr/bin/env bash
# Builds the suite-independent upstream-like part of the lab mirror:
#   kubernetes/core:/stable:/vMINOR/deb/   flat repos as on pkgs.k8s.io (InRelease, Release.key)
#   github/Mirantis/cri-dockerd/releases/download/vVERSION/
#                                          cri-dockerd's release assets (.deb per distro, .tgz),
#                                          plus SHA256SUMS (the lab's; upstream publishes none)
# Package names, versions, paths and dependencies follow upstream; the kubeadm, kubelet,
# crictl and cri-dockerd binaries are the lab simulators, kubectl is the real binary, etcd and
# the CNI plugins come from Debian 12's packages.
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
# shellcheck source=deb.sh
. "$here/deb.sh"

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

versions() { # KEY -> the lines of mirror/versions starting with KEY, without it
	grep -v '^#' "$here/versions" | awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print }'
}

# --- inputs ----------------------------------------------------------------------------------

etcd_dir=$(debian_files etcd-server) || missing etcd "etcd-server is not in the Debian mirror"
etcdctl_dir=$(debian_files etcd-client) || missing etcdctl "etcd-client is not in the Debian mirror"
cni_dir=$(debian_files containernetworking-plugins) ||
	missing cni-plugins "containernetworking-plugins is not in the Debian mirror"
cni_version=$(versions kubernetes-cni | head -n 1)
[ -x "$kubectl" ] || missing kubectl "$kubectl does not exist on this machine"
control_plane=()
for b in kube-apiserver kube-controller-manager kube-scheduler; do
	have "$b" && control_plane+=("$b")
done

# --- kubernetes/core:/stable:/vMINOR/deb/ ---------------------------------------------------
# Dependencies as pkgs.k8s.io's packages (kubernetes/release, cmd/krel/templates/latest):
# kubeadm needs cri-tools; kubelet needs kubernetes-cni, mount and util-linux and only
# recommends iptables (conntrack, socat, ethtool, ebtables and iproute2 are no longer declared).

kube_packages() { # MINOR PATCH...
	local minor=$1 repo dest root v b
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
			sim_version "$root" kubeadm "$v"
			maint_scripts "$root" ""
			build_deb kubeadm "$v-1.1" "$root" "$dest" \
				"$(printf 'Depends: cri-tools (>= 1.30.0)\nSection: admin\nPriority: optional\nHomepage: https://kubernetes.io')" \
				"Command-line utility for administering a Kubernetes cluster"
		fi
		if have kubelet; then
			root=$work/kubelet
			put "$simbin/kubelet" "$root/usr/bin/kubelet" 755
			put "$here/packaging/kubelet/kubelet.service" "$root/usr/lib/systemd/system/kubelet.service" 644
			put "$here/packaging/kubelet/kubelet.env" "$root/etc/default/kubelet" 644
			mkdir -p "$root/etc/kubernetes/manifests" "$root/var/lib/kubelet"
			touch "$root/etc/kubernetes/manifests/.kubelet-keep" "$root/var/lib/kubelet/.kubelet-keep"
			# The control-plane "images" the kubelet simulator runs as processes.
			for b in "${control_plane[@]}"; do
				put "$simbin/$b" "$root/usr/libexec/kubernetes-sim/$b" 755
			done
			[ -z "${etcd_dir:-}" ] || put "$etcd_dir/usr/bin/etcd" "$root/usr/libexec/kubernetes-sim/etcd" 755
			[ -z "${etcdctl_dir:-}" ] || put "$etcdctl_dir/usr/bin/etcdctl" "$root/usr/libexec/kubernetes-sim/etcdctl" 755
			sim_version "$root" kubelet "$v"
			maint_scripts "$root" kubelet.service
			build_deb kubelet "$v-1.1" "$root" "$dest" \
				"$(printf 'Depends: kubernetes-cni (>= 1.2.0), mount, util-linux\nRecommends: iptables (>= 1.8.4)\nSection: net\nPriority: optional\nHomepage: https://kubernetes.io')" \
				"Node agent for Kubernetes clusters"
		fi
		if [ -x "$kubectl" ]; then
			root=$work/kubectl
			put "$kubectl" "$root/usr/bin/kubectl" 755
			sim_version "$root" kubectl "$v"
			build_deb kubectl "$v-1.1" "$root" "$dest" \
				"$(printf 'Section: admin\nPriority: optional\nHomepage: https://kubernetes.io')" \
				"Command-line utility for interacting with a Kubernetes cluster"
		fi
	done
	if have crictl; then
		root=$work/cri-tools
		put "$simbin/crictl" "$root/usr/bin/crictl" 755
		sim_version "$root" cri-tools "$minor.0"
		build_deb cri-tools "$minor.0-1.1" "$root" "$dest" \
			"$(printf 'Section: admin\nPriority: optional\nHomepage: https://kubernetes.io')" \
			"Command-line utility for interacting with a container runtime"
	fi
	if [ -n "${cni_dir:-}" ]; then
		root=$work/kubernetes-cni
		mkdir -p "$root/opt/cni/bin" "$root/etc/cni/net.d"
		cp -a "$cni_dir/usr/lib/cni/." "$root/opt/cni/bin/"
		touch "$root/etc/cni/net.d/.kubernetes-cni-keep"
		build_deb kubernetes-cni "$cni_version-1.1" "$root" "$dest" \
			"$(printf 'Section: net\nPriority: optional\nHomepage: https://kubernetes.io')" \
			"Binaries required to provision kubernetes container networking"
	fi
	index_packages "$repo" amd64 "$repo"
	release_and_sign "$repo" "isv:kubernetes:core:stable:v$minor"
	cp "$LAB_ARCHIVE_KEY" "$repo/Release.key"
}

# --- github/Mirantis/cri-dockerd/releases/download/vVERSION/ ---------------------------------
# Assets named as upstream's: cri-dockerd_0.3.21.3-0.debian-bookworm_amd64.deb (GitHub turns
# the package version's '~' into '.': the package itself is 0.3.21~3-0~debian-bookworm), no
# Debian 13 build, and cri-dockerd-0.3.21.amd64.tgz. The .deb carries upstream's
# packaging/systemd units (cri-docker.service, cri-docker.socket with fd:// activation) and its
# Depends; it does not depend on Docker.

cri_dockerd_release() { # VERSION DISTRO...
	local version=$1 dir root distro file
	shift
	have cri-dockerd || return 0
	dir=$out/github/Mirantis/cri-dockerd/releases/download/v$version
	mkdir -p "$dir"
	for distro in "$@"; do
		root=$work/cri-dockerd
		put "$simbin/cri-dockerd" "$root/usr/bin/cri-dockerd" 755
		put "$here/packaging/cri-dockerd/cri-docker.service" "$root/lib/systemd/system/cri-docker.service" 644
		put "$here/packaging/cri-dockerd/cri-docker.socket" "$root/lib/systemd/system/cri-docker.socket" 644
		sim_version "$root" cri-dockerd "$version"
		maint_scripts "$root" "cri-docker.socket cri-docker.service"
		file=cri-dockerd_$version.3-0.${distro}_amd64.deb
		build_deb cri-dockerd "$version~3-0~$distro" "$root" "$dir" \
			"$(printf '%s\n' 'Maintainer: Mirantis <support@mirantis.com>' \
				'Depends: containerd (>= 1.2.2-3) | containerd.io (>= 1.2.2-3), iptables, libseccomp2 (>= 2.3.0), libc6 (>= 2.34)' \
				'Recommends: aufs-tools, ca-certificates, cgroupfs-mount | cgroup-lite, git, pigz, xz-utils, libltdl7' \
				'Section: admin' 'Priority: optional' 'Homepage: https://www.mirantis.com')" \
			"cri-dockerd is a lightweight implementation of the CRI specification which talks to docker." \
			"$file"
	done
	root=$work/tgz/cri-dockerd
	put "$simbin/cri-dockerd" "$root/cri-dockerd" 755
	tar -C "$work/tgz" --owner=0 --group=0 --numeric-owner -czf "$dir/cri-dockerd-$version.amd64.tgz" cri-dockerd
	rm -rf --one-file-system "$work/tgz"
	(cd "$dir" && sha256sum -- *.deb *.tgz >SHA256SUMS)
}

while read -ra fields; do
	case ${fields[0]} in
	kubernetes) kube_packages "${fields[@]:1}" ;;
	cri-dockerd) cri_dockerd_release "${fields[@]:1}" ;;
	esac
done < <(grep -v '^#' "$here/versions" | grep .)
sort -u -o "$out/MISSING.txt" "$out/MISSING.txt"
