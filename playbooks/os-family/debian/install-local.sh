# Install a downloaded package file (its dependencies from the configured repositories).
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends {{ package_file | quote }}
