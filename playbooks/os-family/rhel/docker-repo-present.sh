test -s /etc/yum.repos.d/docker-ce.repo
