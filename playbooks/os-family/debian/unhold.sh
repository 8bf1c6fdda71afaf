apt-mark -o DPkg::Lock::Timeout=300 unhold{% for p in packages %} {{ p | quote }}{% endfor %} >/dev/null 2>&1 || true
