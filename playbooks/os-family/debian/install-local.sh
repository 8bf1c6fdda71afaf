# Install a downloaded package file (its dependencies from the configured repositories).
{% include os.dir ~ "/finish-interrupted.sh" %}
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends {{ package_file | quote }}
