#!/usr/bin/env bash
# Builds one suite of the lab's Docker repository, laid out like
# download.docker.com/linux/debian:
#   dists/SUITE/{InRelease,Release,Release.gpg}
#   dists/SUITE/stable/binary-amd64/Packages(.gz)
#   dists/SUITE/pool/stable/amd64/*.deb
# with docker-ce, docker-ce-cli and containerd.io named, versioned and depending as upstream's
# (5:29.2.1-1~debian.12~bookworm, containerd.io 2.2.1-1~debian.12~bookworm) and no cri-dockerd.
#
# Inside: Debian's own dockerd and docker CLI (docker.io / docker-cli of that suite; Docker
# CE's binaries cannot be downloaded here), so `docker version` reports Debian's version. The
# containerd.io package carries the lab's containerd 2.x simulator as /usr/bin/containerd and
# /usr/bin/ctr, and Debian's real containerd, ctr, containerd-shim-runc-v2 and runc: the
# simulator passes the containerd API through to that real containerd, which is what dockerd
# talks to (see SIMULATORS.md).
#
#   docker.sh OUT SUITE SIMBIN DEBIAN_POOL
#   (GNUPGHOME: the lab's signing key ring; LAB_ARCHIVE_KEY: its armored public key)
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage="usage: docker.sh OUT SUITE SIMBIN DEBIAN_POOL"
out=${1:?$usage}
suite=${2:?$usage}
simbin=${3:?$usage}
pool=${4:?$usage}
: "${GNUPGHOME:?GNUPGHOME must point at the lab key ring}"
: "${LAB_ARCHIVE_KEY:?LAB_ARCHIVE_KEY must name the lab key (armored)}"
# shellcheck source=repo.sh
. "$here/repo.sh"
# shellcheck source=deb.sh
. "$here/deb.sh"

case $suite in
bookworm) number=12 ;;
trixie) number=13 ;;
*)
	echo "docker.sh: unknown suite $suite" >&2
	exit 1
	;;
esac

work=$(mktemp -d)
trap 'rm -rf --one-file-system "$work"' EXIT
dest=$out/dists/$suite/pool/stable/amd64
mkdir -p "$dest" "$out/dists/$suite/stable/binary-amd64"

debian_files() { # NAME -> scratch dir with the newest NAME_*.deb of the suite's pool unpacked
	local deb dir=$work/debian-$1
	deb=$(find "$pool" -name "${1}_*.deb" | sort -V | tail -n 1)
	if [ -z "$deb" ]; then
		echo "docker.sh: $1 is not in the Debian $suite mirror ($pool)" >&2
		return 1
	fi
	[ -d "$dir" ] || dpkg-deb -x "$deb" "$dir"
	printf '%s\n' "$dir"
}

versions() { # KEY -> the values of the mirror/versions line starting with KEY
	grep -v '^#' "$here/versions" | awk -v k="$1" '$1 == k { $1 = ""; print }'
}

for b in containerd ctr; do
	[ -x "$simbin/$b" ] || {
		echo "docker.sh: the simulator $simbin/$b is missing; build it with: cargo build -p sim-node --bins" >&2
		exit 1
	}
done
engine=$(debian_files docker.io)
containerd=$(debian_files containerd)
runc=$(debian_files runc)
tini=$(debian_files tini)
if [ -x "$engine/usr/bin/docker" ]; then
	cli=$engine
else
	cli=$(debian_files docker-cli)
fi

dist=debian.$number~$suite

for v in $(versions containerd.io); do
	root=$work/containerd.io
	put "$simbin/containerd" "$root/usr/bin/containerd" 755
	put "$simbin/ctr" "$root/usr/bin/ctr" 755
	put "$containerd/usr/bin/containerd-shim-runc-v2" "$root/usr/bin/containerd-shim-runc-v2" 755
	put "$runc/usr/sbin/runc" "$root/usr/bin/runc" 755
	put "$containerd/usr/bin/containerd" "$root/usr/libexec/containerd-lab/containerd" 755
	put "$containerd/usr/bin/ctr" "$root/usr/libexec/containerd-lab/ctr" 755
	put "$here/packaging/containerd.io/containerd.service" "$root/lib/systemd/system/containerd.service" 644
	put "$here/packaging/containerd.io/config.toml" "$root/etc/containerd/config.toml" 644
	sim_version "$root" containerd.io "$v"
	maint_scripts "$root" containerd.service
	build_deb containerd.io "$v-1~$dist" "$root" "$dest" \
		"$(printf '%s\n' 'Maintainer: Containerd team <help@containerd.io>' \
			'Depends: libc6 (>= 2.34), libseccomp2 (>= 2.5.0)' \
			'Conflicts: containerd, runc' 'Replaces: containerd, runc' 'Provides: containerd, runc' \
			'Section: devel' 'Priority: optional' 'Homepage: https://containerd.io')" \
		"An open and reliable container runtime"
done

# dockerd's own libraries (dpkg-shlibdeps would find these in the binary).
shlibs="libc6 (>= 2.34), libsystemd0"
[ "$suite" != bookworm ] || shlibs="$shlibs, libdevmapper1.02.1 (>= 2:1.02.97)"

for v in $(versions docker-ce); do
	root=$work/docker-ce-cli
	put "$cli/usr/bin/docker" "$root/usr/bin/docker" 755
	build_deb docker-ce-cli "5:$v-1~$dist" "$root" "$dest" \
		"$(printf '%s\n' 'Maintainer: Docker <support@docker.com>' 'Depends: libc6 (>= 2.34)' \
			'Recommends: docker-buildx-plugin, docker-compose-plugin' 'Suggests: docker-model-plugin' \
			'Conflicts: docker (<< 1.5~), docker-engine, docker.io' \
			'Replaces: docker-ce (<< 5:0)' 'Breaks: docker-ce (<< 5:0)' \
			'Section: admin' 'Priority: optional' 'Homepage: https://www.docker.com')" \
		"Docker CLI: the open-source application container engine"

	root=$work/docker-ce
	put "$engine/usr/sbin/dockerd" "$root/usr/bin/dockerd" 755
	put "$engine/usr/sbin/docker-proxy" "$root/usr/bin/docker-proxy" 755
	put "$tini/usr/bin/tini-static" "$root/usr/bin/docker-init" 755
	put "$here/packaging/docker-ce/docker.service" "$root/lib/systemd/system/docker.service" 644
	put "$here/packaging/docker-ce/docker.socket" "$root/lib/systemd/system/docker.socket" 644
	sim_version "$root" docker-ce "$v"
	maint_scripts "$root" "docker.socket docker.service" \
		'	if ! getent group docker >/dev/null; then groupadd --system docker; fi'
	build_deb docker-ce "5:$v-1~$dist" "$root" "$dest" \
		"$(printf '%s\n' 'Maintainer: Docker <support@docker.com>' \
			'Pre-Depends: init-system-helpers (>= 1.54~)' \
			"Depends: containerd.io (>= 1.7.27), docker-ce-cli, iptables, nftables, $shlibs" \
			'Recommends: apparmor, ca-certificates, docker-ce-rootless-extras, git, pigz, procps, xz-utils' \
			'Suggests: cgroupfs-mount | cgroup-lite, kmod' \
			'Conflicts: docker (<< 1.5~), docker-engine, docker.io' \
			'Replaces: docker-engine, docker-ce-cli (<< 5:28.0.0)' \
			'Section: admin' 'Priority: optional' 'Homepage: https://www.docker.com')" \
		"Docker: the open-source application container engine"
done

(cd "$out" && apt-ftparchive packages "dists/$suite/pool/stable/amd64") >"$out/dists/$suite/stable/binary-amd64/Packages"
gzip -9n <"$out/dists/$suite/stable/binary-amd64/Packages" >"$out/dists/$suite/stable/binary-amd64/Packages.gz"
release_and_sign "$out/dists/$suite" "Docker CE" "$suite" "$suite" stable
cp "$LAB_ARCHIVE_KEY" "$out/gpg"
echo "mirror: Docker repository for $suite ready ($(du -sh "$out" | cut -f1))" >&2
