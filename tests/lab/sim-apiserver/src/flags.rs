//! pflag-style command-line parsing shared by the three binaries.
//!
//! The real components are cobra programs: `--name=value`, `--name value`, bare boolean
//! flags, and a hard failure on any flag they do not know (`Error: unknown flag: --foo`,
//! exit 1). Kubeadm writes these flags into static-pod manifests, so a typo there must
//! fail here exactly as it would on a real cluster.

use std::collections::BTreeMap;

/// One known flag: its name and whether it is boolean (may appear without a value).
#[derive(Clone, Copy)]
pub struct FlagSpec {
    pub name: &'static str,
    pub boolean: bool,
}

/// Parsed flags: every occurrence of each flag, in order.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    /// Last value given for `name` (pflag semantics for scalar flags).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Comma-separated list flags (`--etcd-servers=a,b`), across repeated occurrences.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn bool(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            Some(v) => v == "true" || v == "1",
            None => default,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

/// Parse `args` (without argv[0]) against `specs`. Errors carry the real cobra wording.
pub fn parse(specs: &[FlagSpec], args: &[String]) -> Result<Flags, String> {
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let body = if let Some(b) = arg.strip_prefix("--") {
            b
        } else if let Some(b) = arg.strip_prefix('-') {
            // Only `-v` and `-h` shorthands exist on these programs.
            match b.split('=').next() {
                Some("v") => {
                    let (_, value) = split_value(b);
                    let value = match value {
                        Some(v) => v.to_owned(),
                        None => take_value(args, &mut i, "v")?,
                    };
                    flags.values.entry("v".into()).or_default().push(value);
                    continue;
                }
                Some("h") => {
                    flags
                        .values
                        .entry("help".into())
                        .or_default()
                        .push("true".into());
                    continue;
                }
                _ => {
                    return Err(format!(
                        "unknown shorthand flag: '{}' in {arg}",
                        first_char(b)
                    ));
                }
            }
        } else {
            return Err(format!("unknown command \"{arg}\" for this program"));
        };
        let (name, inline) = split_value(body);
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            return Err(format!("unknown flag: --{name}"));
        };
        let value = match (inline, spec.boolean) {
            (Some(v), true) => {
                if !matches!(
                    v,
                    "true" | "false" | "1" | "0" | "t" | "f" | "TRUE" | "FALSE"
                ) {
                    return Err(format!(
                        "invalid argument \"{v}\" for \"--{name}\" flag: strconv.ParseBool: parsing \"{v}\": invalid syntax"
                    ));
                }
                normalise_bool(v)
            }
            (Some(v), false) => v.to_owned(),
            (None, true) => "true".to_owned(),
            (None, false) => take_value(args, &mut i, name)?,
        };
        flags.values.entry(name.to_owned()).or_default().push(value);
    }
    Ok(flags)
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or('-')
}

fn normalise_bool(v: &str) -> String {
    if matches!(v, "true" | "1" | "t" | "TRUE") {
        "true".into()
    } else {
        "false".into()
    }
}

fn split_value(body: &str) -> (&str, Option<&str>) {
    match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    }
}

fn take_value(args: &[String], i: &mut usize, name: &str) -> Result<String, String> {
    match args.get(*i) {
        Some(v) => {
            *i += 1;
            Ok(v.clone())
        }
        None => Err(format!("flag needs an argument: --{name}")),
    }
}

/// Run the parser as the binaries do: on error print cobra's message and exit 1.
pub fn parse_or_exit(program: &str, specs: &[FlagSpec]) -> Flags {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(specs, &args) {
        Ok(f) => {
            if f.has("help") {
                println!("Usage:\n  {program} [flags]\n\nFlags:");
                for s in specs {
                    println!("      --{}", s.name);
                }
                std::process::exit(0);
            }
            f
        }
        Err(e) => {
            eprintln!("Error: {e}");
            eprintln!("Run '{program} --help' for usage.");
            std::process::exit(1);
        }
    }
}

const fn v(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        boolean: false,
    }
}
const fn b(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        boolean: true,
    }
}

/// Flags shared by every component (logging, profiling, feature gates, serving).
const COMMON: &[FlagSpec] = &[
    b("help"),
    b("version"),
    v("v"),
    v("vmodule"),
    v("feature-gates"),
    v("log-flush-frequency"),
    v("log-json-info-buffer-size"),
    b("log-json-split-stream"),
    v("log-text-info-buffer-size"),
    b("log-text-split-stream"),
    v("logging-format"),
    b("profiling"),
    b("contention-profiling"),
    v("bind-address"),
    v("secure-port"),
    v("cert-dir"),
    v("tls-cert-file"),
    v("tls-private-key-file"),
    v("tls-cipher-suites"),
    v("tls-min-version"),
    v("tls-sni-cert-key"),
    v("http2-max-streams-per-connection"),
    b("permit-address-sharing"),
    b("permit-port-sharing"),
    v("client-ca-file"),
    v("requestheader-allowed-names"),
    v("requestheader-client-ca-file"),
    v("requestheader-extra-headers-prefix"),
    v("requestheader-group-headers"),
    v("requestheader-username-headers"),
    v("requestheader-uid-headers"),
    v("allow-metric-labels"),
    v("allow-metric-labels-manifest"),
    v("disabled-metrics"),
    v("show-hidden-metrics-for-version"),
    v("emulated-version"),
];

/// kube-apiserver's flags (1.33-1.37), including every flag kubeadm writes into its manifest.
pub const APISERVER: &[FlagSpec] = &[
    v("advertise-address"),
    v("cors-allowed-origins"),
    v("debug-socket-path"),
    v("default-not-ready-toleration-seconds"),
    v("default-unreachable-toleration-seconds"),
    b("enable-priority-and-fairness"),
    v("external-hostname"),
    v("goaway-chance"),
    v("livez-grace-period"),
    v("max-mutating-requests-inflight"),
    v("max-requests-inflight"),
    v("min-request-timeout"),
    v("request-timeout"),
    v("shutdown-delay-duration"),
    b("shutdown-send-retry-after"),
    v("shutdown-watch-termination-grace-period"),
    v("storage-initialization-timeout"),
    v("strict-transport-security-directives"),
    v("delete-collection-workers"),
    b("enable-garbage-collector"),
    v("encryption-provider-config"),
    b("encryption-provider-config-automatic-reload"),
    v("etcd-cafile"),
    v("etcd-certfile"),
    v("etcd-compaction-interval"),
    v("etcd-count-metric-poll-period"),
    v("etcd-db-metric-poll-interval"),
    v("etcd-healthcheck-timeout"),
    v("etcd-keyfile"),
    v("etcd-prefix"),
    v("etcd-readycheck-timeout"),
    v("etcd-servers"),
    v("etcd-servers-overrides"),
    v("lease-reuse-duration-seconds"),
    v("storage-backend"),
    v("storage-media-type"),
    b("watch-cache"),
    v("watch-cache-sizes"),
    v("audit-log-batch-buffer-size"),
    v("audit-log-batch-max-size"),
    v("audit-log-batch-max-wait"),
    v("audit-log-batch-throttle-burst"),
    b("audit-log-batch-throttle-enable"),
    v("audit-log-batch-throttle-qps"),
    b("audit-log-compress"),
    v("audit-log-format"),
    v("audit-log-maxage"),
    v("audit-log-maxbackup"),
    v("audit-log-maxsize"),
    v("audit-log-mode"),
    v("audit-log-path"),
    b("audit-log-truncate-enabled"),
    v("audit-log-truncate-max-batch-size"),
    v("audit-log-truncate-max-event-size"),
    v("audit-log-version"),
    v("audit-policy-file"),
    v("audit-webhook-batch-buffer-size"),
    v("audit-webhook-batch-initial-backoff"),
    v("audit-webhook-batch-max-size"),
    v("audit-webhook-batch-max-wait"),
    v("audit-webhook-batch-throttle-burst"),
    b("audit-webhook-batch-throttle-enable"),
    v("audit-webhook-batch-throttle-qps"),
    v("audit-webhook-config-file"),
    v("audit-webhook-initial-backoff"),
    v("audit-webhook-mode"),
    b("audit-webhook-truncate-enabled"),
    v("audit-webhook-truncate-max-batch-size"),
    v("audit-webhook-truncate-max-event-size"),
    v("audit-webhook-version"),
    b("anonymous-auth"),
    v("api-audiences"),
    v("authentication-config"),
    v("authentication-token-webhook-cache-ttl"),
    v("authentication-token-webhook-config-file"),
    v("authentication-token-webhook-version"),
    b("enable-bootstrap-token-auth"),
    v("oidc-ca-file"),
    v("oidc-client-id"),
    v("oidc-groups-claim"),
    v("oidc-groups-prefix"),
    v("oidc-issuer-url"),
    v("oidc-required-claim"),
    v("oidc-signing-algs"),
    v("oidc-username-claim"),
    v("oidc-username-prefix"),
    b("service-account-extend-token-expiration"),
    v("service-account-issuer"),
    v("service-account-jwks-uri"),
    v("service-account-key-file"),
    b("service-account-lookup"),
    v("service-account-max-token-expiration"),
    v("service-account-signing-endpoint"),
    v("token-auth-file"),
    v("authorization-config"),
    v("authorization-mode"),
    v("authorization-policy-file"),
    v("authorization-webhook-cache-authorized-ttl"),
    v("authorization-webhook-cache-unauthorized-ttl"),
    v("authorization-webhook-config-file"),
    v("authorization-webhook-version"),
    v("runtime-config"),
    v("admission-control-config-file"),
    v("disable-admission-plugins"),
    v("enable-admission-plugins"),
    v("egress-selector-config-file"),
    v("tracing-config-file"),
    b("aggregator-reject-forwarding-redirect"),
    b("allow-privileged"),
    b("enable-aggregator-routing"),
    b("enable-logs-handler"),
    v("endpoint-reconciler-type"),
    v("event-ttl"),
    v("kubelet-certificate-authority"),
    v("kubelet-client-certificate"),
    v("kubelet-client-key"),
    v("kubelet-preferred-address-types"),
    v("kubelet-timeout"),
    v("kubernetes-service-node-port"),
    v("max-connection-bytes-per-sec"),
    v("peer-advertise-ip"),
    v("peer-advertise-port"),
    v("peer-ca-file"),
    v("proxy-client-cert-file"),
    v("proxy-client-key-file"),
    v("service-account-signing-key-file"),
    v("service-cluster-ip-range"),
    v("service-node-port-range"),
];

/// kube-controller-manager's flags, including kubeadm's.
pub const CONTROLLER_MANAGER: &[FlagSpec] = &[
    b("allocate-node-cidrs"),
    v("authentication-kubeconfig"),
    b("authentication-skip-lookup"),
    v("authentication-token-webhook-cache-ttl"),
    b("authentication-tolerate-lookup-failure"),
    v("authorization-always-allow-paths"),
    v("authorization-kubeconfig"),
    v("authorization-webhook-cache-authorized-ttl"),
    v("authorization-webhook-cache-unauthorized-ttl"),
    v("cidr-allocator-type"),
    v("cloud-config"),
    v("cloud-provider"),
    v("cluster-cidr"),
    v("cluster-name"),
    v("cluster-signing-cert-file"),
    v("cluster-signing-duration"),
    v("cluster-signing-key-file"),
    v("cluster-signing-kube-apiserver-client-cert-file"),
    v("cluster-signing-kube-apiserver-client-key-file"),
    v("cluster-signing-kubelet-client-cert-file"),
    v("cluster-signing-kubelet-client-key-file"),
    v("cluster-signing-kubelet-serving-cert-file"),
    v("cluster-signing-kubelet-serving-key-file"),
    v("cluster-signing-legacy-unknown-cert-file"),
    v("cluster-signing-legacy-unknown-key-file"),
    v("concurrent-deployment-syncs"),
    v("concurrent-endpoint-syncs"),
    v("concurrent-gc-syncs"),
    v("concurrent-namespace-syncs"),
    v("concurrent-replicaset-syncs"),
    v("concurrent-service-syncs"),
    v("concurrent-statefulset-syncs"),
    v("controller-start-interval"),
    v("controllers"),
    b("enable-garbage-collector"),
    b("enable-hostpath-provisioner"),
    v("horizontal-pod-autoscaler-sync-period"),
    v("kube-api-burst"),
    v("kube-api-content-type"),
    v("kube-api-qps"),
    v("kubeconfig"),
    b("leader-elect"),
    v("leader-elect-lease-duration"),
    v("leader-elect-renew-deadline"),
    v("leader-elect-resource-lock"),
    v("leader-elect-resource-name"),
    v("leader-elect-resource-namespace"),
    v("leader-elect-retry-period"),
    v("master"),
    v("min-resync-period"),
    v("node-cidr-mask-size"),
    v("node-cidr-mask-size-ipv4"),
    v("node-cidr-mask-size-ipv6"),
    v("node-eviction-rate"),
    v("node-monitor-grace-period"),
    v("node-monitor-period"),
    v("node-startup-grace-period"),
    v("pod-eviction-timeout"),
    v("root-ca-file"),
    v("service-account-private-key-file"),
    v("service-cluster-ip-range"),
    v("terminated-pod-gc-threshold"),
    b("use-service-account-credentials"),
];

/// kube-scheduler's flags, including kubeadm's.
pub const SCHEDULER: &[FlagSpec] = &[
    v("authentication-kubeconfig"),
    b("authentication-skip-lookup"),
    b("authentication-tolerate-lookup-failure"),
    v("authorization-always-allow-paths"),
    v("authorization-kubeconfig"),
    v("config"),
    v("kube-api-burst"),
    v("kube-api-content-type"),
    v("kube-api-qps"),
    v("kubeconfig"),
    b("leader-elect"),
    v("leader-elect-lease-duration"),
    v("leader-elect-renew-deadline"),
    v("leader-elect-resource-lock"),
    v("leader-elect-resource-name"),
    v("leader-elect-resource-namespace"),
    v("leader-elect-retry-period"),
    v("master"),
    v("pod-max-in-unschedulable-pods-duration"),
    v("write-config-to"),
];

/// The full flag table of a component: its own flags plus the common ones.
pub fn specs_for(own: &[FlagSpec]) -> Vec<FlagSpec> {
    own.iter().chain(COMMON.iter()).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_flag_is_rejected_with_cobra_wording() {
        let err = parse(
            &specs_for(APISERVER),
            &args(&["--secure-port=6443", "--foo=bar"]),
        )
        .unwrap_err();
        assert_eq!(err, "unknown flag: --foo");
    }

    #[test]
    fn kubeadm_style_flags_parse() {
        let f = parse(
            &specs_for(APISERVER),
            &args(&[
                "--advertise-address=10.0.0.1",
                "--allow-privileged=true",
                "--etcd-servers=https://127.0.0.1:2379,https://10.0.0.2:2379",
                "--secure-port",
                "6443",
                "--enable-bootstrap-token-auth",
                "-v=2",
            ]),
        )
        .unwrap();
        assert_eq!(f.get("secure-port"), Some("6443"));
        assert_eq!(f.list("etcd-servers").len(), 2);
        assert!(f.bool("enable-bootstrap-token-auth", false));
        assert_eq!(f.get("v"), Some("2"));
    }

    #[test]
    fn value_flag_without_value_is_rejected() {
        let err = parse(&specs_for(APISERVER), &args(&["--etcd-servers"])).unwrap_err();
        assert_eq!(err, "flag needs an argument: --etcd-servers");
    }

    #[test]
    fn boolean_flag_with_garbage_is_rejected() {
        let err = parse(&specs_for(APISERVER), &args(&["--allow-privileged=yes"])).unwrap_err();
        assert!(err.contains("invalid argument \"yes\""), "{err}");
    }

    #[test]
    fn apiserver_flag_is_unknown_to_the_scheduler() {
        let err = parse(&specs_for(SCHEDULER), &args(&["--etcd-servers=x"])).unwrap_err();
        assert_eq!(err, "unknown flag: --etcd-servers");
    }

    #[test]
    fn positional_arguments_are_rejected() {
        assert!(parse(&specs_for(SCHEDULER), &args(&["stray"])).is_err());
    }
}
