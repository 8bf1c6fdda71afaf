# The per-minor rpm repository, as pkgs.k8s.io documents it; the kube packages are excluded
# from ordinary upgrades (the hold), installs pass --disableexcludes=kubernetes.
repo={{ (inventory.packages.kubernetesRepo | replace("{format}", os.repoFormat)) | quote }}
cat > /etc/yum.repos.d/kubernetes.repo.new <<REPO
[kubernetes]
name=Kubernetes
baseurl=${repo%/}/
enabled=1
gpgcheck=1
gpgkey=${repo%/}/repodata/repomd.xml.key
exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni
REPO
mv /etc/yum.repos.d/kubernetes.repo.new /etc/yum.repos.d/kubernetes.repo
