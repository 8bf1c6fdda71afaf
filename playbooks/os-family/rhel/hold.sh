# The Kubernetes repository file excludes these packages; installs name the repo explicitly.
grep -q '^exclude=' /etc/yum.repos.d/kubernetes.repo
