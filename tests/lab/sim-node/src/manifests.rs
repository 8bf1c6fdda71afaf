//! Files kubeadm writes for the kubelet: static-pod manifests for the control plane,
//! /var/lib/kubelet/config.yaml and /var/lib/kubelet/kubeadm-flags.env.

use anyhow::{Result, anyhow};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

use crate::config::{Arg, ClusterConfiguration, host_port};
use crate::paths::{self, s};
use crate::util::KubeVersion;

/// `--name=value` flags: kubeadm's defaults overridden by extraArgs, sorted by name.
pub fn build_args(defaults: &[(&str, String)], extra: &[Arg]) -> Vec<String> {
    let mut args: Vec<(String, String)> = defaults
        .iter()
        .filter(|(n, _)| !extra.iter().any(|a| a.name == *n))
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    args.extend(extra.iter().map(|a| (a.name.clone(), a.value.clone())));
    args.sort_by(|a, b| a.0.cmp(&b.0));
    args.into_iter()
        .map(|(n, v)| format!("--{n}={v}"))
        .collect()
}

fn host_path(name: &str, path: &str, kind: &str) -> Value {
    json!({"name": name, "hostPath": {"path": path, "type": kind}})
}

fn mount(name: &str, path: &str, ro: bool) -> Value {
    if ro {
        json!({"name": name, "mountPath": path, "readOnly": true})
    } else {
        json!({"name": name, "mountPath": path})
    }
}

fn probe(host: &str, path: &str, port: u16, scheme: &str, failures: u32) -> Value {
    json!({
        "failureThreshold": failures,
        "httpGet": {"host": host, "path": path, "port": port, "scheme": scheme},
        "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15
    })
}

#[allow(clippy::too_many_arguments)]
fn pod(
    name: &str,
    image: String,
    command: Vec<String>,
    annotations: Value,
    mounts: Vec<Value>,
    volumes: Vec<Value>,
    probes: Map<String, Value>,
    cpu: &str,
    envs: &[Value],
) -> Value {
    let mut container = json!({
        "command": command,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": name,
        "resources": {"requests": {"cpu": cpu}},
        "volumeMounts": mounts,
    });
    if name == "etcd" {
        container["resources"]["requests"]["memory"] = json!("100Mi");
    }
    if !envs.is_empty() {
        container["env"] = json!(envs);
    }
    for (k, v) in probes {
        container[k] = v;
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": annotations,
            "labels": {"component": name, "tier": "control-plane"},
            "name": name,
            "namespace": "kube-system",
        },
        "spec": {
            "containers": [container],
            "hostNetwork": true,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": volumes,
        },
        "status": {},
    })
}

/// Node-local facts the manifests depend on.
pub struct Local<'a> {
    pub cfg: &'a ClusterConfiguration,
    pub version: KubeVersion,
    pub node_name: &'a str,
    pub advertise: IpAddr,
    pub bind_port: u16,
}

impl Local<'_> {
    fn image(&self, component: &str, tag: &str) -> String {
        format!("{}/{component}:{tag}", self.cfg.image_repository)
    }

    fn pki(&self, f: &str) -> String {
        format!("{}/{f}", self.cfg.cert_dir().display())
    }

    pub fn api_server(&self) -> Value {
        let adv = self.advertise.to_string();
        let d = [
            ("advertise-address", adv.clone()),
            ("allow-privileged", "true".into()),
            ("authorization-mode", "Node,RBAC".into()),
            ("client-ca-file", self.pki("ca.crt")),
            ("enable-admission-plugins", "NodeRestriction".into()),
            ("enable-bootstrap-token-auth", "true".into()),
            ("etcd-cafile", self.pki("etcd/ca.crt")),
            ("etcd-certfile", self.pki("apiserver-etcd-client.crt")),
            ("etcd-keyfile", self.pki("apiserver-etcd-client.key")),
            ("etcd-servers", "https://127.0.0.1:2379".into()),
            (
                "kubelet-client-certificate",
                self.pki("apiserver-kubelet-client.crt"),
            ),
            (
                "kubelet-client-key",
                self.pki("apiserver-kubelet-client.key"),
            ),
            (
                "kubelet-preferred-address-types",
                "InternalIP,ExternalIP,Hostname".into(),
            ),
            ("proxy-client-cert-file", self.pki("front-proxy-client.crt")),
            ("proxy-client-key-file", self.pki("front-proxy-client.key")),
            ("requestheader-allowed-names", "front-proxy-client".into()),
            (
                "requestheader-client-ca-file",
                self.pki("front-proxy-ca.crt"),
            ),
            (
                "requestheader-extra-headers-prefix",
                "X-Remote-Extra-".into(),
            ),
            ("requestheader-group-headers", "X-Remote-Group".into()),
            ("requestheader-username-headers", "X-Remote-User".into()),
            ("secure-port", self.bind_port.to_string()),
            (
                "service-account-issuer",
                format!(
                    "https://kubernetes.default.svc.{}",
                    self.cfg.networking.dns_domain
                ),
            ),
            ("service-account-key-file", self.pki("sa.pub")),
            ("service-account-signing-key-file", self.pki("sa.key")),
            (
                "service-cluster-ip-range",
                self.cfg.networking.service_subnet.clone(),
            ),
            ("tls-cert-file", self.pki("apiserver.crt")),
            ("tls-private-key-file", self.pki("apiserver.key")),
        ];
        let mut cmd = vec!["kube-apiserver".to_string()];
        cmd.extend(build_args(&d, &self.cfg.api_server.extra_args));
        let mut probes = Map::new();
        probes.insert(
            "livenessProbe".into(),
            probe(&adv, "/livez", self.bind_port, "HTTPS", 8),
        );
        probes.insert(
            "readinessProbe".into(),
            probe(&adv, "/readyz", self.bind_port, "HTTPS", 3),
        );
        probes.insert(
            "startupProbe".into(),
            probe(&adv, "/livez", self.bind_port, "HTTPS", 24),
        );
        let certs = &self.cfg.cert_dir().display().to_string();
        pod(
            "kube-apiserver",
            self.image("kube-apiserver", &self.version.to_string()),
            cmd,
            json!({"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": host_port(&adv, self.bind_port)}),
            vec![
                mount("ca-certs", "/etc/ssl/certs", true),
                mount("etc-ca-certificates", "/etc/ca-certificates", true),
                mount("k8s-certs", certs, true),
                mount(
                    "usr-local-share-ca-certificates",
                    "/usr/local/share/ca-certificates",
                    true,
                ),
                mount(
                    "usr-share-ca-certificates",
                    "/usr/share/ca-certificates",
                    true,
                ),
            ],
            vec![
                host_path("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate"),
                host_path(
                    "etc-ca-certificates",
                    "/etc/ca-certificates",
                    "DirectoryOrCreate",
                ),
                host_path("k8s-certs", certs, "DirectoryOrCreate"),
                host_path(
                    "usr-local-share-ca-certificates",
                    "/usr/local/share/ca-certificates",
                    "DirectoryOrCreate",
                ),
                host_path(
                    "usr-share-ca-certificates",
                    "/usr/share/ca-certificates",
                    "DirectoryOrCreate",
                ),
            ],
            probes,
            "250m",
            &self.cfg.api_server.extra_envs,
        )
    }

    pub fn controller_manager(&self) -> Value {
        let conf = s(paths::CONTROLLER_MANAGER_CONF);
        let mut d = vec![
            ("authentication-kubeconfig", conf.clone()),
            ("authorization-kubeconfig", conf.clone()),
            ("bind-address", "127.0.0.1".into()),
            ("client-ca-file", self.pki("ca.crt")),
            ("cluster-name", self.cfg.cluster_name.clone()),
            ("cluster-signing-cert-file", self.pki("ca.crt")),
            ("cluster-signing-key-file", self.pki("ca.key")),
            ("controllers", "*,bootstrapsigner,tokencleaner".into()),
            ("kubeconfig", conf.clone()),
            ("leader-elect", "true".into()),
            (
                "requestheader-client-ca-file",
                self.pki("front-proxy-ca.crt"),
            ),
            ("root-ca-file", self.pki("ca.crt")),
            ("service-account-private-key-file", self.pki("sa.key")),
            (
                "service-cluster-ip-range",
                self.cfg.networking.service_subnet.clone(),
            ),
            ("use-service-account-credentials", "true".into()),
        ];
        if !self.cfg.networking.pod_subnet.is_empty() {
            d.push(("allocate-node-cidrs", "true".into()));
            d.push(("cluster-cidr", self.cfg.networking.pod_subnet.clone()));
        }
        let mut cmd = vec!["kube-controller-manager".to_string()];
        cmd.extend(build_args(&d, &self.cfg.controller_manager.extra_args));
        let mut probes = Map::new();
        probes.insert(
            "livenessProbe".into(),
            probe("127.0.0.1", "/healthz", 10257, "HTTPS", 8),
        );
        probes.insert(
            "startupProbe".into(),
            probe("127.0.0.1", "/healthz", 10257, "HTTPS", 24),
        );
        let certs = &self.cfg.cert_dir().display().to_string();
        pod(
            "kube-controller-manager",
            self.image("kube-controller-manager", &self.version.to_string()),
            cmd,
            json!({}),
            vec![
                mount("ca-certs", "/etc/ssl/certs", true),
                mount("k8s-certs", certs, true),
                mount("kubeconfig", &conf, true),
            ],
            vec![
                host_path("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate"),
                host_path("k8s-certs", certs, "DirectoryOrCreate"),
                host_path("kubeconfig", &conf, "FileOrCreate"),
            ],
            probes,
            "200m",
            &self.cfg.controller_manager.extra_envs,
        )
    }

    pub fn scheduler(&self) -> Value {
        let conf = s(paths::SCHEDULER_CONF);
        let d = [
            ("authentication-kubeconfig", conf.clone()),
            ("authorization-kubeconfig", conf.clone()),
            ("bind-address", "127.0.0.1".into()),
            ("kubeconfig", conf.clone()),
            ("leader-elect", "true".into()),
        ];
        let mut cmd = vec!["kube-scheduler".to_string()];
        cmd.extend(build_args(&d, &self.cfg.scheduler.extra_args));
        let mut probes = Map::new();
        probes.insert(
            "livenessProbe".into(),
            probe("127.0.0.1", "/livez", 10259, "HTTPS", 8),
        );
        probes.insert(
            "readinessProbe".into(),
            probe("127.0.0.1", "/readyz", 10259, "HTTPS", 3),
        );
        probes.insert(
            "startupProbe".into(),
            probe("127.0.0.1", "/livez", 10259, "HTTPS", 24),
        );
        pod(
            "kube-scheduler",
            self.image("kube-scheduler", &self.version.to_string()),
            cmd,
            json!({}),
            vec![mount("kubeconfig", &conf, true)],
            vec![host_path("kubeconfig", &conf, "FileOrCreate")],
            probes,
            "100m",
            &self.cfg.scheduler.extra_envs,
        )
    }

    /// `initial_cluster` is `name=peerURL,...`; `existing` for members joining a cluster.
    pub fn etcd(&self, initial_cluster: &str, existing: bool) -> Result<Value> {
        let local = self.cfg.etcd.local.as_ref().ok_or_else(|| {
            anyhow!("etcd.local is not set: an external etcd needs no etcd manifest")
        })?;
        let adv = self.advertise.to_string();
        let client = format!("https://{}", host_port(&adv, 2379));
        let peer = format!("https://{}", host_port(&adv, 2380));
        let tag = crate::images::etcd_image_tag(self.cfg, self.version);
        let mut d = vec![
            ("advertise-client-urls", client.clone()),
            ("cert-file", self.pki("etcd/server.crt")),
            ("client-cert-auth", "true".into()),
            ("data-dir", s(&local.data_dir)),
            ("initial-advertise-peer-urls", peer.clone()),
            ("initial-cluster", initial_cluster.to_string()),
            ("key-file", self.pki("etcd/server.key")),
            (
                "listen-client-urls",
                format!("https://127.0.0.1:2379,{client}"),
            ),
            ("listen-metrics-urls", "http://127.0.0.1:2381".into()),
            ("listen-peer-urls", peer),
            ("name", self.node_name.to_string()),
            ("peer-cert-file", self.pki("etcd/peer.crt")),
            ("peer-client-cert-auth", "true".into()),
            ("peer-key-file", self.pki("etcd/peer.key")),
            ("peer-trusted-ca-file", self.pki("etcd/ca.crt")),
            ("snapshot-count", "10000".into()),
            ("trusted-ca-file", self.pki("etcd/ca.crt")),
        ];
        // kubeadm's getEtcdCommand: etcd 3.6 renamed the experimental flags.
        if crate::images::etcd_tag_at_least_3_6(&tag) {
            d.push(("feature-gates", "InitialCorruptCheck=true".into()));
            d.push(("watch-progress-notify-interval", "5s".into()));
        } else {
            d.push(("experimental-initial-corrupt-check", "true".into()));
            d.push(("experimental-watch-progress-notify-interval", "5s".into()));
        }
        if existing {
            d.push(("initial-cluster-state", "existing".into()));
        }
        let mut cmd = vec!["etcd".to_string()];
        cmd.extend(build_args(&d, &local.extra_args));
        let mut probes = Map::new();
        probes.insert(
            "livenessProbe".into(),
            probe("127.0.0.1", "/livez", 2381, "HTTP", 8),
        );
        probes.insert(
            "readinessProbe".into(),
            probe("127.0.0.1", "/readyz", 2381, "HTTP", 3),
        );
        probes.insert(
            "startupProbe".into(),
            probe("127.0.0.1", "/readyz", 2381, "HTTP", 24),
        );
        let certs = format!("{}/etcd", self.cfg.cert_dir().display());
        let data_dir = s(&local.data_dir);
        Ok(pod(
            "etcd",
            crate::images::etcd_image(self.cfg, self.version),
            cmd,
            json!({"kubeadm.kubernetes.io/etcd.advertise-client-urls": client}),
            vec![
                mount("etcd-data", &data_dir, false),
                mount("etcd-certs", &certs, false),
            ],
            vec![
                host_path("etcd-certs", &certs, "DirectoryOrCreate"),
                host_path("etcd-data", &data_dir, "DirectoryOrCreate"),
            ],
            probes,
            "100m",
            &local.extra_envs,
        ))
    }
}

/// The cluster-wide KubeletConfiguration kubeadm stores in the kubelet-config ConfigMap.
pub fn kubelet_config(
    cfg: &ClusterConfiguration,
    user: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let defaults = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"cacheTTL": "0s", "enabled": true},
            "x509": {"clientCAFile": format!("{}/ca.crt", cfg.certificates_dir)},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
        "cgroupDriver": "systemd",
        "clusterDNS": [cfg.dns_ip()?.to_string()],
        "clusterDomain": cfg.networking.dns_domain,
        "containerRuntimeEndpoint": "",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "resolvConf": "/run/systemd/resolve/resolv.conf",
        "rotateCertificates": true,
        "staticPodPath": paths::MANIFESTS_DIR,
    });
    let Value::Object(mut out) = defaults else {
        unreachable!("literal object")
    };
    for (k, v) in user {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// KUBELET_KUBEADM_ARGS for /var/lib/kubelet/kubeadm-flags.env.
pub fn kubeadm_flags(cri_endpoint: &str, node_name: &str, extra: &[Arg]) -> String {
    let mut d = vec![("container-runtime-endpoint", cri_endpoint.to_string())];
    if node_name != crate::util::hostname() {
        d.push(("hostname-override", node_name.to_string()));
    }
    let args = build_args(&d, extra);
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args.join(" "))
}

pub fn to_yaml(v: &Value) -> Result<String> {
    crate::util::to_yaml(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_override_defaults_and_stay_sorted() {
        let d = [("b", "1".to_string()), ("a", "2".to_string())];
        let extra = [
            Arg {
                name: "b".into(),
                value: "9".into(),
            },
            Arg {
                name: "c".into(),
                value: "3".into(),
            },
        ];
        assert_eq!(build_args(&d, &extra), vec!["--a=2", "--b=9", "--c=3"]);
    }

    #[test]
    fn apiserver_manifest_carries_the_real_flags() {
        let mut cfg = ClusterConfiguration::default();
        cfg.default_fields(KubeVersion {
            major: 1,
            minor: 36,
            patch: 2,
        });
        let l = Local {
            cfg: &cfg,
            version: KubeVersion {
                major: 1,
                minor: 36,
                patch: 2,
            },
            node_name: "m1",
            advertise: "10.0.0.11".parse().unwrap(),
            bind_port: 6443,
        };
        let pod = l.api_server();
        let cmd: Vec<&str> = pod["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(cmd[0], "kube-apiserver");
        for f in [
            "--etcd-servers=https://127.0.0.1:2379",
            "--secure-port=6443",
            "--advertise-address=10.0.0.11",
            "--enable-bootstrap-token-auth=true",
        ] {
            assert!(cmd.contains(&f), "{f} missing from {cmd:?}");
        }
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            "registry.k8s.io/kube-apiserver:v1.36.2"
        );
        let etcd = l.etcd("m1=https://10.0.0.11:2380", false).unwrap();
        assert_eq!(
            etcd["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
            "https://10.0.0.11:2379"
        );
    }
}
