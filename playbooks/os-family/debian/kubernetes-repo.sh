# The per-minor flat repository, signed with its Release.key, as pkgs.k8s.io documents it.
# apt reads keyrings as the unprivileged _apt user: the key must be world-readable.
repo={{ (inventory.packages.kubernetesRepo | replace("{format}", os.repoFormat)) | quote }}
install -d -m 0755 /etc/apt/keyrings
curl -fsSL "${repo%/}/Release.key" | gpg --dearmor --batch --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg.new
chmod 0644 /etc/apt/keyrings/kubernetes-apt-keyring.gpg.new
mv /etc/apt/keyrings/kubernetes-apt-keyring.gpg.new /etc/apt/keyrings/kubernetes-apt-keyring.gpg
list="deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] ${repo%/}/ /"
if [ "$(cat /etc/apt/sources.list.d/kubernetes.list 2>/dev/null)" != "$list" ]; then
  printf '%s\n' "$list" > /etc/apt/sources.list.d/kubernetes.list.new
  mv /etc/apt/sources.list.d/kubernetes.list.new /etc/apt/sources.list.d/kubernetes.list
fi
