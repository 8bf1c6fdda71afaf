#!/usr/bin/env bash
# Builds the Debian part of the lab mirror for one suite: the packages in debian-packages (and
# debian-packages.SUITE) plus everything apt would install with them onto that suite's base
# image, as a signed archive (dists/SUITE/main/binary-amd64, pool/SUITE/main/...) that lab
# hosts use as their only Debian source.
#
#   debian.sh OUT ROOTFS DEBCACHE SUITE
#   (GNUPGHOME: the lab's signing key ring; APT_CONFIG: apt for SUITE when it is not this
#   machine's own release)
#
# The set is resolved by apt's own solver, all packages at once, against the image's dpkg
# status. Any subset installs from it too: a host's apt sees only the mirror, so where the
# solver picked one alternative of an OR-dependency, that is the one a host finds. Following
# every alternative of `apt-cache depends --recurse` instead drags in GTK, Mesa and fonts
# (~290 MB) that no host would install.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage="usage: debian.sh OUT ROOTFS DEBCACHE SUITE"
out=${1:?$usage}
rootfs=${2:?$usage}
debs=${3:?$usage}
suite=${4:?$usage}
: "${GNUPGHOME:?GNUPGHOME must point at the lab key ring}"
# shellcheck source=repo.sh
. "$here/repo.sh"

mkdir -p "$out"
mapfile -t wanted < <(cat "$here/debian-packages" "$here/debian-packages.$suite" 2>/dev/null | grep -v '^#' | grep .)
apt_opts=(-o "Dir::State::status=$rootfs/var/lib/dpkg/status" -o APT::Install-Recommends=true)

# "name=version" of every package apt would install (or upgrade) on the image.
if ! apt-get -s "${apt_opts[@]}" install "${wanted[@]}" >"$out/.sim" 2>&1; then
	grep -E '^(E:| )' "$out/.sim" >&2
	echo "debian.sh: apt cannot resolve ${wanted[*]}; run apt-get update and retry" >&2
	exit 1
fi
sed -n 's/^Inst \([^ ]*\) \(\[[^]]*\] \)\{0,1\}(\([^ ]*\) .*/\1=\3/p' "$out/.sim" | sort -u >"$out/PACKAGES.txt"
rm -f "$out/.sim"
echo "mirror: $(wc -l <"$out/PACKAGES.txt") Debian $suite packages to serve" >&2

# Download what the cache lacks; apt-get download checks every file against the signed
# indexes of this machine's sources.
mkdir -p "$debs"
mapfile -t specs <"$out/PACKAGES.txt"
apt-get download --print-uris "${specs[@]}" | awk '{ print $2 }' | sort >"$out/.files"
need=()
while read -r f; do
	[ -s "$debs/$f" ] && continue
	name=${f%%_*}
	need+=("$(grep -m1 "^$name=" "$out/PACKAGES.txt")")
done <"$out/.files"
if [ ${#need[@]} -gt 0 ]; then
	echo "mirror: downloading ${#need[@]} packages into $debs" >&2
	(cd "$debs" && apt-get download "${need[@]}" >&2)
fi

mkdir -p "$out/dists/$suite/main/binary-amd64"
while read -r f; do
	name=${f%%_*}
	case $name in lib?*) prefix=${name:0:4} ;; *) prefix=${name:0:1} ;; esac
	# Each suite has its own pool, so several suites can be served side by side.
	dest=$out/pool/$suite/main/$prefix/$name/${f/_[0-9]*%3a/_} # pool names carry no epoch
	mkdir -p "${dest%/*}"
	ln -f "$debs/$f" "$dest" 2>/dev/null || cp "$debs/$f" "$dest"
done <"$out/.files"
rm -f "$out/.files"

index_packages "$out" "pool/$suite/main" "$out/dists/$suite/main/binary-amd64"
release_and_sign "$out/dists/$suite" "installer lab Debian mirror" "$suite" "$suite" main
echo "mirror: Debian archive ready ($(du -sh "$out" | cut -f1))" >&2
