# Helpers shared by the mirror's repository builders: index, Release, signatures.
# Sourced by debian.sh and kubernetes.sh. Needs GNUPGHOME set to the lab's key ring.

# Packages + Packages.gz for the .debs below POOL, with Filename fields relative to ROOT.
index_packages() { # ROOT POOL OUTDIR
	(cd "$1" && apt-ftparchive packages "$2") >"$3/Packages"
	gzip -9n <"$3/Packages" >"$3/Packages.gz"
}

# Release (hashes of everything below DIR), then InRelease and Release.gpg signed by the lab
# key, as apt expects from any signed repository.
release_and_sign() { # DIR SUITE CODENAME COMPONENTS LABEL
	local dir=$1 tmp
	tmp=$(mktemp)
	apt-ftparchive \
		-o APT::FTPArchive::Release::Origin="installer-lab" \
		-o APT::FTPArchive::Release::Label="$5" \
		-o APT::FTPArchive::Release::Suite="$2" \
		-o APT::FTPArchive::Release::Codename="$3" \
		-o APT::FTPArchive::Release::Architectures="amd64" \
		-o APT::FTPArchive::Release::Components="$4" \
		release "$dir" >"$tmp"
	mv "$tmp" "$dir/Release"
	chmod 644 "$dir/Release"
	gpg --batch --yes --quiet --clearsign --output "$dir/InRelease" "$dir/Release"
	gpg --batch --yes --quiet --armor --detach-sign --output "$dir/Release.gpg" "$dir/Release"
}
