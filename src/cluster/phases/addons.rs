//! Addons, in order: Weave Net (then every node turns Ready), Rook-Ceph, the dashboard. Each
//! manifest is fetched on the leading master and verified against its pinned sha256, patched
//! by structure where the inventory decides something, applied with server-side apply, and
//! waited for with a timeout that names what is not ready.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::addons::{self, Catalog, Release, RookNode};
use crate::cluster::Ctx;
use crate::cluster::kube;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::phases::join_masters::run_playbook;
use crate::cluster::probe::probe_text;
use crate::cluster::secrets::SecretSource;
use crate::inventory::{DashboardKind, Host};

const CACHE: &str = "/var/cache/installer/addons";
const RENDERED: &str = "/etc/kubernetes/installer/addons";
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const WEAVE_SECRET: &str = "weave-passwd";

pub struct Addons;

impl Phase for Addons {
    fn title(&self) -> &'static str {
        "Addons"
    }

    fn should_run(&self, ctx: &Ctx) -> bool {
        !wanted(ctx).is_empty()
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let catalog = Catalog::load(&ctx.playbooks).map_err(err)?;
            let leader = ctx.leader().map_err(err)?;
            for addon in wanted(ctx) {
                install(ctx, &catalog, &leader, addon)
                    .await
                    .map_err(|m| err(format!("{}: {m}", addon.name())))?;
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let catalog = Catalog::load(&ctx.playbooks).map_err(|m| PhaseError::new(phase, m))?;
            let mut steps = Vec::new();
            for addon in wanted(ctx) {
                let (name, version) = addon.release_key(ctx);
                let release = catalog
                    .release(name, version.as_deref())
                    .map_err(|m| PhaseError::new(phase, m))?;
                let files: Vec<&str> = release.files.iter().map(|f| f.name.as_str()).collect();
                steps.push(PlannedStep::change(
                    phase,
                    "-",
                    format!(
                        "{}: apply {} (server-side, unchanged objects stay as they are) and wait until ready",
                        addon.name(),
                        files.join(", ")
                    ),
                ));
            }
            Ok(steps)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addon {
    Weave,
    Rook,
    Dashboard,
}

impl Addon {
    fn name(self) -> &'static str {
        match self {
            Addon::Weave => "Weave Net",
            Addon::Rook => "Rook-Ceph",
            Addon::Dashboard => "dashboard",
        }
    }

    /// The catalog entry: addon key and pinned version (`None`: the only one listed).
    fn release_key(self, ctx: &Ctx) -> (&'static str, Option<String>) {
        let a = &ctx.inventory.addons;
        match self {
            Addon::Weave => ("weave", Some(a.weave.version.clone())),
            Addon::Rook => ("rook", Some(a.rook.version.clone())),
            Addon::Dashboard => match a.dashboard.kind {
                DashboardKind::Headlamp => ("headlamp", None),
                DashboardKind::KubernetesDashboard => ("kubernetes-dashboard", None),
            },
        }
    }
}

/// The enabled addons, CNI first: nothing else runs before pods can talk.
fn wanted(ctx: &Ctx) -> Vec<Addon> {
    let a = &ctx.inventory.addons;
    [
        (a.weave.enabled, Addon::Weave),
        (a.rook.enabled, Addon::Rook),
        (a.dashboard.enabled, Addon::Dashboard),
    ]
    .into_iter()
    .filter_map(|(on, addon)| on.then_some(addon))
    .collect()
}

/// One file to fetch: where from, what it must hash to, where it lands on the master.
#[derive(Debug, Serialize)]
struct Fetch {
    source: String,
    sha256: String,
    dest: String,
}

async fn fetch(ctx: &mut Ctx, leader: &Host, release: &Release) -> Result<Vec<String>, String> {
    let mirror = ctx.inventory.packages.manifests_mirror.clone();
    let files: Vec<Fetch> = release
        .files
        .iter()
        .map(|f| Fetch {
            source: f.source(release, mirror.as_deref()),
            sha256: f.sha256.clone(),
            dest: format!("{CACHE}/{}", f.sha256),
        })
        .collect();
    let paths = files.iter().map(|f| f.dest.clone()).collect();
    run_playbook(ctx, "addons-fetch", leader, &json!({ "files": files })).await?;
    Ok(paths)
}

async fn read(ctx: &Ctx, leader: &Host, path: &str) -> Result<String, String> {
    use base64::Engine;
    let b64 = probe_text(ctx, "addons-read", leader, &json!({ "path": path }))
        .await
        .map_err(|e| e.to_string())?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("{path}: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("{path}: {e}"))
}

/// Applies the manifest at `path` on the master, or `content` written there first.
async fn apply(
    ctx: &mut Ctx,
    leader: &Host,
    path: &str,
    content: Option<String>,
) -> Result<(), String> {
    let vars = json!({ "path": path, "content": content });
    run_playbook(ctx, "addons-apply", leader, &vars).await
}

async fn install(
    ctx: &mut Ctx,
    catalog: &Catalog,
    leader: &Host,
    addon: Addon,
) -> Result<(), String> {
    let (name, version) = addon.release_key(ctx);
    let release = catalog.release(name, version.as_deref())?.clone();
    let cached = fetch(ctx, leader, &release).await?;
    match addon {
        Addon::Weave => {
            let secret = weave_password_secret(ctx, leader).await?;
            let text = read(ctx, leader, &cached[0]).await?;
            let pods = ctx.inventory.cluster.network.pods.to_string();
            let patched = addons::weave(&text, &pods, secret)?;
            apply(
                ctx,
                leader,
                &format!("{RENDERED}/weave.json"),
                Some(patched),
            )
            .await?;
            wait(
                ctx,
                leader,
                "weave-net pods on every node",
                &["-n", "kube-system", "get", "daemonset", "weave-net"],
                addons::daemonset_ready,
            )
            .await?;
            wait_nodes_ready(ctx, leader).await
        }
        Addon::Rook => {
            for path in &cached {
                apply(ctx, leader, path, None).await?;
            }
            wait(ctx, leader, "Rook's CRDs", &["get", "crd"], |list| {
                addons::crds_established(list, ".ceph.rook.io", 1)
            })
            .await?;
            wait(
                ctx,
                leader,
                "the Rook operator",
                &["-n", "rook-ceph", "get", "deployment", "rook-ceph-operator"],
                addons::deployment_ready,
            )
            .await?;
            let nodes = rook_nodes(ctx);
            if nodes.is_empty() {
                ctx.reporter.warn("Rook-Ceph: no host lists `storage` disks; the operator runs but no CephCluster is created");
                return Ok(());
            }
            if nodes.len() < 3 {
                ctx.reporter.warn(format!(
                    "Rook-Ceph: {} storage node(s): one monitor and no replication (three storage nodes make it highly available)",
                    nodes.len()
                ));
            }
            let image = release
                .ceph_image
                .clone()
                .ok_or("no cephImage pinned for this release")?;
            apply(
                ctx,
                leader,
                &format!("{RENDERED}/rook-cluster.json"),
                Some(addons::rook_cluster(&nodes, &image)),
            )
            .await?;
            report_ceph_health(ctx, leader).await;
            Ok(())
        }
        Addon::Dashboard => {
            let text = read(ctx, leader, &cached[0]).await?;
            let (manifest, namespace, deployment) = match &release.image {
                Some(image) => (addons::headlamp(&text, image)?, "kube-system", "headlamp"),
                None => (text, "kubernetes-dashboard", "kubernetes-dashboard"),
            };
            apply(
                ctx,
                leader,
                &format!("{RENDERED}/dashboard.yaml"),
                Some(manifest),
            )
            .await?;
            if ctx.inventory.addons.dashboard.admin {
                apply(
                    ctx,
                    leader,
                    &format!("{RENDERED}/dashboard-admin.json"),
                    Some(addons::dashboard_admin(namespace)),
                )
                .await?;
            }
            wait(
                ctx,
                leader,
                "the dashboard",
                &["-n", namespace, "get", "deployment", deployment],
                addons::deployment_ready,
            )
            .await
        }
    }
}

/// The Secret holding Weave's encryption password, when the inventory names one.
async fn weave_password_secret(
    ctx: &mut Ctx,
    leader: &Host,
) -> Result<Option<&'static str>, String> {
    let Some(env) = ctx.inventory.addons.weave.password_env.clone() else {
        return Ok(None);
    };
    use secrecy::ExposeSecret;
    let password = SecretSource::default().get(&env, "Weave password", ctx.reporter.redactor())?;
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(password.expose_secret());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": WEAVE_SECRET, "namespace": "kube-system"},
        "data": {"weave-passwd": data}});
    ctx.reporter.redactor().add_secret(&data);
    apply(
        ctx,
        leader,
        &format!("{RENDERED}/weave-secret.json"),
        Some(secret.to_string()),
    )
    .await?;
    Ok(Some(WEAVE_SECRET))
}

fn rook_nodes(ctx: &Ctx) -> Vec<RookNode> {
    ctx.inventory
        .hosts
        .iter()
        .filter(|h| !h.storage.is_empty())
        .map(|h| RookNode {
            name: h.name.clone(),
            devices: h.storage.clone(),
        })
        .collect()
}

/// Polls `kubectl ARGS -o json` until `ready` accepts it; the last reason on timeout.
async fn wait(
    ctx: &Ctx,
    leader: &Host,
    what: &str,
    args: &[&str],
    ready: impl Fn(&Value) -> Result<(), String>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-o", "json"]);
    loop {
        let why = match kube::kubectl(ctx, leader, &full).await {
            Ok(out) => match serde_json::from_str::<Value>(&out) {
                Ok(doc) => match ready(&doc) {
                    Ok(()) => return Ok(()),
                    Err(why) => why,
                },
                Err(e) => format!("unexpected answer: {e}"),
            },
            Err(e) => e,
        };
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{what} not ready after {}s: {why}; look at `kubectl get pods -A` and the pods' events",
                READY_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// With the CNI up, every node must turn Ready.
async fn wait_nodes_ready(ctx: &Ctx, leader: &Host) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let nodes = kube::nodes(ctx, leader).await?;
        let not_ready: Vec<&str> = nodes
            .iter()
            .filter(|n| !n.ready())
            .map(|n| n.metadata.name.as_str())
            .collect();
        if not_ready.is_empty() {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "nodes not Ready after {}s: {}; look at `kubectl describe node` (conditions) there",
                READY_TIMEOUT.as_secs(),
                not_ready.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Ceph's health is reported, not waited for: a new cluster takes minutes to settle.
async fn report_ceph_health(ctx: &Ctx, leader: &Host) {
    let args = [
        "-n",
        "rook-ceph",
        "get",
        "cephcluster",
        "rook-ceph",
        "-o",
        "json",
    ];
    let health = match kube::kubectl(ctx, leader, &args).await {
        Ok(out) => serde_json::from_str::<Value>(&out)
            .map(|v| addons::ceph_health(&v))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let line = match health {
        Ok(addons::CephHealth::Ok) => "Ceph reports HEALTH_OK".to_string(),
        Ok(addons::CephHealth::Pending(s)) => {
            format!("Ceph is still starting ({s}); `installer status` shows its health later")
        }
        Ok(addons::CephHealth::Warn(d)) => format!("Ceph reports HEALTH_WARN: {}", d.join("; ")),
        Ok(addons::CephHealth::Err(d)) => format!("Ceph reports HEALTH_ERR: {}", d.join("; ")),
        Err(e) => format!("Ceph's health could not be read: {e}"),
    };
    ctx.reporter.info(line);
}
