# shellcheck shell=bash
# Helpers shared by the mirror's repository builders: index, Release, signatures.
# Sourced by debian.sh and kubernetes.sh. Needs GNUPGHOME set to the lab's key ring.

# Packages + Packages.gz for the .debs below POOL, with Filename fields relative to ROOT.
index_packages() { # ROOT POOL OUTDIR
	(cd "$1" && apt-ftparchive packages "$2") >"$3/Packages"
	gzip -9n <"$3/Packages" >"$3/Packages.gz"
}

# Release (hashes of the indexes below DIR), then InRelease and Release.gpg signed by the lab
# key, as apt expects from any signed repository. Empty fields are left out (flat repos).
release_and_sign() { # DIR LABEL [SUITE CODENAME COMPONENTS]
	local dir=$1 tmp opts=() field value
	opts+=(-o APT::FTPArchive::Release::Origin=installer-lab)
	opts+=(-o APT::FTPArchive::Release::Label="$2")
	opts+=(-o APT::FTPArchive::Release::Architectures=amd64)
	for field in Suite Codename Components; do
		case $field in Suite) value=${3:-} ;; Codename) value=${4:-} ;; Components) value=${5:-} ;; esac
		[ -z "$value" ] || opts+=(-o "APT::FTPArchive::Release::$field=$value")
	done
	tmp=$(mktemp)
	apt-ftparchive "${opts[@]}" release "$dir" >"$tmp"
	mv "$tmp" "$dir/Release"
	chmod 644 "$dir/Release"
	gpg --batch --yes --quiet --clearsign --output "$dir/InRelease" "$dir/Release"
	gpg --batch --yes --quiet --armor --detach-sign --output "$dir/Release.gpg" "$dir/Release"
}
