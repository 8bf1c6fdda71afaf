//! Is an addon up? Each check reads the JSON `kubectl get -o json` prints and says what is
//! not ready yet, in words an operator can act on.

use serde_json::Value;

/// A DaemonSet is ready when every scheduled pod is updated and ready (and there is one).
pub fn daemonset_ready(ds: &Value) -> Result<(), String> {
    let name = ds["metadata"]["name"].as_str().unwrap_or("?");
    let s = &ds["status"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let (desired, ready, updated) = (
        n("desiredNumberScheduled"),
        n("numberReady"),
        n("updatedNumberScheduled"),
    );
    if desired == 0 {
        return Err(format!("daemonset {name}: no node runs it yet"));
    }
    if ready < desired || updated < desired {
        return Err(format!(
            "daemonset {name}: {ready} of {desired} pods ready ({updated} updated)"
        ));
    }
    Ok(())
}

/// A Deployment is ready when its Available condition is True and all replicas are updated.
pub fn deployment_ready(d: &Value) -> Result<(), String> {
    let name = d["metadata"]["name"].as_str().unwrap_or("?");
    let want = d["spec"]["replicas"].as_u64().unwrap_or(1);
    let s = &d["status"];
    let available = s["availableReplicas"].as_u64().unwrap_or(0);
    let updated = s["updatedReplicas"].as_u64().unwrap_or(0);
    let condition = s["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available");
    match condition {
        Some(c) if c["status"] == "True" && available >= want && updated >= want => Ok(()),
        Some(c) => Err(format!(
            "deployment {name}: {available} of {want} available ({})",
            c["message"].as_str().unwrap_or("no message")
        )),
        None => Err(format!(
            "deployment {name}: {available} of {want} available"
        )),
    }
}

/// The `kubectl get crd` output format [`crds_established`] reads: one line per CRD, its name
/// and the status of its Established condition (empty when it has none yet). The whole list
/// as JSON carries every schema: megabytes for Rook, on every poll.
pub const CRD_ESTABLISHED_JSONPATH: &str = r#"jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Established")].status}{"\n"}{end}"#;

/// At least EXPECTED CRDs named `*SUFFIX` exist and every one of them is Established, from
/// `kubectl get crd -o` [`CRD_ESTABLISHED_JSONPATH`].
pub fn crds_established(listing: &str, suffix: &str, expected: usize) -> Result<(), String> {
    let crds: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?, words.next().unwrap_or("")))
        })
        .filter(|(name, _)| name.ends_with(suffix))
        .collect();
    let waiting: Vec<&str> = crds
        .iter()
        .filter(|(_, established)| *established != "True")
        .map(|(name, _)| *name)
        .collect();
    if crds.len() < expected {
        return Err(format!("{} of {expected} *{suffix} CRDs exist", crds.len()));
    }
    if !waiting.is_empty() {
        return Err(format!("CRDs not established: {}", waiting.join(", ")));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CephHealth {
    /// The operator has not reported yet (no status on the CephCluster).
    Pending(String),
    Ok,
    Warn(Vec<String>),
    Err(Vec<String>),
}

/// The health the operator reports on the CephCluster (`status.ceph`), with the checks
/// behind a warning or error.
pub fn ceph_health(cluster: &Value) -> CephHealth {
    let status = &cluster["status"];
    let Some(health) = status["ceph"]["health"].as_str() else {
        let phase = status["phase"].as_str().unwrap_or("no status yet");
        let message = status["message"].as_str().unwrap_or("");
        return CephHealth::Pending(format!("{phase} {message}").trim().to_string());
    };
    let details: Vec<String> = status["ceph"]["details"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(check, d)| format!("{check}: {}", d["message"].as_str().unwrap_or("")))
        .collect();
    match health {
        "HEALTH_OK" => CephHealth::Ok,
        "HEALTH_WARN" => CephHealth::Warn(details),
        _ => CephHealth::Err(details),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn daemonset_waits_for_every_node() {
        let ds = json!({"metadata": {"name": "weave-net"}, "status": {"desiredNumberScheduled": 5, "numberReady": 3, "updatedNumberScheduled": 5}});
        assert_eq!(
            daemonset_ready(&ds).unwrap_err(),
            "daemonset weave-net: 3 of 5 pods ready (5 updated)"
        );
        let ds = json!({"metadata": {"name": "weave-net"}, "status": {"desiredNumberScheduled": 5, "numberReady": 5, "updatedNumberScheduled": 5}});
        assert!(daemonset_ready(&ds).is_ok());
        assert!(daemonset_ready(&json!({"metadata": {"name": "x"}, "status": {}})).is_err());
    }

    #[test]
    fn deployment_needs_available_condition() {
        let d = json!({"metadata": {"name": "headlamp"}, "spec": {"replicas": 1},
            "status": {"availableReplicas": 0, "updatedReplicas": 1,
                       "conditions": [{"type": "Available", "status": "False", "message": "Deployment does not have minimum availability."}]}});
        assert!(
            deployment_ready(&d)
                .unwrap_err()
                .contains("minimum availability")
        );
        let d = json!({"metadata": {"name": "headlamp"}, "spec": {"replicas": 1},
            "status": {"availableReplicas": 1, "updatedReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}});
        assert!(deployment_ready(&d).is_ok());
    }

    #[test]
    fn crds_must_all_exist_and_be_established() {
        // As kubectl prints it (read off the lab): a CRD with no Established condition yet
        // has nothing after its name.
        let list =
            "cephclusters.ceph.rook.io True\ncephblockpools.ceph.rook.io \nother.example.com \n";
        assert_eq!(
            crds_established(list, ".ceph.rook.io", 2).unwrap_err(),
            "CRDs not established: cephblockpools.ceph.rook.io"
        );
        assert!(
            crds_established(list, ".ceph.rook.io", 3)
                .unwrap_err()
                .contains("2 of 3")
        );
    }

    /// Shaped like the status Rook v1.20 writes on a CephCluster (`kubectl get cephcluster -o json`).
    #[test]
    fn ceph_health_reads_the_operators_status() {
        let warn = json!({"status": {"phase": "Ready", "state": "Created", "ceph": {
            "health": "HEALTH_WARN", "lastChecked": "2026-11-30T10:00:00Z", "fsid": "4e4c",
            "details": {"TOO_FEW_OSDS": {"message": "OSD count 1 < osd_pool_default_size 3", "severity": "HEALTH_WARN"}},
            "capacity": {"bytesAvailable": 10737418240u64, "bytesTotal": 10737418240u64}}}});
        assert_eq!(
            ceph_health(&warn),
            CephHealth::Warn(vec![
                "TOO_FEW_OSDS: OSD count 1 < osd_pool_default_size 3".into()
            ])
        );
        let ok = json!({"status": {"phase": "Ready", "ceph": {"health": "HEALTH_OK"}}});
        assert_eq!(ceph_health(&ok), CephHealth::Ok);
        let pending =
            json!({"status": {"phase": "Progressing", "message": "Configuring Ceph Mons"}});
        assert_eq!(
            ceph_health(&pending),
            CephHealth::Pending("Progressing Configuring Ceph Mons".into())
        );
        assert!(matches!(ceph_health(&json!({})), CephHealth::Pending(_)));
    }
}
