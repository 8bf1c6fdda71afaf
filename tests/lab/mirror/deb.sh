# shellcheck shell=bash
# Helpers for building the lab's upstream-like .deb packages. Sourced by kubernetes.sh and
# docker.sh, which set $simbin (the simulator binaries) before using put.

# Installs SRC as DEST with MODE. Simulators come from the debug build the tests already made;
# without their debug info they are a fifth of the size, which keeps packages and installs quick.
put() { # SRC DEST MODE
	install -D -m "$3" "$1" "$2"
	case $1 in "${simbin:-/nonexistent}"/*) strip --strip-debug "$2" ;; esac
}

# The version the simulators report for a package (/usr/share/kubernetes-sim/NAME.version).
sim_version() { # ROOT NAME VERSION
	mkdir -p "$1/usr/share/kubernetes-sim"
	printf '%s\n' "$3" >"$1/usr/share/kubernetes-sim/$2.version"
}

# Maintainer scripts as debhelper writes them for packages with systemd units: enable and
# (re)start the units on configure, stop them before removal, reload systemd afterwards.
# PREPARE is shell run first on configure (creating a group, say).
# shellcheck disable=SC2016 # the scripts written here expand $1 and $u themselves
maint_scripts() { # ROOT "UNIT..." [PREPARE]
	local root=$1 units=$2 prepare=${3:-}
	mkdir -p "$root/DEBIAN"
	{
		printf '#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n'
		[ -z "$prepare" ] || printf '%s\n' "$prepare"
		printf '\tif [ -d /run/systemd/system ]; then\n\t\tsystemctl daemon-reload\n'
		if [ -n "$units" ]; then
			printf '\t\tfor u in %s; do systemctl enable "$u" >/dev/null 2>&1 || true; done\n' "$units"
			printf '\t\tfor u in %s; do systemctl restart "$u" || true; done\n' "$units"
		fi
		printf '\tfi\nfi\n'
	} >"$root/DEBIAN/postinst"
	{
		printf '#!/bin/sh\nset -e\n'
		if [ -n "$units" ]; then
			printf 'if [ "$1" = remove ] && [ -d /run/systemd/system ]; then\n'
			printf '\tfor u in %s; do systemctl stop "$u" || true; systemctl disable "$u" >/dev/null 2>&1 || true; done\nfi\n' "$units"
		fi
	} >"$root/DEBIAN/prerm"
	printf '#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n\tsystemctl daemon-reload || true\nfi\n' >"$root/DEBIAN/postrm"
	chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
}

# Builds ROOT into OUTDIR/FILE (FILE defaults to NAME_VERSION_amd64.deb without the epoch) and
# removes ROOT. FIELDS: further control lines ("Depends: ...", newline separated).
build_deb() { # NAME VERSION ROOT OUTDIR FIELDS DESCRIPTION [FILE]
	local name=$1 version=$2 root=$3 outdir=$4 fields=$5 description=$6 file=${7:-}
	[ -n "$file" ] || file=${name}_${version#*:}_amd64.deb
	mkdir -p "$root/DEBIAN" "$outdir"
	if [ -d "$root/etc" ]; then
		(cd "$root" && find etc -type f | sed 's|^|/|') >"$root/DEBIAN/conffiles"
		[ -s "$root/DEBIAN/conffiles" ] || rm -f "$root/DEBIAN/conffiles"
	fi
	{
		printf 'Package: %s\nVersion: %s\nArchitecture: amd64\n' "$name" "$version"
		grep -q '^Maintainer:' <<<"$fields" || printf 'Maintainer: installer lab <lab@mirror.lab>\n'
		printf 'Installed-Size: %s\n' "$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
		[ -z "$fields" ] || printf '%s\n' "$fields"
		printf 'Description: %s\n' "$description"
		printf ' Built by the installer lab; not the upstream package.\n'
	} >"$root/DEBIAN/control"
	dpkg-deb --root-owner-group -Zgzip -z1 --build "$root" "$outdir/$file" >/dev/null
	rm -rf --one-file-system "$root"
	echo "mirror: built $file" >&2
}
