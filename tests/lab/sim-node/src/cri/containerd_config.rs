//! `/etc/containerd/config.toml` as containerd 2.x reads it.
//!
//! What the real daemon does, and so does this one:
//! - A TOML syntax error, a top-level field of the wrong type, `version` above 3, or a
//!   `disabled_plugins`/`required_plugins` entry that is not a full plugin URI (`"cri"` instead
//!   of `"io.containerd.grpc.v1.cri"`) makes containerd refuse to start.
//! - Unknown keys are not errors: containerd logs "Ignoring unknown key in TOML" (top level) or
//!   "Ignoring unknown key in TOML for plugin" and carries on without them. A `version = 3` file
//!   that still uses the 1.x layout (`plugins."io.containerd.grpc.v1.cri".containerd...`,
//!   `sandbox_image`) therefore starts, with none of those settings in effect.
//! - Versions 1 and 2 (a missing `version` means 1) are migrated in memory: short plugin names
//!   become URIs, and the 1.x CRI section is split into `io.containerd.cri.v1.runtime`,
//!   `io.containerd.cri.v1.images` and `io.containerd.grpc.v1.cri`.
//! - A plugin section with a value of the wrong type makes that plugin fail to load; the CRI
//!   service is then missing (kubelet: "unknown service runtime.v1.RuntimeService") while the
//!   daemon runs on. So does disabling one of the CRI plugins.

use anyhow::{Result, bail};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

pub const CONFIG_VERSION: i64 = 3;
pub const DEFAULT_SANDBOX: &str = "registry.k8s.io/pause:3.10.1";
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

pub const CRI_GRPC: &str = "io.containerd.grpc.v1.cri";
pub const CRI_RUNTIME: &str = "io.containerd.cri.v1.runtime";
pub const CRI_IMAGES: &str = "io.containerd.cri.v1.images";

/// Plugins of a stock containerd 2.x on Linux (type, id); `required_plugins` must name them.
pub const PLUGINS: &[(&str, &str)] = &[
    ("io.containerd.content.v1", "content"),
    ("io.containerd.snapshotter.v1", "native"),
    ("io.containerd.snapshotter.v1", "overlayfs"),
    ("io.containerd.snapshotter.v1", "btrfs"),
    ("io.containerd.snapshotter.v1", "zfs"),
    ("io.containerd.snapshotter.v1", "devmapper"),
    ("io.containerd.snapshotter.v1", "blockfile"),
    ("io.containerd.snapshotter.v1", "erofs"),
    ("io.containerd.metadata.v1", "bolt"),
    ("io.containerd.gc.v1", "scheduler"),
    ("io.containerd.event.v1", "exchange"),
    ("io.containerd.monitor.task.v1", "cgroups"),
    ("io.containerd.runtime.v2", "task"),
    ("io.containerd.runtime.v2", "shim"),
    ("io.containerd.lease.v1", "manager"),
    ("io.containerd.service.v1", "containers-service"),
    ("io.containerd.service.v1", "content-service"),
    ("io.containerd.service.v1", "images-service"),
    ("io.containerd.service.v1", "snapshots-service"),
    ("io.containerd.service.v1", "tasks-service"),
    ("io.containerd.transfer.v1", "local"),
    ("io.containerd.internal.v1", "opt"),
    ("io.containerd.internal.v1", "restart"),
    ("io.containerd.nri.v1", "nri"),
    ("io.containerd.sandbox.store.v1", "local"),
    ("io.containerd.sandbox.controller.v1", "local"),
    ("io.containerd.podsandbox.controller.v1", "podsandbox"),
    ("io.containerd.cri.v1", "images"),
    ("io.containerd.cri.v1", "runtime"),
    ("io.containerd.grpc.v1", "containers"),
    ("io.containerd.grpc.v1", "content"),
    ("io.containerd.grpc.v1", "events"),
    ("io.containerd.grpc.v1", "images"),
    ("io.containerd.grpc.v1", "introspection"),
    ("io.containerd.grpc.v1", "leases"),
    ("io.containerd.grpc.v1", "namespaces"),
    ("io.containerd.grpc.v1", "snapshots"),
    ("io.containerd.grpc.v1", "tasks"),
    ("io.containerd.grpc.v1", "version"),
    ("io.containerd.grpc.v1", "healthcheck"),
    ("io.containerd.grpc.v1", "cri"),
];

/// Why the daemon refuses to start.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One log line the daemon writes while loading its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: &'static str,
    pub msg: String,
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    fn new(level: &'static str, msg: impl Into<String>, fields: &[(&str, String)]) -> Self {
        LogLine {
            level,
            msg: msg.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    /// logrus text format, as containerd logs to the journal.
    pub fn render(&self) -> String {
        let mut s = format!("level={} msg={:?}", self.level, self.msg);
        for (k, v) in &self.fields {
            s.push_str(&format!(" {k}={v:?}"));
        }
        s
    }
}

/// The configuration in effect after loading, merging imports and migrating.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The `version` the file declared (0 when it declared none).
    pub declared_version: i64,
    pub root: String,
    pub state: String,
    pub address: String,
    pub disabled: Vec<String>,
    pub required: Vec<String>,
    /// Plugin sections after migration (version 3 layout).
    pub plugins: Table,
    pub log: Vec<LogLine>,
    /// Plugins that failed to load, with the error.
    pub failed: BTreeMap<String, String>,
    pub cri: Cri,
    /// Files read (the main file first, then imports).
    pub files: Vec<PathBuf>,
}

/// What the CRI plugins ended up with.
#[derive(Debug, Clone)]
pub struct Cri {
    /// Why the CRI service is not served (plugin disabled or failed), if it is not.
    pub unavailable: Option<String>,
    pub sandbox_image: String,
    pub default_runtime: String,
    pub runtime_type: String,
    /// `SystemdCgroup` of the default runtime's options; Err when it has the wrong type.
    pub systemd_cgroup: std::result::Result<bool, String>,
    pub snapshotter: String,
    pub cni_bin_dirs: Vec<String>,
    pub cni_conf_dir: String,
    pub registry_config_path: String,
}

// --- schema -----------------------------------------------------------------------------------

/// The shape of a configuration value, as the Go structs containerd decodes into.
#[derive(Debug)]
enum S {
    Str,
    Int,
    Bool,
    StrList,
    /// Anything (Go `interface{}` / `map[string]interface{}`).
    Any,
    /// A struct: known fields; others are unknown keys.
    Struct(&'static str, &'static [(&'static str, S)]),
    /// A map from any key to the value shape.
    Map(&'static S),
}

const RUNTIME_HANDLER: S = S::Struct(
    "config.Runtime",
    &[
        ("runtime_type", S::Str),
        ("runtime_path", S::Str),
        ("pod_annotations", S::StrList),
        ("container_annotations", S::StrList),
        ("privileged_without_host_devices", S::Bool),
        (
            "privileged_without_host_devices_all_devices_allowed",
            S::Bool,
        ),
        ("base_runtime_spec", S::Str),
        ("cni_conf_dir", S::Str),
        ("cni_max_conf_num", S::Int),
        ("snapshotter", S::Str),
        ("sandboxer", S::Str),
        ("io_type", S::Str),
        ("treat_ro_mounts_as_rro", S::Bool),
        // Decoded per runtime type when a sandbox is created, not at load time.
        ("options", S::Any),
    ],
);
const RUNTIME_HANDLERS: S = S::Map(&RUNTIME_HANDLER);

const RUNTIME_PLUGIN: S = S::Struct(
    "config.RuntimeConfig",
    &[
        (
            "containerd",
            S::Struct(
                "config.ContainerdConfig",
                &[
                    ("default_runtime_name", S::Str),
                    ("runtimes", RUNTIME_HANDLERS),
                    ("ignore_blockio_not_enabled_errors", S::Bool),
                    ("ignore_rdt_not_enabled_errors", S::Bool),
                ],
            ),
        ),
        (
            "cni",
            S::Struct(
                "config.CniConfig",
                &[
                    ("bin_dir", S::Str),
                    ("bin_dirs", S::StrList),
                    ("conf_dir", S::Str),
                    ("max_conf_num", S::Int),
                    ("setup_serially", S::Bool),
                    ("conf_template", S::Str),
                    ("ip_pref", S::Str),
                    ("use_internal_loopback", S::Bool),
                ],
            ),
        ),
        ("enable_selinux", S::Bool),
        ("selinux_category_range", S::Int),
        ("max_container_log_line_size", S::Int),
        ("disable_cgroup", S::Bool),
        ("disable_apparmor", S::Bool),
        ("restrict_oom_score_adj", S::Bool),
        ("disable_proc_mount", S::Bool),
        ("unset_seccomp_profile", S::Str),
        ("tolerate_missing_hugetlb_controller", S::Bool),
        ("disable_hugetlb_controller", S::Bool),
        ("device_ownership_from_security_context", S::Bool),
        ("ignore_image_defined_volumes", S::Bool),
        ("netns_mounts_under_state_dir", S::Bool),
        ("enable_unprivileged_ports", S::Bool),
        ("enable_unprivileged_icmp", S::Bool),
        ("enable_cdi", S::Bool),
        ("cdi_spec_dirs", S::StrList),
        ("drain_exec_sync_io_timeout", S::Str),
        ("ignore_deprecation_warnings", S::StrList),
        ("stats_collect_period", S::Str),
        ("stats_retention_period", S::Str),
    ],
);

const IMAGES_PLUGIN: S = S::Struct(
    "images.ImageConfig",
    &[
        ("snapshotter", S::Str),
        ("disable_snapshot_annotations", S::Bool),
        ("discard_unpacked_layers", S::Bool),
        ("max_concurrent_downloads", S::Int),
        ("concurrent_layer_fetch_buffer", S::Int),
        ("image_pull_progress_timeout", S::Str),
        ("image_pull_with_sync_fs", S::Bool),
        ("stats_collect_period", S::Int),
        ("use_local_image_pull", S::Bool),
        ("pinned_images", S::Map(&S::Str)),
        (
            "registry",
            S::Struct(
                "images.Registry",
                &[
                    ("config_path", S::Str),
                    ("mirrors", S::Any),
                    ("configs", S::Any),
                    ("auths", S::Any),
                    ("headers", S::Any),
                ],
            ),
        ),
        (
            "image_decryption",
            S::Struct("images.ImageDecryption", &[("key_model", S::Str)]),
        ),
        ("runtime_platforms", S::Any),
    ],
);

const GRPC_PLUGIN: S = S::Struct(
    "config.ServerConfig",
    &[
        ("disable_tcp_service", S::Bool),
        ("stream_server_address", S::Str),
        ("stream_server_port", S::Str),
        ("stream_idle_timeout", S::Str),
        ("enable_tls_streaming", S::Bool),
        (
            "x509_key_pair_streaming",
            S::Struct(
                "config.X509KeyPairStreaming",
                &[("tls_cert_file", S::Str), ("tls_key_file", S::Str)],
            ),
        ),
    ],
);

const GRPC_ADDR: S = S::Struct(
    "config.GRPCConfig",
    &[
        ("address", S::Str),
        ("tcp_address", S::Str),
        ("tcp_tls_ca", S::Str),
        ("tcp_tls_cert", S::Str),
        ("tcp_tls_key", S::Str),
        ("uid", S::Int),
        ("gid", S::Int),
        ("max_recv_message_size", S::Int),
        ("max_send_message_size", S::Int),
    ],
);

const TOP: S = S::Struct(
    "config.Config",
    &[
        ("version", S::Int),
        ("root", S::Str),
        ("state", S::Str),
        ("temp", S::Str),
        ("plugin_dir", S::Str),
        ("grpc", GRPC_ADDR),
        (
            "ttrpc",
            S::Struct(
                "config.TTRPCConfig",
                &[("address", S::Str), ("uid", S::Int), ("gid", S::Int)],
            ),
        ),
        (
            "debug",
            S::Struct(
                "config.Debug",
                &[
                    ("address", S::Str),
                    ("uid", S::Int),
                    ("gid", S::Int),
                    ("level", S::Str),
                    ("format", S::Str),
                ],
            ),
        ),
        (
            "metrics",
            S::Struct(
                "config.MetricsConfig",
                &[("address", S::Str), ("grpc_histogram", S::Bool)],
            ),
        ),
        ("disabled_plugins", S::StrList),
        ("required_plugins", S::StrList),
        ("plugins", S::Map(&S::Any)),
        ("oom_score", S::Int),
        (
            "cgroup",
            S::Struct("config.CgroupConfig", &[("path", S::Str)]),
        ),
        ("proxy_plugins", S::Any),
        ("timeouts", S::Map(&S::Str)),
        ("imports", S::StrList),
        ("stream_processors", S::Any),
    ],
);

fn toml_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "bool",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::Table(_) => "table",
    }
}

fn go_type(s: &S) -> &'static str {
    match s {
        S::Str => "string",
        S::Int => "int",
        S::Bool => "bool",
        S::StrList => "[]string",
        S::Any => "interface {}",
        S::Struct(name, _) => name,
        S::Map(_) => "map[string]interface {}",
    }
}

/// Walks V against the shape: unknown keys are collected (dotted path as containerd prints
/// them, space separated); the first wrong type is an error in go-toml's words.
fn check(
    v: &Value,
    s: &S,
    path: &mut Vec<String>,
    owner: &str,
    unknown: &mut Vec<String>,
) -> std::result::Result<(), String> {
    let mismatch = |field: &str| {
        format!(
            "toml: cannot decode TOML {} into struct field {owner}.{field} of type {}",
            toml_kind(v),
            go_type(s)
        )
    };
    let field = path.last().cloned().unwrap_or_default();
    match (s, v) {
        (S::Any, _) => Ok(()),
        (S::Str, Value::String(_)) => Ok(()),
        (S::Int, Value::Integer(_)) => Ok(()),
        (S::Bool, Value::Boolean(_)) => Ok(()),
        (S::StrList, Value::Array(items)) => {
            if items.iter().all(|i| matches!(i, Value::String(_))) {
                Ok(())
            } else {
                Err(format!(
                    "toml: cannot decode TOML array into struct field {owner}.{field} of type []string"
                ))
            }
        }
        (S::Struct(name, fields), Value::Table(t)) => {
            for (k, child) in t {
                path.push(k.clone());
                match fields.iter().find(|(f, _)| f == k) {
                    Some((_, fs)) => check(child, fs, path, name, unknown)?,
                    None => leaves(child, path, unknown),
                }
                path.pop();
            }
            Ok(())
        }
        (S::Map(inner), Value::Table(t)) => {
            for (k, child) in t {
                path.push(k.clone());
                check(child, inner, path, owner, unknown)?;
                path.pop();
            }
            Ok(())
        }
        _ => Err(mismatch(&field)),
    }
}

/// Every leaf key below an unknown key, so the log names the setting that is lost
/// (`containerd runtimes runc options SystemdCgroup`), not only the first unknown table.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
    match v {
        Value::Table(t) if !t.is_empty() => {
            for (k, child) in t {
                path.push(k.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.join(" ")),
    }
}

// --- loading ----------------------------------------------------------------------------------

fn row_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let row = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (row, col)
}

fn parse_file(path: &Path, log: &mut Vec<LogLine>) -> std::result::Result<Table, Fatal> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fatal(format!("failed to load TOML from {}: {e}", path.display())))?;
    let table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let (row, col) = e.span().map(|s| row_col(&text, s.start)).unwrap_or((1, 1));
            let msg = e.message().trim().to_string();
            log.push(LogLine::new(
                "error",
                "Failure unmarshaling TOML",
                &[
                    ("error", format!("toml: {msg}")),
                    ("file", path.display().to_string()),
                    ("row", row.to_string()),
                    ("column", col.to_string()),
                ],
            ));
            return Err(Fatal(format!(
                "failed to unmarshal TOML at row {row} column {col}: toml: {msg}"
            )));
        }
    };
    let mut unknown = Vec::new();
    check(
        &Value::Table(table.clone()),
        &TOP,
        &mut Vec::new(),
        "config",
        &mut unknown,
    )
    .map_err(|e| Fatal(format!("failed to unmarshal TOML: {e}")))?;
    for key in unknown {
        log.push(LogLine::new(
            "warning",
            "Ignoring unknown key in TOML",
            &[
                (
                    "error",
                    "strict mode: fields in the document are missing in the target struct".into(),
                ),
                ("file", path.display().to_string()),
                ("key", key),
            ],
        ));
    }
    Ok(table)
}

fn str_list(t: &Table, key: &str) -> Vec<String> {
    t.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves `imports` like containerd: relative to the importing file, `*` globs in the last
/// path component.
fn resolve_imports(parent: &Path, imports: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for imp in imports {
        let mut p = PathBuf::from(imp);
        if !p.is_absolute() {
            p = parent.parent().unwrap_or(Path::new("/")).join(p);
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains('*') {
            let dir = p.parent().unwrap_or(Path::new("/")).to_path_buf();
            let (pre, post) = name.split_once('*').unwrap_or((&name, ""));
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|e| {
                    let n = e
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len()
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p);
        }
    }
    out
}

/// containerd's merge: scalars from a later file win when set, lists are unioned, and plugin
/// sections are replaced as a whole.
fn merge(to: &mut Table, from: Table) {
    for (k, v) in from {
        match (k.as_str(), to.get_mut(&k), v) {
            (
                "plugins" | "proxy_plugins" | "timeouts" | "stream_processors",
                Some(Value::Table(dst)),
                Value::Table(src),
            ) => {
                for (pk, pv) in src {
                    dst.insert(pk, pv);
                }
            }
            (_, Some(Value::Array(dst)), Value::Array(src)) => {
                for item in src {
                    if !dst.contains(&item) {
                        dst.push(item);
                    }
                }
            }
            (_, Some(Value::Table(dst)), Value::Table(src)) => {
                let mut d = std::mem::take(dst);
                merge(&mut d, src);
                *dst = d;
            }
            (_, _, v) => {
                to.insert(k, v);
            }
        }
    }
}

/// Version 1 used short plugin names; version 2 needs URIs.
fn v1_migrate(plugins: &mut Table, log: &mut Vec<LogLine>) {
    let core: &[(&str, &str)] = &[
        ("cri", "io.containerd.grpc.v1.cri"),
        ("cgroups", "io.containerd.monitor.v1.cgroups"),
        ("linux", "io.containerd.runtime.v1.linux"),
        ("scheduler", "io.containerd.gc.v1.scheduler"),
        ("bolt", "io.containerd.metadata.v1.bolt"),
        ("task", "io.containerd.runtime.v2.task"),
        ("opt", "io.containerd.internal.v1.opt"),
        ("restart", "io.containerd.internal.v1.restart"),
        ("tracing", "io.containerd.internal.v1.tracing"),
        ("otlp", "io.containerd.tracing.processor.v1.otlp"),
        ("aufs", "io.containerd.snapshotter.v1.aufs"),
        ("btrfs", "io.containerd.snapshotter.v1.btrfs"),
        ("devmapper", "io.containerd.snapshotter.v1.devmapper"),
        ("native", "io.containerd.snapshotter.v1.native"),
        ("overlayfs", "io.containerd.snapshotter.v1.overlayfs"),
        ("zfs", "io.containerd.snapshotter.v1.zfs"),
    ];
    let old = std::mem::take(plugins);
    for (name, value) in old {
        let full = if name.contains('.') {
            name
        } else if let Some((_, f)) = core.iter().find(|(s, _)| *s == name) {
            f.to_string()
        } else if name.ends_with("-service") {
            format!("io.containerd.service.v1.{name}")
        } else {
            let f = format!("io.containerd.grpc.v1.{name}");
            log.push(LogLine::new(
                "warning",
                format!("Ambiguous {name} plugin in v1 config, treating as {f}"),
                &[],
            ));
            f
        };
        plugins.insert(full, value);
    }
}

/// containerd 1.x kept every CRI setting under `io.containerd.grpc.v1.cri`; 2.x splits them.
fn cri_migrate(plugins: &mut Table) {
    let Some(Value::Table(mut old)) = plugins.remove(CRI_GRPC) else {
        return;
    };
    let take_table = |plugins: &mut Table, id: &str| -> Table {
        match plugins.remove(id) {
            Some(Value::Table(t)) => t,
            _ => Table::new(),
        }
    };
    let mut runtime = take_table(plugins, CRI_RUNTIME);
    let mut images = take_table(plugins, CRI_IMAGES);
    const RUNTIME_KEYS: &[&str] = &[
        "cni",
        "enable_selinux",
        "selinux_category_range",
        "max_container_log_line_size",
        "disable_cgroup",
        "disable_apparmor",
        "restrict_oom_score_adj",
        "disable_proc_mount",
        "unset_seccomp_profile",
        "tolerate_missing_hugetlb_controller",
        "disable_hugetlb_controller",
        "device_ownership_from_security_context",
        "ignore_image_defined_volumes",
        "netns_mounts_under_state_dir",
        "enable_unprivileged_ports",
        "enable_unprivileged_icmp",
        "enable_cdi",
        "cdi_spec_dirs",
        "drain_exec_sync_io_timeout",
        "ignore_deprecation_warnings",
    ];
    const IMAGE_KEYS: &[&str] = &[
        "registry",
        "image_decryption",
        "max_concurrent_downloads",
        "image_pull_progress_timeout",
        "image_pull_with_sync_fs",
        "stats_collect_period",
    ];
    for k in RUNTIME_KEYS {
        if let Some(v) = old.remove(*k) {
            runtime.insert(k.to_string(), v);
        }
    }
    for k in IMAGE_KEYS {
        if let Some(v) = old.remove(*k) {
            images.insert(k.to_string(), v);
        }
    }
    if let Some(v) = old.remove("sandbox_image") {
        let mut pinned = match images.remove("pinned_images") {
            Some(Value::Table(t)) => t,
            _ => Table::new(),
        };
        pinned.insert("sandbox".into(), v);
        images.insert("pinned_images".into(), Value::Table(pinned));
    }
    if let Some(Value::Table(mut ctd)) = old.remove("containerd") {
        for k in [
            "snapshotter",
            "disable_snapshot_annotations",
            "discard_unpacked_layers",
        ] {
            if let Some(v) = ctd.remove(k) {
                images.insert(k.into(), v);
            }
        }
        runtime.insert("containerd".into(), Value::Table(ctd));
    }
    if !runtime.is_empty() {
        plugins.insert(CRI_RUNTIME.into(), Value::Table(runtime));
    }
    if !images.is_empty() {
        plugins.insert(CRI_IMAGES.into(), Value::Table(images));
    }
    if !old.is_empty() {
        plugins.insert(CRI_GRPC.into(), Value::Table(old));
    }
}

fn get<'a>(t: &'a Table, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = t.get(*first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        get(v.as_table()?, rest)
    }
}

/// Loads the configuration at PATH (a missing file means the defaults, as for containerd).
pub fn load(path: &Path) -> std::result::Result<Loaded, Fatal> {
    let mut log = Vec::new();
    let mut files = Vec::new();
    let mut merged = Table::new();
    if path.exists() {
        let mut pending = vec![path.to_path_buf()];
        while let Some(p) = (!pending.is_empty()).then(|| pending.remove(0)) {
            if files.contains(&p) {
                continue;
            }
            let t = parse_file(&p, &mut log)?;
            let imports = resolve_imports(&p, &str_list(&t, "imports"));
            merge(&mut merged, t);
            files.push(p);
            pending.extend(imports);
        }
    }
    let version = merged
        .get("version")
        .and_then(Value::as_integer)
        .unwrap_or(0);
    let where_ = path.display();
    if version > CONFIG_VERSION {
        return Err(Fatal(format!(
            "failed to load TOML from {where_}: expected containerd config version equal to or less than `{CONFIG_VERSION}`, got `{version}`"
        )));
    }
    let disabled = str_list(&merged, "disabled_plugins");
    let required = str_list(&merged, "required_plugins");
    for (what, list) in [("disabled", &disabled), ("required", &required)] {
        if let Some(p) = list.iter().find(|p| !p.contains('.')) {
            return Err(Fatal(format!(
                "failed to load TOML from {where_}: invalid {what} plugin URI {p:?} expect io.containerd.x.vx"
            )));
        }
    }

    let mut plugins = match merged.get("plugins") {
        Some(Value::Table(t)) => t.clone(),
        _ => Table::new(),
    };
    if version < CONFIG_VERSION {
        if version <= 1 {
            v1_migrate(&mut plugins, &mut log);
        }
        cri_migrate(&mut plugins);
        log.push(LogLine::new(
            "info",
            format!(
                "Configuration migrated from version {}, use `containerd config migrate` to avoid migration",
                version.max(1)
            ),
            &[],
        ));
    }

    // Plugin sections are decoded when their plugin loads; unknown keys are dropped.
    let mut failed = BTreeMap::new();
    for (id, shape) in [
        (CRI_IMAGES, &IMAGES_PLUGIN),
        (CRI_RUNTIME, &RUNTIME_PLUGIN),
        (CRI_GRPC, &GRPC_PLUGIN),
    ] {
        let Some(v) = plugins.get(id) else { continue };
        let mut unknown = Vec::new();
        let owner = match shape {
            S::Struct(n, _) => *n,
            _ => "config",
        };
        match check(v, shape, &mut Vec::new(), owner, &mut unknown) {
            Ok(()) => {
                for key in unknown {
                    log.push(LogLine::new(
                        "warning",
                        "Ignoring unknown key in TOML for plugin",
                        &[
                            (
                                "error",
                                "strict mode: fields in the document are missing in the target struct"
                                    .into(),
                            ),
                            ("key", key),
                            ("plugin", id.to_string()),
                        ],
                    ));
                }
            }
            Err(e) => {
                failed.insert(id.to_string(), e);
            }
        }
    }

    let cri = cri_settings(&plugins, &disabled, &mut failed, &mut log);
    for p in &required {
        let known = PLUGINS.iter().any(|(t, i)| format!("{t}.{i}") == *p);
        if !known || disabled.contains(p) || failed.contains_key(p) {
            return Err(Fatal(format!("required plugin {p} not included")));
        }
    }
    let s = |k: &str, d: &str| {
        merged
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .unwrap_or(d)
            .to_string()
    };
    let address = get(&merged, &["grpc", "address"])
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_ADDRESS)
        .to_string();
    Ok(Loaded {
        declared_version: version,
        root: s("root", "/var/lib/containerd"),
        state: s("state", "/run/containerd"),
        address,
        disabled,
        required,
        plugins,
        log,
        failed,
        cri,
        files,
    })
}

fn cri_settings(
    plugins: &Table,
    disabled: &[String],
    failed: &mut BTreeMap<String, String>,
    log: &mut Vec<LogLine>,
) -> Cri {
    let empty = Table::new();
    let rt = plugins
        .get(CRI_RUNTIME)
        .and_then(Value::as_table)
        .unwrap_or(&empty);
    let im = plugins
        .get(CRI_IMAGES)
        .and_then(Value::as_table)
        .unwrap_or(&empty);
    let default_runtime = get(rt, &["containerd", "default_runtime_name"])
        .and_then(Value::as_str)
        .unwrap_or("runc")
        .to_string();
    let runtimes = get(rt, &["containerd", "runtimes"]).and_then(Value::as_table);
    // The built-in runc handler exists unless the file defines the runtimes itself.
    let handler = match runtimes {
        Some(r) => r.get(&default_runtime).and_then(Value::as_table).cloned(),
        None if default_runtime == "runc" => Some(Table::new()),
        None => None,
    };
    if !failed.contains_key(CRI_RUNTIME) && handler.is_none() {
        failed.insert(
            CRI_RUNTIME.into(),
            format!(
                "invalid plugin config: no corresponding runtime configured in `containerd.runtimes` for `containerd` `default_runtime_name = \"{default_runtime}\"`"
            ),
        );
    }
    let handler = handler.unwrap_or_default();
    let runtime_type = handler
        .get("runtime_type")
        .and_then(Value::as_str)
        .unwrap_or("io.containerd.runc.v2")
        .to_string();
    let systemd_cgroup = match get(&handler, &["options", "SystemdCgroup"]) {
        None => Ok(false),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(v) => Err(format!(
            "toml: cannot decode TOML {} into struct field options.Options.SystemdCgroup of type bool",
            toml_kind(v)
        )),
    };
    let cni_bin_dirs = match (
        get(rt, &["cni", "bin_dirs"]).and_then(Value::as_array),
        get(rt, &["cni", "bin_dir"]).and_then(Value::as_str),
    ) {
        (Some(list), _) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        (None, Some(dir)) => {
            log.push(LogLine::new(
                "warning",
                "The `bin_dir` property of `[plugins.\"io.containerd.cri.v1.runtime\".cni]` is deprecated since containerd v2.1 and will be removed in containerd v2.3. Use `bin_dirs` in the same section instead.",
                &[],
            ));
            vec![dir.to_string()]
        }
        _ => vec!["/opt/cni/bin".to_string()],
    };
    for (id, err) in failed.iter() {
        log.push(LogLine::new(
            "warning",
            "failed to load plugin",
            &[("error", err.clone()), ("id", id.clone())],
        ));
    }
    let mut unavailable = None;
    for dep in [CRI_IMAGES, CRI_RUNTIME, CRI_GRPC] {
        if disabled.iter().any(|d| d == dep) {
            unavailable = Some(format!("plugin {dep} is disabled"));
            break;
        }
        if let Some(e) = failed.get(dep) {
            unavailable = Some(format!("plugin {dep} failed to load: {e}"));
            break;
        }
    }
    if unavailable.is_some() && !disabled.iter().any(|d| d == CRI_GRPC) {
        log.push(LogLine::new(
            "info",
            "skip loading plugin",
            &[
                (
                    "error",
                    "dependency of the CRI service is not available".into(),
                ),
                ("id", CRI_GRPC.into()),
            ],
        ));
    }
    Cri {
        unavailable,
        sandbox_image: get(im, &["pinned_images", "sandbox"])
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_SANDBOX)
            .to_string(),
        default_runtime,
        runtime_type,
        systemd_cgroup,
        snapshotter: im
            .get("snapshotter")
            .and_then(Value::as_str)
            .unwrap_or("overlayfs")
            .to_string(),
        cni_bin_dirs,
        cni_conf_dir: get(rt, &["cni", "conf_dir"])
            .and_then(Value::as_str)
            .unwrap_or("/etc/cni/net.d")
            .to_string(),
        registry_config_path: get(im, &["registry", "config_path"])
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

impl Loaded {
    /// Plugin status as `ctr plugins ls` shows it: ok, skip (disabled or dependency missing),
    /// error (failed to load).
    pub fn plugin_status(&self, uri: &str) -> &'static str {
        if self.disabled.iter().any(|d| d == uri) {
            "skip"
        } else if self.failed.contains_key(uri) {
            "error"
        } else if uri == CRI_GRPC && self.cri.unavailable.is_some() {
            "skip"
        } else {
            "ok"
        }
    }

    /// The effective settings, for `/lab/config` and the daemon's state file.
    pub fn to_json(&self) -> Json {
        json!({
            "declaredVersion": self.declared_version,
            "files": self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "root": self.root,
            "state": self.state,
            "address": self.address,
            "disabledPlugins": self.disabled,
            "requiredPlugins": self.required,
            "failedPlugins": self.failed,
            "cri": {
                "served": self.cri.unavailable.is_none(),
                "unavailable": self.cri.unavailable,
                "sandboxImage": self.cri.sandbox_image,
                "defaultRuntimeName": self.cri.default_runtime,
                "runtimeType": self.cri.runtime_type,
                "systemdCgroup": self.cri.systemd_cgroup.as_ref().ok(),
                "systemdCgroupError": self.cri.systemd_cgroup.as_ref().err(),
                "cgroupDriver": self.cgroup_driver().ok(),
                "snapshotter": self.cri.snapshotter,
                "cniBinDirs": self.cri.cni_bin_dirs,
                "cniConfDir": self.cri.cni_conf_dir,
                "registryConfigPath": self.cri.registry_config_path,
            },
            "log": self.log.iter().map(LogLine::render).collect::<Vec<_>>(),
        })
    }

    /// The cgroup driver the CRI reports to the kubelet (RuntimeConfig), from the default
    /// runtime's `SystemdCgroup`.
    pub fn cgroup_driver(&self) -> Result<&'static str> {
        match &self.cri.systemd_cgroup {
            Ok(true) => Ok("SYSTEMD"),
            Ok(false) => Ok("CGROUPFS"),
            Err(e) => bail!(
                "failed to get runtime options for {:?}: {e}",
                self.cri.default_runtime
            ),
        }
    }

    /// The configuration in the version 3 layout (`containerd config migrate`/`dump`).
    pub fn to_v3_toml(&self, original: &Path) -> String {
        let mut t = Table::new();
        if let Ok(text) = std::fs::read_to_string(original)
            && let Ok(orig) = text.parse::<Table>()
        {
            t = orig;
        }
        t.insert("version".into(), Value::Integer(CONFIG_VERSION));
        t.insert("plugins".into(), Value::Table(self.plugins.clone()));
        toml::to_string(&t).unwrap_or_default()
    }
}

/// What `containerd config default` prints (containerd 2.x, Linux). Note what it lacks, as the
/// real one does: no `SystemdCgroup` key under the runc options, so a `sed` that flips
/// `SystemdCgroup = false` finds nothing to change.
pub fn default_config() -> String {
    format!(
        r#"version = 3
root = '/var/lib/containerd'
state = '/run/containerd'
temp = ''
disabled_plugins = []
required_plugins = []
oom_score = 0
imports = []

[grpc]
  address = '{DEFAULT_ADDRESS}'
  tcp_address = ''
  tcp_tls_ca = ''
  tcp_tls_cert = ''
  tcp_tls_key = ''
  uid = 0
  gid = 0
  max_recv_message_size = 16777216
  max_send_message_size = 16777216

[ttrpc]
  address = ''
  uid = 0
  gid = 0

[debug]
  address = ''
  uid = 0
  gid = 0
  level = ''
  format = ''

[metrics]
  address = ''
  grpc_histogram = false

[plugins]
  [plugins.'{CRI_IMAGES}']
    snapshotter = 'overlayfs'
    disable_snapshot_annotations = true
    discard_unpacked_layers = false
    max_concurrent_downloads = 3
    image_pull_progress_timeout = '5m0s'
    image_pull_with_sync_fs = false
    stats_collect_period = 10
    use_local_image_pull = false

    [plugins.'{CRI_IMAGES}'.pinned_images]
      sandbox = '{DEFAULT_SANDBOX}'

    [plugins.'{CRI_IMAGES}'.registry]
      config_path = ''

    [plugins.'{CRI_IMAGES}'.image_decryption]
      key_model = 'node'

  [plugins.'{CRI_RUNTIME}']
    enable_selinux = false
    selinux_category_range = 1024
    max_container_log_line_size = 16384
    disable_apparmor = false
    restrict_oom_score_adj = false
    disable_proc_mount = false
    unset_seccomp_profile = ''
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    device_ownership_from_security_context = false
    ignore_image_defined_volumes = false
    netns_mounts_under_state_dir = false
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    enable_cdi = true
    cdi_spec_dirs = ['/etc/cdi', '/var/run/cdi']
    drain_exec_sync_io_timeout = '0s'
    ignore_deprecation_warnings = []

    [plugins.'{CRI_RUNTIME}'.containerd]
      default_runtime_name = 'runc'
      ignore_blockio_not_enabled_errors = false
      ignore_rdt_not_enabled_errors = false

      [plugins.'{CRI_RUNTIME}'.containerd.runtimes]
        [plugins.'{CRI_RUNTIME}'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
          runtime_path = ''
          pod_annotations = []
          container_annotations = []
          privileged_without_host_devices = false
          privileged_without_host_devices_all_devices_allowed = false
          base_runtime_spec = ''
          cni_conf_dir = ''
          cni_max_conf_num = 0
          snapshotter = ''
          sandboxer = 'podsandbox'
          io_type = ''

          [plugins.'{CRI_RUNTIME}'.containerd.runtimes.runc.options]
            BinaryName = ''
            CriuImagePath = ''
            CriuWorkPath = ''
            IoGid = 0
            IoUid = 0
            NoNewKeyring = false
            Root = ''
            ShimCgroup = ''

    [plugins.'{CRI_RUNTIME}'.cni]
      bin_dirs = ['/opt/cni/bin']
      conf_dir = '/etc/cni/net.d'
      max_conf_num = 1
      setup_serially = false
      conf_template = ''
      ip_pref = ''
      use_internal_loopback = false

  [plugins.'{CRI_GRPC}']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
    stream_idle_timeout = '4h0m0s'
    enable_tls_streaming = false

    [plugins.'{CRI_GRPC}'.x509_key_pair_streaming]
      tls_cert_file = ''
      tls_key_file = ''

  [plugins.'io.containerd.gc.v1.scheduler']
    pause_threshold = 0.02
    deletion_threshold = 0
    mutation_threshold = 100
    schedule_delay = '0s'
    startup_delay = '100ms'

  [plugins.'io.containerd.snapshotter.v1.overlayfs']
    root_path = ''
    upperdir_label = false
    sync_remove = false
    slow_chown = false
    mount_options = []

[cgroup]
  path = ''

[timeouts]
  'io.containerd.timeout.bolt.open' = '0s'
  'io.containerd.timeout.cri.defercleanup' = '1m0s'
  'io.containerd.timeout.metrics.shimstats' = '2s'
  'io.containerd.timeout.shim.cleanup' = '5s'
  'io.containerd.timeout.shim.load' = '5s'
  'io.containerd.timeout.shim.shutdown' = '3s'
  'io.containerd.timeout.task.state' = '2s'
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> std::result::Result<Loaded, Fatal> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        load(&p)
    }

    fn has_log(l: &Loaded, msg: &str, key: &str) -> bool {
        l.log
            .iter()
            .any(|x| x.msg == msg && x.fields.iter().any(|(k, v)| k == "key" && v == key))
    }

    #[test]
    fn the_default_config_loads_with_cri_on_cgroupfs_and_the_default_pause_image() {
        let l = load_str(&default_config()).unwrap();
        assert!(l.cri.unavailable.is_none(), "{:?}", l.cri.unavailable);
        assert_eq!(l.cri.systemd_cgroup, Ok(false));
        assert_eq!(l.cri.sandbox_image, DEFAULT_SANDBOX);
        assert!(l.log.iter().all(|x| x.level != "warning"), "{:?}", l.log);
        assert!(!default_config().contains("SystemdCgroup"));
    }

    #[test]
    fn a_missing_file_means_the_defaults() {
        let l = load(Path::new("/nonexistent/config.toml")).unwrap();
        assert!(l.cri.unavailable.is_none());
        assert_eq!(l.address, DEFAULT_ADDRESS);
    }

    #[test]
    fn v3_settings_take_effect() {
        let l = load_str(
            "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'registry.k8s.io/pause:3.10'\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        )
        .unwrap();
        assert_eq!(l.cri.systemd_cgroup, Ok(true));
        assert_eq!(l.cgroup_driver().unwrap(), "SYSTEMD");
        assert_eq!(l.cri.sandbox_image, "registry.k8s.io/pause:3.10");
    }

    #[test]
    fn a_v3_file_with_the_1x_cri_layout_starts_but_ignores_those_settings() {
        let l = load_str(
            "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.9\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        )
        .unwrap();
        assert!(l.cri.unavailable.is_none());
        assert_eq!(l.cri.systemd_cgroup, Ok(false));
        assert_eq!(l.cri.sandbox_image, DEFAULT_SANDBOX);
        assert!(has_log(
            &l,
            "Ignoring unknown key in TOML for plugin",
            "sandbox_image"
        ));
        assert!(has_log(
            &l,
            "Ignoring unknown key in TOML for plugin",
            "containerd runtimes runc options SystemdCgroup"
        ));
    }

    #[test]
    fn a_v2_file_is_migrated_in_memory() {
        let l = load_str(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.9\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        )
        .unwrap();
        assert_eq!(l.cri.systemd_cgroup, Ok(true));
        assert_eq!(l.cri.sandbox_image, "registry.k8s.io/pause:3.9");
        assert!(
            l.log
                .iter()
                .any(|x| x.msg.contains("migrated from version 2"))
        );
        assert!(l.plugins.get(CRI_RUNTIME).is_some());
    }

    #[test]
    fn short_plugin_names_in_disabled_plugins_refuse_to_start() {
        let e = load_str("disabled_plugins = [\"cri\"]\n").unwrap_err();
        assert!(
            e.0.contains("invalid disabled plugin URI \"cri\" expect io.containerd.x.vx"),
            "{e}"
        );
    }

    #[test]
    fn a_version_above_3_refuses_to_start() {
        let e = load_str("version = 4\n").unwrap_err();
        assert!(
            e.0.contains("expected containerd config version equal to or less than `3`, got `4`"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_refuse_to_start_with_row_and_column() {
        let e = load_str("version = 3\n[plugins\n").unwrap_err();
        assert!(e.0.starts_with("failed to unmarshal TOML at row 2"), "{e}");
    }

    #[test]
    fn a_top_level_field_of_the_wrong_type_refuses_to_start() {
        let e = load_str("version = \"3\"\n").unwrap_err();
        assert!(e.0.contains("cannot decode TOML string"), "{e}");
    }

    #[test]
    fn disabling_the_cri_plugin_leaves_the_daemon_running_without_cri() {
        let l =
            load_str("version = 3\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n").unwrap();
        assert!(l.cri.unavailable.as_deref().unwrap().contains("disabled"));
        assert_eq!(l.plugin_status(CRI_GRPC), "skip");
    }

    #[test]
    fn a_plugin_value_of_the_wrong_type_fails_the_plugin_not_the_daemon() {
        let l = load_str(
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime']\nenable_selinux = 'no'\n",
        )
        .unwrap();
        assert!(l.failed.contains_key(CRI_RUNTIME));
        assert!(l.cri.unavailable.is_some());
    }

    #[test]
    fn a_default_runtime_without_a_handler_fails_the_runtime_plugin() {
        let l = load_str(
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\ndefault_runtime_name = 'crun'\n",
        )
        .unwrap();
        assert!(l.failed[CRI_RUNTIME].contains("default_runtime_name = \"crun\""));
    }

    #[test]
    fn a_required_plugin_that_is_disabled_refuses_to_start() {
        let e = load_str(
            "version = 3\ndisabled_plugins = ['io.containerd.grpc.v1.cri']\nrequired_plugins = ['io.containerd.grpc.v1.cri']\n",
        )
        .unwrap_err();
        assert!(
            e.0.contains("required plugin io.containerd.grpc.v1.cri"),
            "{e}"
        );
    }

    #[test]
    fn imports_replace_whole_plugin_sections() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/50-x.toml"),
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        )
        .unwrap();
        let main = dir.path().join("config.toml");
        std::fs::write(&main, "version = 3\nimports = ['conf.d/*.toml']\n").unwrap();
        let l = load(&main).unwrap();
        assert_eq!(l.files.len(), 2);
        assert_eq!(l.cri.systemd_cgroup, Ok(true));
    }

    #[test]
    fn a_non_boolean_systemd_cgroup_is_reported_when_the_driver_is_asked_for() {
        let l = load_str(
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = 'true'\n",
        )
        .unwrap();
        assert!(l.cri.unavailable.is_none());
        assert!(l.cgroup_driver().is_err());
    }
}
