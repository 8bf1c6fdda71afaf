# Succeeds when every control-plane static pod manifest names the step's tag.
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  grep -Eq "^ *image: *[\"']?[^\"' ]*/$c:v{{ cluster.kubernetes }}[\"']?$" /etc/kubernetes/manifests/$c.yaml || exit 1
done
