#!/usr/bin/env bash
# Builds the lab's base image (a Debian 12 or 13 root file system) into ROOTFS.
#
#   build.sh ROOTFS DEBOOTSTRAP_CACHE SUITE < sources
#
# SUITE is bookworm or trixie. `sources` holds "URI SUITE" lines: the Debian archives for that
# suite (the first line with the bare suite is used by debootstrap). Called by
# `tests/lab/lab`, which caches the result by a hash of this directory and the suite; run it
# directly only to debug the recipe.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage="usage: build.sh ROOTFS DEBOOTSTRAP_CACHE SUITE < sources"
rootfs=${1:?$usage}
cache=${2:?$usage}
suite=${3:?$usage}
ops_uid=1000

mapfile -t sources
main_uri=$(printf '%s\n' "${sources[@]}" | awk -v s="$suite" '$2 == s { print $1; exit }')
[ -n "$main_uri" ] || {
	echo "build.sh: no '$suite' source given on stdin" >&2
	exit 1
}

packages=$(grep -v '^#' "$here/packages" | grep . | paste -sd, -)
mkdir -p "$rootfs" "$cache"

echo "image: debootstrap $suite (minbase + $packages)" >&2
debootstrap --variant=minbase --include="$packages" --cache-dir="$cache" \
	"$suite" "$rootfs" "$main_uri" >&2

# Everything below runs inside the new root with the API file systems mounted; services must
# not start while packages are installed.
mounted=()
cleanup() {
	local m
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
	rm -f "$rootfs/usr/sbin/policy-rc.d"
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
	mount --bind "/$m" "$rootfs/$m"
	mounted+=("$rootfs/$m")
done
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"

in_root() { chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

# Bring the image up to the point releases and security updates this machine sees, so the
# mirror only has to carry what the installer adds.
: >"$rootfs/etc/apt/sources.list"
for line in "${sources[@]}"; do
	read -r uri s <<<"$line"
	printf 'deb %s %s main\n' "$uri" "$s" >>"$rootfs/etc/apt/sources.list"
done
apt_opts=(-o Acquire::Check-Valid-Until=false -o Acquire::Languages=none)
in_root apt-get "${apt_opts[@]}" update >&2
in_root apt-get "${apt_opts[@]}" -y dist-upgrade >&2
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/*
# Hosts get their sources (the lab mirror) from `lab up`; the build machine's stay out.
: >"$rootfs/etc/apt/sources.list"

echo "image: configuring" >&2
cp -a "$here/rootfs/." "$rootfs/"
chmod 0440 "$rootfs/etc/sudoers.d/ops"
in_root useradd --create-home --uid "$ops_uid" --user-group --shell /bin/bash ops
# A locked password ('!') would be refused by some sshd setups even for keys; '*' only
# means "no password login".
in_root usermod --password '*' ops
install -d -m 0700 -o "$ops_uid" -g "$ops_uid" "$rootfs/home/ops/.ssh"
in_root visudo -c >&2

# Per-host identity is written by `lab up`: host keys, machine-id, hostname, hosts.
rm -f "$rootfs"/etc/ssh/ssh_host_*
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/etc/hostname" "$rootfs/var/lib/dbus/machine-id"
: >"$rootfs/etc/resolv.conf"

# apt's daily timers stay enabled, as on any fresh Debian install (one host per lab also has
# them take the dpkg lock right after boot: see `lab up --busy-apt`).
in_root systemctl set-default multi-user.target >&2

kver=$(uname -r)
install -d "$rootfs/lib/modules/$kver"
grep -v '^#' "$here/modules.builtin" | grep . >"$rootfs/lib/modules/$kver/modules.builtin"
: >"$rootfs/lib/modules/$kver/modules.builtin.modinfo"
in_root depmod -a "$kver"

# Nothing here may pull in iptables: the installer has to install what it needs.
if in_root dpkg-query -W -f '${Status}' iptables 2>/dev/null | grep -q 'ok installed'; then
	echo "image: iptables is installed (pulled in by: $(in_root apt-cache rdepends --installed iptables | tail -n +3 | tr -d ' ' | paste -sd,)); the image must not carry it" >&2
	exit 1
fi

echo "image: done ($(du -shx "$rootfs" | cut -f1))" >&2
