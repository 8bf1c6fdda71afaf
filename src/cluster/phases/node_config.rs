//! Labels and taints from the inventory. Masters keep the control-plane NoSchedule taint
//! unless the inventory makes them schedulable. Only differences are applied.

use crate::cluster::Ctx;
use crate::cluster::kube::{self, Node, NodeTaint};
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture, PlanFuture, PlannedStep};
use crate::inventory::{Host, Taint};
use crate::ui::{Event, TaskOutcome};

const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
const WORKER_ROLE_LABEL: &str = "node-role.kubernetes.io/worker";

pub struct NodeConfig;

impl Phase for NodeConfig {
    fn title(&self) -> &'static str {
        "Labels and taints"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let err = |m: String| PhaseError::new(self.title(), m);
            let leader = ctx.leader().map_err(err)?;
            let nodes = kube::nodes(ctx, &leader).await.map_err(err)?;
            for host in ctx.inventory.hosts.clone() {
                let Some(node) = nodes.iter().find(|n| n.metadata.name == host.name) else {
                    continue;
                };
                for args in changes(&host, node, ctx.inventory.cluster.schedulable_masters) {
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    kube::kubectl(ctx, &leader, &refs).await.map_err(err)?;
                    ctx.reporter.emit(Event::TaskFinished {
                        host: host.name.clone(),
                        task: args[..args.len() - 1].join(" "),
                        outcome: TaskOutcome::Changed,
                        elapsed_ms: 0,
                    });
                }
            }
            Ok(())
        })
    }

    fn plan<'a>(&'a self, ctx: &'a mut Ctx) -> PlanFuture<'a> {
        Box::pin(async move {
            let phase = self.title();
            let Ok(leader) = ctx.leader() else {
                return Ok(ctx
                    .inventory
                    .hosts
                    .iter()
                    .map(|h| {
                        PlannedStep::change(
                            phase,
                            &h.name,
                            "labels and taints from the inventory, once the node exists",
                        )
                    })
                    .collect());
            };
            let nodes = kube::nodes(ctx, &leader)
                .await
                .map_err(|m| PhaseError::new(phase, m))?;
            let mut steps = Vec::new();
            for host in &ctx.inventory.hosts {
                let Some(node) = nodes.iter().find(|n| n.metadata.name == host.name) else {
                    steps.push(PlannedStep::change(
                        phase,
                        &host.name,
                        "labels and taints from the inventory, once the node exists",
                    ));
                    continue;
                };
                let todo = changes(host, node, ctx.inventory.cluster.schedulable_masters);
                if todo.is_empty() {
                    steps.push(PlannedStep::skip(
                        phase,
                        &host.name,
                        "labels and taints",
                        "as the inventory says",
                    ));
                }
                for args in todo {
                    steps.push(PlannedStep::change(
                        phase,
                        &host.name,
                        format!("kubectl {}", args.join(" ")),
                    ));
                }
            }
            Ok(steps)
        })
    }
}

/// The kubectl commands that bring `node` to what the inventory says for `host`.
fn changes(host: &Host, node: &Node, schedulable_masters: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut labels = host.labels.clone();
    if host.is_worker() {
        labels.insert(WORKER_ROLE_LABEL.into(), String::new());
    }
    // kubeadm's mark-control-plane step; a join that died after its etcd learner was
    // promoted never got that far.
    if host.is_master() {
        labels.insert(CONTROL_PLANE_TAINT.into(), String::new());
    }
    for (k, v) in &labels {
        if node.metadata.labels.get(k) != Some(v) {
            out.push(vec![
                "label".into(),
                "node".into(),
                host.name.clone(),
                format!("{k}={v}"),
                "--overwrite".into(),
            ]);
        }
    }
    let mut wanted: Vec<Taint> = host.taints.clone();
    if host.is_master() && !schedulable_masters {
        wanted.push(Taint {
            key: CONTROL_PLANE_TAINT.into(),
            value: None,
            effect: crate::inventory::TaintEffect::NoSchedule,
        });
    }
    for t in &wanted {
        let present = node.spec.taints.iter().any(|n| {
            n.key == t.key
                && n.effect == t.effect.as_str()
                && n.value.as_deref().filter(|v| !v.is_empty()) == t.value.as_deref()
        });
        if !present {
            out.push(vec![
                "taint".into(),
                "node".into(),
                host.name.clone(),
                t.to_string(),
                "--overwrite".into(),
            ]);
        }
    }
    if host.is_master() && schedulable_masters {
        for n in node
            .spec
            .taints
            .iter()
            .filter(|n| n.key == CONTROL_PLANE_TAINT)
        {
            out.push(vec![
                "taint".into(),
                "node".into(),
                host.name.clone(),
                removal(n),
                "--overwrite".into(),
            ]);
        }
    }
    out
}

fn removal(t: &NodeTaint) -> String {
    format!("{}:{}-", t.key, t.effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
            "spec": {"taints": taints.iter().map(|(k, e)| serde_json::json!({"key": k, "effect": e})).collect::<Vec<_>>()},
        }))
        .unwrap()
    }

    fn host(roles: &str, labels: &[(&str, &str)], taints: &[&str]) -> Host {
        let text = format!(
            "apiVersion: installer/v1\nkind: Inventory\ncluster: {{name: c, kubernetes: 1.36.2, controlPlane: {{vip: 10.0.0.100}}}}\nssh: {{knownHosts: /tmp/kh}}\nhosts:\n  - name: n\n    address: 10.0.0.11\n    roles: [{roles}]\n    labels: {{{}}}\n    taints: [{}]\n  - {{name: m, address: 10.0.0.12, roles: [master]}}\n",
            labels
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            taints
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        crate::inventory::parse(std::path::Path::new("/x/h.yaml"), &text)
            .unwrap()
            .inventory
            .hosts
            .remove(0)
    }

    #[test]
    fn missing_labels_and_taints_are_applied_present_ones_left_alone() {
        let h = host("worker", &[("disk", "ssd")], &["dedicated=db:NoSchedule"]);
        let todo = changes(&h, &node(&[("disk", "hdd")], &[]), false);
        let flat: Vec<String> = todo.iter().map(|c| c.join(" ")).collect();
        assert!(
            flat.contains(&"label node n disk=ssd --overwrite".to_string()),
            "{flat:?}"
        );
        assert!(
            flat.contains(&"label node n node-role.kubernetes.io/worker= --overwrite".to_string()),
            "{flat:?}"
        );
        assert!(
            flat.contains(&"taint node n dedicated=db:NoSchedule --overwrite".to_string()),
            "{flat:?}"
        );
        let done = node(
            &[("disk", "ssd"), ("node-role.kubernetes.io/worker", "")],
            &[],
        );
        let mut with_taint = done.clone();
        with_taint.spec.taints.push(NodeTaint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
        });
        assert!(
            changes(&h, &with_taint, false).is_empty(),
            "a converged node needs nothing"
        );
    }

    #[test]
    fn schedulable_masters_lose_the_control_plane_taint() {
        let h = host("master", &[], &[]);
        // A master as kubeadm leaves it: the control-plane label and taint.
        let label = [(CONTROL_PLANE_TAINT, "")];
        let tainted = node(&label, &[(CONTROL_PLANE_TAINT, "NoSchedule")]);
        assert!(changes(&h, &tainted, false).is_empty());
        let todo = changes(&h, &tainted, true);
        assert_eq!(
            todo[0].join(" "),
            "taint node n node-role.kubernetes.io/control-plane:NoSchedule- --overwrite"
        );
        let bare = node(&label, &[]);
        assert_eq!(
            changes(&h, &bare, false)[0].join(" "),
            "taint node n node-role.kubernetes.io/control-plane:NoSchedule --overwrite"
        );
    }

    #[test]
    fn master_whose_join_died_before_mark_control_plane_gets_its_label() {
        let h = host("master", &[], &[]);
        let unmarked = node(&[], &[(CONTROL_PLANE_TAINT, "NoSchedule")]);
        assert_eq!(
            changes(&h, &unmarked, false)[0].join(" "),
            "label node n node-role.kubernetes.io/control-plane= --overwrite"
        );
    }
}
