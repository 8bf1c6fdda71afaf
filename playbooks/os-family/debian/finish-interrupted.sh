# A dpkg run that was killed (a dropped SSH connection kills what it ran) makes apt refuse
# every install ("dpkg was interrupted") until it is finished, which is what apt asks for.
if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || [ -n "$(dpkg --audit 2>/dev/null)" ]; then
  DEBIAN_FRONTEND=noninteractive dpkg --force-confold --configure -a
fi
