repo={{ (inventory.packages.dockerRepo | replace("{distro}", "rhel")) | quote }}
curl -fsSL "${repo%/}/docker-ce.repo" -o /etc/yum.repos.d/docker-ce.repo.new
mv /etc/yum.repos.d/docker-ce.repo.new /etc/yum.repos.d/docker-ce.repo
