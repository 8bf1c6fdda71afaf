apt-get -o DPkg::Lock::Timeout=300 update -q
