//! Between trusting both CAs and signing with the new one: pods read the CA of their
//! service-account volume (`kube-root-ca.crt`) only when they start, and would not trust API
//! servers that present certificates of the new CA. Once the controller-manager has published
//! both CAs in every namespace, every Deployment, DaemonSet and StatefulSet is restarted
//! (`kubectl rollout restart`, each at its own pace and strategy), as Kubernetes' manual CA
//! rotation asks.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Ctx;
use crate::cluster::ca_rotation::{Rotation, interrupted, next_dir};
use crate::cluster::kube::kubectl;
use crate::cluster::phase::{Phase, PhaseFuture, PlanFuture, PlannedStep};
use crate::pki::CaKind;

pub struct RestartWorkloads;

/// Marks, in the rotation's state directory, that the workloads were restarted.
const DONE: &str = "workloads-restarted";

/// How long the controller-manager may take to publish the bundle in every namespace.
const PUBLISH: Duration = Duration::from_secs(180);

impl Phase for RestartWorkloads {
    fn title(&self) -> &'static str {
        "CA rotation: restart workloads"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| interrupted(self.title(), m);
            let done = next_dir(ctx).join(DONE);
            if done.exists() {
                return Ok(());
            }
            let rotation = Rotation::load(ctx)
                .map_err(err)?
                .ok_or_else(|| err("no CA rotation in progress".into()))?;
            let leader = ctx.leader().map_err(err)?;
            let new_ca = rotation
                .next
                .cert_pem(CaKind::Kubernetes)
                .trim()
                .to_string();
            let start = Instant::now();
            loop {
                let text = kubectl(
                    ctx,
                    &leader,
                    &[
                        "get",
                        "configmaps",
                        "--all-namespaces",
                        "--field-selector",
                        "metadata.name=kube-root-ca.crt",
                        "-o",
                        "json",
                    ],
                )
                .await
                .map_err(err)?;
                let stale = stale_namespaces(&text, &new_ca).map_err(err)?;
                if stale.is_empty() {
                    break;
                }
                if start.elapsed() > PUBLISH {
                    return Err(err(format!(
                        "kube-root-ca.crt in {} still lacks the new CA {} s after the controller-managers restarted with both (kubectl -n kube-system logs of kube-controller-manager)",
                        stale.join(", "),
                        PUBLISH.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let listed = kubectl(
                ctx,
                &leader,
                &[
                    "get",
                    "deployments,daemonsets,statefulsets",
                    "--all-namespaces",
                    "-o",
                    "json",
                ],
            )
            .await
            .map_err(err)?;
            let groups = workloads_by_namespace(&listed).map_err(err)?;
            let count: usize = groups
                .iter()
                .map(|g| g["names"].as_array().map_or(0, Vec::len))
                .sum();
            let vars = json!({"step": "workloads", "workloads": groups});
            let targets = ctx.targets(&[&leader], &vars);
            ctx.apply("ca-rotation", targets).await.map_err(err)?;
            crate::local_fs::write_atomic(&done, b"", 0o600)
                .map_err(|e| err(format!("cannot write {}: {e}", done.display())))?;
            ctx.reporter.info(format!(
                "{count} workloads restarted so their pods trust both CAs; restart pods that no controller owns yourself"
            ));
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let step = "wait until kube-root-ca.crt holds both CAs in every namespace; kubectl rollout restart every Deployment, DaemonSet and StatefulSet";
            Ok(vec![if next_dir(ctx).join(DONE).exists() {
                PlannedStep::skip(self.title(), "-", step, "done")
            } else {
                PlannedStep::change(self.title(), "-", step)
            }])
        })
    }
}

/// Namespaces whose kube-root-ca.crt does not yet hold `new_ca`.
fn stale_namespaces(list: &str, new_ca: &str) -> Result<Vec<String>, String> {
    let list: Value =
        serde_json::from_str(list).map_err(|e| format!("kubectl answered no JSON: {e}"))?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cm| !cm["data"]["ca.crt"].as_str().unwrap_or("").contains(new_ca))
        .map(|cm| {
            cm["metadata"]["namespace"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect())
}

/// `[{namespace, names: ["deployment/x", ...]}]`, one entry per namespace.
fn workloads_by_namespace(list: &str) -> Result<Vec<Value>, String> {
    let list: Value =
        serde_json::from_str(list).map_err(|e| format!("kubectl answered no JSON: {e}"))?;
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for item in list["items"].as_array().into_iter().flatten() {
        let kind = item["kind"].as_str().unwrap_or_default().to_lowercase();
        let ns = item["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        if !kind.is_empty() && !name.is_empty() {
            groups
                .entry(ns.to_string())
                .or_default()
                .push(format!("{kind}/{name}"));
        }
    }
    Ok(groups
        .into_iter()
        .map(|(ns, names)| json!({"namespace": ns, "names": names}))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_whose_root_ca_lacks_the_new_ca_is_stale() {
        let list = json!({"items": [
            {"metadata": {"namespace": "a"}, "data": {"ca.crt": "OLD\nNEW\n"}},
            {"metadata": {"namespace": "b"}, "data": {"ca.crt": "OLD\n"}},
            {"metadata": {"namespace": "c"}},
        ]})
        .to_string();
        assert_eq!(stale_namespaces(&list, "NEW").unwrap(), ["b", "c"]);
    }

    #[test]
    fn workloads_are_grouped_by_namespace_as_kind_slash_name() {
        let list = json!({"items": [
            {"kind": "Deployment", "metadata": {"namespace": "kube-system", "name": "coredns"}},
            {"kind": "DaemonSet", "metadata": {"namespace": "kube-system", "name": "kube-proxy"}},
            {"kind": "StatefulSet", "metadata": {"namespace": "db", "name": "pg"}},
        ]})
        .to_string();
        assert_eq!(
            workloads_by_namespace(&list).unwrap(),
            vec![
                json!({"namespace": "db", "names": ["statefulset/pg"]}),
                json!({"namespace": "kube-system", "names": ["deployment/coredns", "daemonset/kube-proxy"]}),
            ]
        );
    }
}
