//! Lab simulators for the node side of Kubernetes: `kubeadm`, `kubelet`, `cri-dockerd` and
//! `crictl`. They write the files the real programs write and talk to the API-server simulator
//! and the real etcd only over HTTPS, so the installer drives them exactly like the real tools.

pub mod config;
pub mod cri;
pub mod etcd;
pub mod images;
pub mod kube;
pub mod kubeadm;
pub mod kubeconfig;
pub mod kubelet;
pub mod manifests;
pub mod paths;
pub mod pki;
pub mod preflight;
pub mod token;
pub mod util;
