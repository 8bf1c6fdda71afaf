dnf -q makecache
