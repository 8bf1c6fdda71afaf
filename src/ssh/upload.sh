# Atomic upload: stdin -> temp file beside DEST -> verify sha256 -> chown/chmod -> mv.
# Arguments: DEST SHA256 MODE OWNER GROUP (OWNER and GROUP may be empty).
# The temp file lives in DEST's directory so the final mv is a rename on one
# filesystem: DEST is always either the old file or the complete new one.
set -eu
dest=$1 sum=$2 mode=$3 owner=$4 group=$5
dir=$(dirname -- "$dest")
if [ ! -d "$dir" ]; then
    echo "directory $dir does not exist on this host" >&2
    exit 1
fi
if [ -d "$dest" ]; then
    echo "$dest is a directory" >&2
    exit 1
fi
if ! tmp=$(mktemp "$dir/.installer-upload.XXXXXXXX"); then
    echo "cannot create a file in $dir (no write permission? use a privileged upload)" >&2
    exit 1
fi
# Remove the temp file however this ends: failure, lost connection or signal.
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
cat >"$tmp"
got=$(sha256sum <"$tmp")
got=${got%% *}
if [ "$got" != "$sum" ]; then
    echo "the received data is incomplete or corrupted (sha256 mismatch); $dest was left unchanged" >&2
    exit 1
fi
# chown before chmod: chown clears set-id bits.
if [ -n "$owner$group" ]; then
    chown -- "$owner${group:+:$group}" "$tmp"
fi
chmod -- "$mode" "$tmp"
sync -- "$tmp" 2>/dev/null || :
mv -f -- "$tmp" "$dest"
trap - EXIT
