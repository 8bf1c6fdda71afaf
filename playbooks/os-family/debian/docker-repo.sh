# Docker's repository for this distribution and release (docker-ce, docker-ce-cli, containerd.io).
repo={{ (inventory.packages.dockerRepo | replace("{distro}", facts.os_id)) | quote }}
install -d -m 0755 /etc/apt/keyrings
curl -fsSL "${repo%/}/gpg" | gpg --dearmor --batch --yes -o /etc/apt/keyrings/docker.gpg.new
chmod 0644 /etc/apt/keyrings/docker.gpg.new
mv /etc/apt/keyrings/docker.gpg.new /etc/apt/keyrings/docker.gpg
list="deb [signed-by=/etc/apt/keyrings/docker.gpg] ${repo%/} {{ facts.os_codename }} stable"
if [ "$(cat /etc/apt/sources.list.d/docker.list 2>/dev/null)" != "$list" ]; then
  printf '%s\n' "$list" > /etc/apt/sources.list.d/docker.list.new
  mv /etc/apt/sources.list.d/docker.list.new /etc/apt/sources.list.d/docker.list
fi
