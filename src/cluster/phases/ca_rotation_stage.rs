//! One stage of the rotation of the cluster's CAs on every host: each master in turn, out of
//! haproxy's rotation (its files, its control plane restarted, its kubelet), then the
//! workers' kubelets. A kubelet counts as done once its node's Lease is renewed after its
//! restart: it reached the API with its certificate and trusted the API server's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{api_backend, static_pods};
use crate::cluster::Ctx;
use crate::cluster::ca_rotation::{HostMarks, Marks, Rotation, Stage, interrupted};
use crate::cluster::kube::kubectl;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::cluster::probe::probe_text_many;
use crate::inventory::Host;

pub struct CaRotationStage(pub Stage);

/// How long a restarted kubelet may take to renew its node's Lease (it renews every 10 s).
const LEASE_RENEWAL: Duration = Duration::from_secs(120);

impl CaRotationStage {
    fn what(&self) -> (&'static str, &'static str) {
        match self.0 {
            Stage::Trust => (
                "trust the new CAs beside the old (ca.crt, front-proxy-ca.crt, etcd/ca.crt: old + new; the old ones still sign)",
                "kubelet.conf and the kubelet's client CA trust old + new; restart the kubelet",
            ),
            Stage::Sign => (
                "sign with the new CAs (their keys replaced, certificates: new + old), kubeadm certs renew all",
                "a client certificate signed by the new CA; restart the kubelet",
            ),
            Stage::Drop => (
                "trust the new CAs alone (the controller-manager signs with ca.crt again)",
                "kubelet.conf and the kubelet's client CA trust the new CA alone; restart the kubelet",
            ),
        }
    }
}

impl Phase for CaRotationStage {
    fn title(&self) -> &'static str {
        match self.0 {
            Stage::Trust => "CA rotation: trust old and new",
            Stage::Sign => "CA rotation: sign with the new CAs",
            Stage::Drop => "CA rotation: drop the old CAs",
        }
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let title = self.title();
            let err = |m: String| interrupted(title, m);
            let rotation = Rotation::load(ctx)
                .map_err(|m| PhaseError::new(title, m))?
                .ok_or_else(|| PhaseError::new(title, "no CA rotation in progress"))?;
            let stage = self.0;
            if stage == Stage::Sign {
                for kind in crate::pki::CaKind::ALL {
                    ctx.reporter
                        .redactor()
                        .add_secret(rotation.next.key_pem(kind));
                }
            }
            let marks = read_marks(ctx, &rotation).await.map_err(err)?;
            let masters: Vec<Host> = ctx.usable(Host::is_master).cloned().collect();
            for master in &masters {
                let mark = marks.get(&master.name).cloned().unwrap_or_default();
                if mark.control_plane >= Some(stage) && mark.kubelet >= Some(stage) {
                    continue;
                }
                let on = |m: String| err(format!("{}: {m}", master.name));
                // Out of haproxy's rotation (and etcd's leadership moved away) for the whole
                // visit: should the kubelet's restart take the static pods down with it (the
                // lab's kubelet does), no client of the VIP meets them restarting.
                api_backend::drain(ctx, master).await.map_err(on)?;
                if mark.control_plane < Some(stage) {
                    let targets = ctx.targets(&[master], &rotation.vars(stage, "control-plane"));
                    ctx.apply("ca-rotation", targets).await.map_err(on)?;
                    static_pods::restart_drained(ctx, master)
                        .await
                        .map_err(on)?;
                    let targets =
                        ctx.targets(&[master], &rotation.vars(stage, "control-plane-done"));
                    ctx.apply("ca-rotation", targets).await.map_err(on)?;
                    ctx.reporter
                        .host_info(&master.name, "control plane restarted and healthy");
                }
                if mark.kubelet < Some(stage) {
                    restart_kubelets(ctx, &rotation, stage, &[master])
                        .await
                        .map_err(err)?;
                }
                api_backend::restore(ctx).await.map_err(on)?;
            }
            // A master an interrupted run left drained and this run skips (done) goes back.
            api_backend::restore(ctx).await.map_err(err)?;
            let workers: Vec<Host> = ctx
                .usable(|h| !h.is_master())
                .filter(|w| marks.get(&w.name).cloned().unwrap_or_default().kubelet < Some(stage))
                .cloned()
                .collect();
            let refs: Vec<&Host> = workers.iter().collect();
            restart_kubelets(ctx, &rotation, stage, &refs)
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let title = self.title();
            let (control_plane, kubelet) = self.what();
            let marks = match Rotation::load(ctx).map_err(|m| PhaseError::new(title, m))? {
                Some(rotation) => read_marks(ctx, &rotation)
                    .await
                    .map_err(|m| PhaseError::new(title, m))?,
                None => HostMarks::new(),
            };
            let mut steps = Vec::new();
            let ordered = ctx
                .inventory
                .masters()
                .chain(ctx.inventory.hosts.iter().filter(|h| !h.is_master()));
            for host in ordered {
                let mark = marks.get(&host.name).cloned().unwrap_or_default();
                if host.is_master() {
                    let step = format!(
                        "{control_plane}; restart the control plane out of haproxy's rotation, wait until healthy"
                    );
                    steps.push(if mark.control_plane >= Some(self.0) {
                        PlannedStep::skip(title, &host.name, step, "done")
                    } else {
                        PlannedStep::change(title, &host.name, step)
                    });
                }
                steps.push(if mark.kubelet >= Some(self.0) {
                    PlannedStep::skip(title, &host.name, kubelet, "done")
                } else {
                    PlannedStep::change(title, &host.name, kubelet)
                });
            }
            Ok(steps)
        })
    }
}

/// Every usable host's record of this rotation.
async fn read_marks(ctx: &Ctx, rotation: &Rotation) -> Result<HostMarks, String> {
    let hosts: Vec<&Host> = ctx.usable(|_| true).collect();
    let mut marks = HostMarks::new();
    for (host, answer) in probe_text_many(ctx, "ca-rotation-read", &hosts, &json!({})).await {
        let text = answer.map_err(|e| format!("{host}: cannot read its rotation stage: {e}"))?;
        marks.insert(host, Marks::parse(&text, &rotation.fingerprint));
    }
    Ok(marks)
}

/// Lays down the kubelet's part of `stage` on `hosts`, restarts their kubelets and waits
/// until each node's Lease is renewed.
async fn restart_kubelets(
    ctx: &mut Ctx,
    rotation: &Rotation,
    stage: Stage,
    hosts: &[&Host],
) -> Result<(), String> {
    if hosts.is_empty() {
        return Ok(());
    }
    let leader = ctx.leader()?;
    let before = lease_renewals(ctx, &leader).await?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let mut targets = Vec::new();
    for host in hosts {
        let mut vars = rotation.vars(stage, "kubelet");
        vars["control_plane"] = json!(host.is_master());
        vars["stamp"] = json!(stamp);
        if stage == Stage::Sign {
            let pem = rotation
                .next
                .kubelet_client_pem(&host.name)
                .map_err(|e| e.to_string())?;
            // The key is the file's last PEM block.
            if let Some(key) = pem.rfind("-----BEGIN") {
                ctx.reporter.redactor().add_secret(&pem[key..]);
            }
            vars["kubelet_client"] = json!(pem.as_str());
        }
        targets.extend(ctx.targets(&[host], &vars));
    }
    ctx.apply("ca-rotation", targets).await?;
    let start = Instant::now();
    loop {
        let now = lease_renewals(ctx, &leader).await?;
        let waiting: Vec<&str> = hosts
            .iter()
            .map(|h| h.name.as_str())
            .filter(|n| !now.contains_key(*n) || now.get(*n) == before.get(*n))
            .collect();
        if waiting.is_empty() {
            for host in hosts {
                ctx.reporter
                    .host_info(&host.name, "kubelet restarted; its node's Lease renewed");
            }
            return Ok(());
        }
        if start.elapsed() > LEASE_RENEWAL {
            return Err(format!(
                "the kubelet of {} did not renew its node's Lease within {} s of its restart: it cannot reach the API with its certificate or does not trust the API server's (journalctl -u kubelet on that host)",
                waiting.join(", "),
                LEASE_RENEWAL.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// renewTime of every node Lease, by node name.
async fn lease_renewals(ctx: &Ctx, leader: &Host) -> Result<BTreeMap<String, String>, String> {
    let text = kubectl(
        ctx,
        leader,
        &[
            "get",
            "leases",
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.renewTime}{\"\\n\"}{end}",
        ],
    )
    .await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect())
}
