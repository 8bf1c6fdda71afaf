# The CA data of kubeconfigs (kubeadm writes one cluster per file): trusts FILE reads whether
# FILE (stdin when "-") carries this stage's CAs; trust FILE makes it so.
trusts() { grep -qx ' *certificate-authority-data: {{ vars.trusted_b64 }}' "$1"; }
trust() { sed -i 's|^\( *certificate-authority-data:\).*|\1 {{ vars.trusted_b64 }}|' "$1"; }
