repo={{ (inventory.packages.kubernetesRepo | replace("{format}", os.repoFormat)) | quote }}
grep -qx "baseurl=${repo%/}/" /etc/yum.repos.d/kubernetes.repo 2>/dev/null
