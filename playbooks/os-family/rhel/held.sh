grep -q '^exclude=' /etc/yum.repos.d/kubernetes.repo
