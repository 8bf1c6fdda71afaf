# shellcheck shell=bash
# The base images: built once per Debian suite by image/build.sh, cached under
# $LAB_CACHE/image-<suite>-<hash>/ where the hash covers the recipe (tests/lab/image/**), the
# suite and the running kernel (modules.builtin).

image_id() { # SUITE
	local files
	mapfile -t files < <(find "$LAB_HOME/image" -type f | LC_ALL=C sort)
	printf '%s\n%s\n%s\n' "$(sha_of_files "${files[@]}")" "$(uname -r)" "$1" | sha256sum | cut -c1-16
}

# Unmounts everything below DIR (deepest first), then removes DIR without ever crossing into
# another file system: a half-built image may still have /proc or /dev bound inside.
remove_tree() { # DIR
	local dir=$1 m
	[ -e "$dir" ] || return 0
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$dir" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
	rm -rf --one-file-system "$dir"
}

# Prints the cached image's root file system for SUITE, building it first when needed.
ensure_image() { # SUITE
	local suite=$1 id dir tmp start
	id=$(image_id "$suite")
	dir=$LAB_CACHE/image-$suite-$id
	if [ -d "$dir/rootfs" ]; then
		touch "$dir" # in use: not pruned for another hour
		printf '%s\n' "$dir/rootfs"
		return 0
	fi
	mkdir -p "$LAB_CACHE"
	exec 8>"$LAB_CACHE/.image.lock"
	flock 8
	if [ ! -d "$dir/rootfs" ]; then
		# Leftovers of builds that were killed; they never became an image.
		for tmp in "$LAB_CACHE"/image-*.tmp-*; do remove_tree "$tmp"; done
		tmp=$dir.tmp-$$
		start=$(now_ms)
		log "building the $suite base image $id (once; about a minute)"
		mkdir -p "$tmp"
		if ! debian_sources "$suite" | "$LAB_HOME/image/build.sh" "$tmp/rootfs" \
			"$LAB_CACHE/debootstrap-$suite" "$suite" >"$tmp/build.log" 2>&1; then
			tail -n 30 "$tmp/build.log" >&2
			remove_tree "$tmp"
			die "building the base image failed (log above); fix tests/lab/image/ or the machine's apt sources and retry"
		fi
		mv "$tmp" "$dir"
		log "base image built in $(elapsed "$start"): $dir"
		prune_images "$suite-$id"
	fi
	flock -u 8
	exec 8>&-
	printf '%s\n' "$dir/rootfs"
}

# Older images are removed unless a lab still runs on them or one was handed out within the
# hour (an `up` running alongside may not have recorded it yet).
prune_images() { # KEEP_ID
	local d in_use
	in_use=$(cat "$LAB_RUN"/*/lab.env 2>/dev/null | sed -n "s/^LAB_IMAGES=//p" || true)
	while read -r d; do
		case $d in *"image-$1" | *.tmp-*) continue ;; esac
		grep -qF "$d" <<<"$in_use" && continue
		log "removing the outdated image $d"
		remove_tree "$d"
	done < <(find "$LAB_CACHE" -mindepth 1 -maxdepth 1 -type d -name 'image-*' -mmin +60)
}
