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

/// `prune`: an addon switched off in the inventory is removed (`--prune`); without it, it is
/// reported and left as it is — turning a switch off never deletes anything by surprise.
pub struct Addons {
    prune: bool,
}

impl Addons {
    pub const KEEP: Addons = Addons { prune: false };
    pub const PRUNE: Addons = Addons { prune: true };

    pub fn new(prune: bool) -> &'static Addons {
        if prune { &Addons::PRUNE } else { &Addons::KEEP }
    }
}

impl Phase for Addons {
    fn title(&self) -> &'static str {
        "Addons"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let catalog = Catalog::load(&ctx.playbooks).map_err(err)?;
            let leader = ctx.leader().map_err(err)?;
            let mut releases = Vec::new();
            for addon in wanted(ctx) {
                let release = release_of(ctx, &catalog, addon)
                    .map_err(|m| err(format!("{}: {m}", addon.name())))?;
                releases.push((addon, release));
            }
            // Every file first: a changed upstream file stops the phase before anything
            // is applied, and a converged cluster answers for all of them at once.
            let cached = fetch(ctx, &leader, &releases).await.map_err(err)?;
            let mut prepared = Vec::new();
            for ((addon, release), cached) in releases.iter().zip(cached) {
                let all = manifests(ctx, &leader, *addon, release, &cached)
                    .await
                    .map_err(|m| err(format!("{}: {m}", addon.name())))?;
                prepared.push((*addon, all));
            }
            // What the cluster runs now, read once and all at once: each addon's readiness,
            // and which manifests an apply would not change. An addon that changes nothing
            // takes both from here instead of asking again, one after the other.
            let checks: Vec<Readiness> = prepared
                .iter()
                .flat_map(|(addon, _)| readiness(*addon))
                .collect();
            let applies: Vec<&Manifest> = prepared
                .iter()
                .flat_map(|(_, all)| all.iter().filter(|m| !m.after_ready))
                .collect();
            let (listed, mut answers) = futures::join!(
                workloads(ctx, &leader),
                Answers::read(ctx, &leader, &checks, &applies)
            );
            let listed = listed.map_err(err)?;
            answers.hold_listed(&checks, &listed);
            let off = switched_off(ctx, &listed);
            for (addon, all) in prepared {
                install(ctx, &leader, addon, all, &mut answers)
                    .await
                    .map_err(|m| err(format!("{}: {m}", addon.name())))?;
            }
            for addon in off {
                if self.prune {
                    remove(ctx, &catalog, &leader, addon)
                        .await
                        .map_err(|m| err(format!("removing {}: {m}", addon.name())))?;
                } else {
                    ctx.reporter.warn(kept_message(addon));
                }
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let catalog = Catalog::load(&ctx.playbooks).map_err(|m| PhaseError::new(phase, m))?;
            let leader = ctx.leader().ok();
            let mut steps = Vec::new();
            for addon in wanted(ctx) {
                let release =
                    release_of(ctx, &catalog, addon).map_err(|m| PhaseError::new(phase, m))?;
                let files: Vec<&str> = release.files.iter().map(|f| f.name.as_str()).collect();
                let whole = PlannedStep::change(
                    phase,
                    "-",
                    format!(
                        "{}: fetch and verify {}, apply them (server-side) and wait until ready",
                        addon.name(),
                        files.join(", ")
                    ),
                );
                // What is already there decides, as for every other phase: the cached files,
                // the rendered manifests and the objects in the cluster (read-only probes).
                let planned = match &leader {
                    Some(leader) => plan_addon(ctx, leader, addon, &release).await,
                    None => None,
                };
                steps.extend(planned.unwrap_or_else(|| vec![whole]));
            }
            // Before `kubeadm init` there is no API to ask, and nothing installed.
            if let Some(leader) = &leader {
                let off = match workloads(ctx, leader).await {
                    Ok(listed) => switched_off(ctx, &listed),
                    Err(_) => Vec::new(),
                };
                for addon in off {
                    let step = format!("{}: off in the inventory, installed", addon.name());
                    steps.push(if self.prune {
                        PlannedStep::change(phase, &leader.name, format!("{step}: remove it"))
                    } else {
                        PlannedStep::skip(phase, &leader.name, step, "kept; --prune removes it")
                    });
                }
            }
            Ok(steps)
        })
    }
}

/// The dry run of one addon on the leader: `None` when its manifests are not all fetched and
/// verified yet (everything would run); else, per manifest, whether it would be written or
/// applied (the `addons-apply` playbook's own guards, run read-only).
async fn plan_addon(
    ctx: &Ctx,
    leader: &Host,
    addon: Addon,
    release: &Release,
) -> Option<Vec<PlannedStep>> {
    let phase = "Addons";
    let (files, cached) = fetch_list(ctx, release);
    let fetched = dry_run(ctx, "addons-fetch", leader, &json!({ "files": files })).await?;
    if fetched {
        return None;
    }
    let manifests = manifests(ctx, leader, addon, release, &cached).await.ok()?;
    let mut steps = Vec::new();
    for m in manifests {
        let vars = json!({ "path": m.path, "content": m.content });
        let step = format!("{}: {}", addon.name(), m.path);
        if dry_run(ctx, "addons-apply", leader, &vars).await? {
            steps.push(PlannedStep::change(
                phase,
                &leader.name,
                format!("{step}: apply (server-side) and wait until ready"),
            ));
        } else {
            steps.push(PlannedStep::skip(
                phase,
                &leader.name,
                step,
                "applied, unchanged",
            ));
        }
    }
    Some(steps)
}

/// Runs playbook NAME on HOST in plan mode: whether it would change anything (`None`: the
/// host could not be asked).
async fn dry_run(ctx: &Ctx, name: &str, host: &Host, vars: &Value) -> Option<bool> {
    let playbook = ctx.playbooks.load(name).ok()?;
    let targets = ctx.targets(&[host], vars);
    if targets.is_empty() {
        return None;
    }
    let reports = crate::playbook::run(
        &playbook,
        targets,
        &ctx.run_options(crate::playbook::Mode::Plan),
    )
    .await;
    let report = reports.first()?;
    if report.failure.is_some() {
        return None;
    }
    Some(report.changed())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addon {
    Weave,
    Rook,
    Dashboard(DashboardKind),
}

/// Every addon the installer can install, in the order they are installed.
const ALL: [Addon; 4] = [
    Addon::Weave,
    Addon::Rook,
    Addon::Dashboard(DashboardKind::Headlamp),
    Addon::Dashboard(DashboardKind::KubernetesDashboard),
];

impl Addon {
    fn name(self) -> &'static str {
        match self {
            Addon::Weave => "Weave Net",
            Addon::Rook => "Rook-Ceph",
            Addon::Dashboard(DashboardKind::Headlamp) => "dashboard (Headlamp)",
            Addon::Dashboard(DashboardKind::KubernetesDashboard) => {
                "dashboard (Kubernetes Dashboard)"
            }
        }
    }

    /// The catalog entry: addon key and pinned version (`None`: the only one listed).
    fn release_key(self, ctx: &Ctx) -> (&'static str, Option<String>) {
        let a = &ctx.inventory.addons;
        match self {
            Addon::Weave => ("weave", Some(a.weave.version.clone())),
            Addon::Rook => ("rook", Some(a.rook.version.clone())),
            Addon::Dashboard(DashboardKind::Headlamp) => ("headlamp", None),
            Addon::Dashboard(DashboardKind::KubernetesDashboard) => ("kubernetes-dashboard", None),
        }
    }

    /// The workload whose presence says the addon is installed: kind, namespace, name.
    fn marker(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Addon::Weave => ("DaemonSet", "kube-system", "weave-net"),
            Addon::Rook => ("Deployment", "rook-ceph", "rook-ceph-operator"),
            Addon::Dashboard(DashboardKind::Headlamp) => ("Deployment", "kube-system", "headlamp"),
            Addon::Dashboard(DashboardKind::KubernetesDashboard) => {
                ("Deployment", "kubernetes-dashboard", "kubernetes-dashboard")
            }
        }
    }

    /// What the installer rendered for it beside the upstream files (removed first).
    fn rendered(self) -> &'static [&'static str] {
        match self {
            Addon::Weave => &["weave-secret.json", "weave.json"],
            Addon::Rook => &["rook-cluster.json"],
            Addon::Dashboard(_) => &["dashboard-admin.json"],
        }
    }
}

/// The pinned release of `addon`; a release the catalog does not pin a sha256 for (Weave Net
/// 2.8.1) takes the user's `addons.weave.sha256`, and without it is refused before anything is
/// fetched.
fn release_of(ctx: &Ctx, catalog: &Catalog, addon: Addon) -> Result<Release, String> {
    let (name, version) = addon.release_key(ctx);
    let release = catalog.release(name, version.as_deref())?.clone();
    let users = match addon {
        Addon::Weave => ctx.inventory.addons.weave.sha256.as_deref(),
        _ => None,
    };
    let what = format!("{} {}", addon.name(), version.unwrap_or_default());
    pin(release, users, what.trim_end())
}

/// Fills in the user's sha256 where the catalog pins none; refuses a file with no sha256 at all,
/// and a user's sha256 that contradicts a pinned one.
fn pin(mut release: Release, users: Option<&str>, what: &str) -> Result<Release, String> {
    for file in &mut release.files {
        match users {
            None if file.sha256.is_empty() => {
                return Err(format!(
                    "{what}: the installer pins no sha256 for {}; verify the file and set addons.weave.sha256 to its sha256 in the inventory",
                    file.url
                ));
            }
            Some(sum) if file.sha256.is_empty() => file.sha256 = sum.to_string(),
            Some(sum) if sum != file.sha256 => {
                return Err(format!(
                    "{what}: addons.weave.sha256 {sum} is not the pinned sha256 {} of {}; remove addons.weave.sha256 (the pinned one is used)",
                    file.sha256, file.name
                ));
            }
            _ => {}
        }
    }
    Ok(release)
}

/// The enabled addons, CNI first: nothing else runs before pods can talk.
fn wanted(ctx: &Ctx) -> Vec<Addon> {
    let a = &ctx.inventory.addons;
    ALL.into_iter()
        .filter(|addon| match addon {
            Addon::Weave => a.weave.enabled,
            Addon::Rook => a.rook.enabled,
            Addon::Dashboard(kind) => a.dashboard.enabled && a.dashboard.kind == *kind,
        })
        .collect()
}

/// `kubectl get` of every DaemonSet and Deployment: each addon's own workload is among them
/// (its marker, and the readiness of Weave's, Rook's operator and the dashboard).
const WORKLOADS: [&str; 5] = [
    "get",
    "daemonsets,deployments",
    "--all-namespaces",
    "-o",
    "json",
];

async fn workloads(ctx: &Ctx, leader: &Host) -> Result<Value, String> {
    let out = kube::kubectl(ctx, leader, &WORKLOADS).await?;
    serde_json::from_str(&out).map_err(|e| format!("unexpected `kubectl get` output: {e}"))
}

/// The listed workload `kind namespace/name`, if it is there.
fn listed_workload<'a>(
    list: &'a Value,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<&'a Value> {
    list["items"].as_array()?.iter().find(|item| {
        item["kind"] == kind
            && item["metadata"]["namespace"] == namespace
            && item["metadata"]["name"] == name
    })
}

/// The addons the inventory does not want but the cluster runs (its marker workload is
/// listed), in removal order: what depends on the others first, the CNI last.
fn switched_off(ctx: &Ctx, list: &Value) -> Vec<Addon> {
    let mut off = off_but_installed(&wanted(ctx), list);
    off.reverse();
    off
}

fn off_but_installed(wanted: &[Addon], list: &Value) -> Vec<Addon> {
    ALL.into_iter()
        .filter(|a| {
            let (kind, namespace, name) = a.marker();
            !wanted.contains(a) && listed_workload(list, kind, namespace, name).is_some()
        })
        .collect()
}

fn kept_message(addon: Addon) -> String {
    format!(
        "{} is off in the inventory but installed: left as it is (`--prune` removes it)",
        addon.name()
    )
}

/// Deletes what the installer applied for `addon`, newest first: its rendered objects (a
/// CephCluster before the operator that must finalize it), then the upstream manifests in
/// reverse order. Only files the installer itself fetched are used; nothing on disks is wiped.
async fn remove(
    ctx: &mut Ctx,
    catalog: &Catalog,
    leader: &Host,
    addon: Addon,
) -> Result<(), String> {
    let release = release_of(ctx, catalog, addon)?;
    let (_, cached) = fetch_list(ctx, &release);
    let mut paths: Vec<String> = addon
        .rendered()
        .iter()
        .map(|f| format!("{RENDERED}/{f}"))
        .collect();
    paths.extend(cached.into_iter().rev());
    run_playbook(ctx, "addons-remove", leader, &json!({ "paths": paths })).await?;
    ctx.reporter
        .info(format!("{} removed (--prune)", addon.name()));
    Ok(())
}

/// One file to fetch: where from, what it must hash to, where it lands on the master.
#[derive(Debug, Serialize)]
struct Fetch {
    source: String,
    sha256: String,
    dest: String,
}

/// The files of a release to fetch, and where each lands in the leader's cache.
fn fetch_list(ctx: &Ctx, release: &Release) -> (Vec<Fetch>, Vec<String>) {
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
    (files, paths)
}

/// Fetches (or verifies the cached copies of) every release's files in one run on the
/// leader; the cached paths, per release.
async fn fetch(
    ctx: &mut Ctx,
    leader: &Host,
    releases: &[(Addon, Release)],
) -> Result<Vec<Vec<String>>, String> {
    let mut files = Vec::new();
    let mut paths = Vec::new();
    for (_, release) in releases {
        let (f, p) = fetch_list(ctx, release);
        files.extend(f);
        paths.push(p);
    }
    run_playbook(ctx, "addons-fetch", leader, &json!({ "files": files })).await?;
    Ok(paths)
}

/// One manifest the addon applies: a cached upstream file as it is (`content: None`), or what
/// the installer renders, written to `path` first. `after_ready`: applied once the addon's
/// own objects are ready (a CephCluster needs the operator).
#[derive(Debug)]
struct Manifest {
    path: String,
    content: Option<String>,
    after_ready: bool,
}

impl Manifest {
    fn rendered(name: &str, content: String) -> Manifest {
        Manifest {
            path: format!("{RENDERED}/{name}"),
            content: Some(content),
            after_ready: false,
        }
    }
}

/// Every manifest of the addon, in the order they are applied, from its cached (verified)
/// files: the same for `up` and for `plan`.
async fn manifests(
    ctx: &Ctx,
    leader: &Host,
    addon: Addon,
    release: &Release,
    cached: &[String],
) -> Result<Vec<Manifest>, String> {
    let mut out = Vec::new();
    match addon {
        Addon::Weave => {
            let secret = match weave_password_secret(ctx)? {
                Some(secret) => {
                    out.push(Manifest::rendered("weave-secret.json", secret));
                    Some(WEAVE_SECRET)
                }
                None => None,
            };
            let text = read(ctx, leader, &cached[0]).await?;
            let pods = ctx.inventory.cluster.network.pods.to_string();
            out.push(Manifest::rendered(
                "weave.json",
                addons::weave(&text, &pods, secret)?,
            ));
        }
        Addon::Rook => {
            out.extend(cached.iter().map(|path| Manifest {
                path: path.clone(),
                content: None,
                after_ready: false,
            }));
            let nodes = rook_nodes(ctx);
            if !nodes.is_empty() {
                let image = release
                    .ceph_image
                    .clone()
                    .ok_or("no cephImage pinned for this release")?;
                let mut cluster =
                    Manifest::rendered("rook-cluster.json", addons::rook_cluster(&nodes, &image));
                cluster.after_ready = true;
                out.push(cluster);
            }
        }
        Addon::Dashboard(_) => {
            let text = read(ctx, leader, &cached[0]).await?;
            let manifest = match &release.image {
                Some(image) => addons::headlamp(&text, image)?,
                None => text,
            };
            out.push(Manifest::rendered("dashboard.yaml", manifest));
            if ctx.inventory.addons.dashboard.admin {
                out.push(Manifest::rendered(
                    "dashboard-admin.json",
                    addons::dashboard_admin(dashboard_namespace(release)),
                ));
            }
        }
    }
    Ok(out)
}

/// Headlamp (pinned image) lives in kube-system, the Kubernetes Dashboard in its own namespace.
fn dashboard_namespace(release: &Release) -> &'static str {
    if release.image.is_some() {
        "kube-system"
    } else {
        "kubernetes-dashboard"
    }
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

/// Applies the manifest at `path` on the master, or `content` written there first; whether
/// that changed anything.
async fn apply(
    ctx: &mut Ctx,
    leader: &Host,
    path: &str,
    content: Option<String>,
) -> Result<bool, String> {
    let vars = json!({ "path": path, "content": content });
    let targets = ctx.targets(&[leader], &vars);
    let reports = ctx.apply("addons-apply", targets).await?;
    Ok(reports.iter().any(|r| r.changed()))
}

/// Applies the addon's manifests, then waits until its own objects are ready (a CephCluster
/// only once the operator is).
async fn install(
    ctx: &mut Ctx,
    leader: &Host,
    addon: Addon,
    all: Vec<Manifest>,
    answers: &mut Answers,
) -> Result<(), String> {
    let (later, now): (Vec<Manifest>, Vec<Manifest>) = all.into_iter().partition(|m| m.after_ready);
    for m in now {
        if answers.settled(&m.path) {
            continue;
        }
        if apply(ctx, leader, &m.path, m.content).await? {
            answers.forget();
        }
    }
    for check in readiness(addon) {
        wait(ctx, leader, &check, answers).await?;
    }
    if addon != Addon::Rook {
        return Ok(());
    }
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
    for m in later {
        if apply(ctx, leader, &m.path, m.content).await? {
            answers.forget();
        }
    }
    report_ceph_health(ctx, leader).await;
    Ok(())
}

/// Whether kubectl's answer counts as ready (else why not).
type Judge = fn(&str) -> Result<(), String>;

/// One readiness check of an addon: what kubectl reads, and when that counts as ready.
struct Readiness {
    what: &'static str,
    args: Vec<&'static str>,
    /// The workload (kind, namespace, name) `args` reads, when it is one: its first answer
    /// comes from the phase's one listing of every DaemonSet and Deployment.
    listed: Option<(&'static str, &'static str, &'static str)>,
    judge: Judge,
    /// Where to look when it never turns ready.
    hint: &'static str,
}

const PODS_HINT: &str = "look at `kubectl get pods -A` and the pods' events";

/// What must be ready once the addon is applied, in order: Weave's pods on every node and then
/// every node Ready; Rook's CRDs established and its operator available; the dashboard.
fn readiness(addon: Addon) -> Vec<Readiness> {
    match addon {
        Addon::Weave => vec![
            workload("weave-net pods on every node", addon.marker()),
            Readiness {
                what: "the nodes",
                args: vec!["get", "nodes", "-o", "json"],
                listed: None,
                judge: nodes_ready,
                hint: "look at `kubectl describe node` (conditions) there",
            },
        ],
        Addon::Rook => vec![
            Readiness {
                what: "Rook's CRDs",
                args: vec!["get", "crd", "-o", addons::CRD_ESTABLISHED_JSONPATH],
                listed: None,
                judge: |listing| addons::crds_established(listing, ".ceph.rook.io", 1),
                hint: PODS_HINT,
            },
            workload("the Rook operator", addon.marker()),
        ],
        Addon::Dashboard(_) => vec![workload("the dashboard", addon.marker())],
    }
}

/// The readiness of one workload (kind, namespace, name): a DaemonSet's pods on every node,
/// a Deployment's replicas available.
fn workload(what: &'static str, marker: (&'static str, &'static str, &'static str)) -> Readiness {
    let (kind, namespace, name) = marker;
    let (resource, judge): (&str, Judge) = if kind == "DaemonSet" {
        ("daemonset", |out| json_ready(out, addons::daemonset_ready))
    } else {
        ("deployment", |out| {
            json_ready(out, addons::deployment_ready)
        })
    };
    Readiness {
        what,
        args: vec!["-n", namespace, "get", resource, name, "-o", "json"],
        listed: Some(marker),
        judge,
        hint: PODS_HINT,
    }
}

fn json_ready(out: &str, ready: fn(&Value) -> Result<(), String>) -> Result<(), String> {
    match serde_json::from_str::<Value>(out) {
        Ok(doc) => ready(&doc),
        Err(e) => Err(format!("unexpected answer: {e}")),
    }
}

/// With the CNI up, every node must turn Ready.
fn nodes_ready(out: &str) -> Result<(), String> {
    let list: kube::NodeList = serde_json::from_str(out)
        .map_err(|e| format!("unexpected `kubectl get nodes` output: {e}"))?;
    let not_ready: Vec<&str> = list
        .items
        .iter()
        .filter(|n| !n.ready())
        .map(|n| n.metadata.name.as_str())
        .collect();
    if not_ready.is_empty() {
        Ok(())
    } else {
        Err(format!("not Ready: {}", not_ready.join(", ")))
    }
}

/// The cluster as the phase found it, read all at once: kubectl's answers to the readiness
/// checks, and the manifests whose apply would change nothing (`addons-apply` dry-run). Both
/// stand for the cluster only until an apply changes something ([`Answers::forget`]); a held
/// answer serves its check once, and every later poll asks the cluster.
struct Answers {
    held: Vec<(Vec<&'static str>, String)>,
    /// Paths of the manifests found applied and unchanged.
    settled: Vec<String>,
}

impl Answers {
    async fn read(
        ctx: &Ctx,
        leader: &Host,
        checks: &[Readiness],
        applies: &[&Manifest],
    ) -> Answers {
        // A few at a time: each is a session on the leader's connection (sshd's MaxSessions).
        let readiness = async {
            let mut held = Vec::new();
            let unlisted: Vec<&Readiness> = checks.iter().filter(|c| c.listed.is_none()).collect();
            for chunk in unlisted.chunks(3) {
                let asked = chunk.iter().map(|c| kube::kubectl(ctx, leader, &c.args));
                let answers = futures::future::join_all(asked).await;
                for (check, answer) in chunk.iter().zip(answers) {
                    if let Ok(out) = answer {
                        held.push((check.args.clone(), out));
                    }
                }
            }
            held
        };
        let unchanged = async {
            if all_settled(ctx, leader, applies).await {
                return applies.iter().map(|m| m.path.clone()).collect();
            }
            let mut settled = Vec::new();
            for chunk in applies.chunks(3) {
                let asked = chunk.iter().map(|m| {
                    let vars = json!({ "path": m.path, "content": m.content });
                    async move { dry_run(ctx, "addons-apply", leader, &vars).await }
                });
                let answers = futures::future::join_all(asked).await;
                for (m, would_change) in chunk.iter().zip(answers) {
                    if would_change == Some(false) {
                        settled.push(m.path.clone());
                    }
                }
            }
            settled
        };
        let (held, settled) = futures::join!(readiness, unchanged);
        Answers { held, settled }
    }

    /// The first answers of the checks that read one workload, from the listing of them all.
    fn hold_listed(&mut self, checks: &[Readiness], list: &Value) {
        for check in checks {
            let Some((kind, namespace, name)) = check.listed else {
                continue;
            };
            if let Some(item) = listed_workload(list, kind, namespace, name) {
                self.held.push((check.args.clone(), item.to_string()));
            }
        }
    }

    fn take(&mut self, args: &[&'static str]) -> Option<String> {
        let i = self.held.iter().position(|(a, _)| a == args)?;
        Some(self.held.swap_remove(i).1)
    }

    fn settled(&self, path: &str) -> bool {
        self.settled.iter().any(|p| p == path)
    }

    fn forget(&mut self) {
        self.held.clear();
        self.settled.clear();
    }
}

/// Whether every manifest in `applies` is applied and unchanged, asked in one round trip with
/// one `kubectl get` (`addons-settled`): the common answer on a re-run. `false` when anything
/// is not, or the question could not be asked: each manifest is then dry-run on its own.
async fn all_settled(ctx: &Ctx, leader: &Host, applies: &[&Manifest]) -> bool {
    use sha2::{Digest, Sha256};
    if applies.is_empty() {
        return false;
    }
    let rendered: Vec<Value> = applies
        .iter()
        .filter_map(|m| {
            let content = m.content.as_ref()?;
            let sha256 = hex::encode(Sha256::digest(content.as_bytes()));
            Some(json!({ "path": m.path, "sha256": sha256 }))
        })
        .collect();
    let paths: Vec<&str> = applies.iter().map(|m| m.path.as_str()).collect();
    let vars = json!({ "rendered": rendered, "paths": paths });
    probe_text(ctx, "addons-settled", leader, &vars)
        .await
        .is_ok_and(|answer| answer.trim() == "settled")
}

/// Polls `kubectl` until `check` accepts its answer (the first one may be held in `answers`);
/// the last reason on timeout.
async fn wait(
    ctx: &Ctx,
    leader: &Host,
    check: &Readiness,
    answers: &mut Answers,
) -> Result<(), String> {
    let started = Instant::now();
    let mut pauses = poll_pauses();
    let mut held = answers.take(&check.args);
    loop {
        let answer = match held.take() {
            Some(out) => Ok(out),
            None => kube::kubectl(ctx, leader, &check.args).await,
        };
        let why = match answer {
            Ok(out) => match (check.judge)(&out) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            },
            Err(e) => e,
        };
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "{} not ready after {}s: {why}; {}",
                check.what,
                READY_TIMEOUT.as_secs(),
                check.hint
            ));
        }
        tokio::time::sleep(pauses.next().unwrap_or(POLL_MAX)).await;
    }
}

/// The Secret holding Weave's encryption password, when the inventory names one.
fn weave_password_secret(ctx: &Ctx) -> Result<Option<String>, String> {
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
    Ok(Some(secret.to_string()))
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

const POLL_MAX: Duration = Duration::from_secs(3);

/// Pauses between readiness polls: short at first (what is already ready, as on a re-run,
/// costs one short pause at most), then every 3 s.
fn poll_pauses() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(POLL_MAX)
        .without_max_times()
        .build()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_answers_serve_once_and_none_after_a_change() {
        let args = vec!["get", "nodes", "-o", "json"];
        let mut answers = Answers {
            held: vec![
                (args.clone(), "{}".into()),
                (vec!["get", "crd"], "x".into()),
            ],
            settled: vec!["/etc/kubernetes/installer/addons/weave.json".into()],
        };
        assert_eq!(answers.take(&args).as_deref(), Some("{}"));
        assert_eq!(answers.take(&args), None, "a later poll asks the cluster");
        assert!(answers.settled("/etc/kubernetes/installer/addons/weave.json"));
        answers.forget();
        assert_eq!(answers.take(&["get", "crd"]), None);
        assert!(!answers.settled("/etc/kubernetes/installer/addons/weave.json"));
    }

    #[test]
    fn nodes_are_ready_only_when_every_node_is() {
        let node = |name: &str, ready: &str| {
            json!({"metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}})
        };
        let list = |items: Vec<Value>| json!({"items": items}).to_string();
        assert!(nodes_ready(&list(vec![node("m1", "True"), node("w1", "True")])).is_ok());
        assert_eq!(
            nodes_ready(&list(vec![node("m1", "True"), node("w1", "False")])).unwrap_err(),
            "not Ready: w1"
        );
        assert!(nodes_ready("not json").is_err());
    }

    #[test]
    fn readiness_polls_start_short_and_settle_at_three_seconds() {
        let pauses: Vec<Duration> = poll_pauses().take(8).collect();
        assert_eq!(pauses[0], Duration::from_millis(250));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(pauses[7], POLL_MAX);
        // The first pauses add up to less than one old fixed 3 s pause.
        assert!(
            pauses[..3].iter().sum::<Duration>() < POLL_MAX,
            "{pauses:?}"
        );
    }

    /// A `kubectl get daemonsets,deployments -A -o json` answer listing these workloads.
    fn listing(workloads: &[(&str, &str, &str)]) -> Value {
        let items: Vec<Value> = workloads
            .iter()
            .map(|(kind, namespace, name)| {
                json!({"kind": kind, "metadata": {"namespace": namespace, "name": name}})
            })
            .collect();
        json!({"kind": "List", "items": items})
    }

    fn listed() -> Value {
        listing(&[
            ("DaemonSet", "kube-system", "kube-proxy"),
            ("DaemonSet", "kube-system", "weave-net"),
            ("Deployment", "kube-system", "coredns"),
            ("Deployment", "kube-system", "headlamp"),
            ("Deployment", "rook-ceph", "rook-ceph-operator"),
        ])
    }

    #[test]
    fn only_installed_addons_the_inventory_turned_off_are_named() {
        let wanted = [Addon::Weave, Addon::Dashboard(DashboardKind::Headlamp)];
        assert_eq!(off_but_installed(&wanted, &listed()), vec![Addon::Rook]);
        assert_eq!(off_but_installed(&ALL, &listed()), vec![]);
    }

    #[test]
    fn switching_the_dashboard_kind_turns_the_old_one_off() {
        let wanted = [
            Addon::Weave,
            Addon::Rook,
            Addon::Dashboard(DashboardKind::KubernetesDashboard),
        ];
        assert_eq!(
            off_but_installed(&wanted, &listed()),
            vec![Addon::Dashboard(DashboardKind::Headlamp)]
        );
    }

    #[test]
    fn a_workload_of_the_same_name_elsewhere_or_of_another_kind_is_not_an_addon() {
        let elsewhere = listing(&[
            ("Deployment", "default", "headlamp"),
            ("DaemonSet", "default", "weave-net"),
            ("Deployment", "kube-system", "weave-net"),
        ]);
        assert_eq!(off_but_installed(&[], &elsewhere), vec![]);
    }

    #[test]
    fn a_listed_workload_answers_its_readiness_check_as_its_own_get_would() {
        let list = listed();
        let mut answers = Answers {
            held: Vec::new(),
            settled: Vec::new(),
        };
        let checks = readiness(Addon::Rook);
        answers.hold_listed(&checks, &list);
        let operator = &checks[1];
        let held: Value = serde_json::from_str(&answers.take(&operator.args).unwrap()).unwrap();
        assert_eq!(held["metadata"]["name"], "rook-ceph-operator");
        // Rook's CRDs are not a workload: asked on their own.
        assert_eq!(answers.take(&checks[0].args), None);
    }

    fn weave(version: &str) -> Release {
        Catalog::load(&crate::playbook::Playbooks::Embedded)
            .unwrap()
            .release("weave", Some(version))
            .unwrap()
            .clone()
    }

    #[test]
    fn weave_2_8_1_needs_the_users_sha256_and_takes_it() {
        let e = pin(weave("2.8.1"), None, "Weave Net 2.8.1").unwrap_err();
        assert!(e.contains("addons.weave.sha256"), "{e}");
        assert!(
            e.contains("weaveworks/weave/releases/download/v2.8.1"),
            "{e}"
        );
        let sum = "ab".repeat(32);
        let pinned = pin(weave("2.8.1"), Some(&sum), "Weave Net 2.8.1").unwrap();
        assert_eq!(pinned.files[0].sha256, sum);
    }

    #[test]
    fn a_users_sha256_never_overrides_a_pinned_one() {
        let pinned = weave("2.9.0");
        let kept = pin(pinned.clone(), Some(&pinned.files[0].sha256), "w").unwrap();
        assert_eq!(kept.files[0].sha256, pinned.files[0].sha256);
        let e = pin(pinned, Some(&"00".repeat(32)), "Weave Net 2.9.0").unwrap_err();
        assert!(e.contains("not the pinned sha256"), "{e}");
    }

    #[test]
    fn kept_addons_are_reported_with_the_flag_that_removes_them() {
        let m = kept_message(Addon::Rook);
        assert!(m.contains("Rook-Ceph") && m.contains("--prune"), "{m}");
    }
}
