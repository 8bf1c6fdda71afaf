repo={{ (inventory.packages.kubernetesRepo | replace("{format}", os.repoFormat)) | quote }}
test -s /etc/apt/keyrings/kubernetes-apt-keyring.gpg &&
  test "$(stat -c %a /etc/apt/keyrings/kubernetes-apt-keyring.gpg)" = 644 &&
  test "$(cat /etc/apt/sources.list.d/kubernetes.list 2>/dev/null)" = "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] ${repo%/}/ /"
