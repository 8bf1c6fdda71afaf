{% include os.dir ~ "/finish-interrupted.sh" %}
# Fresh hosts run apt-daily/unattended-upgrades: wait for the dpkg lock instead of failing.
apt-get -o DPkg::Lock::Timeout=300 update -q
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
  --no-install-recommends --allow-downgrades{% for p in packages %} {{ p | quote }}{% endfor %}
