//! Deployment arithmetic the controller-manager uses (pkg/controller/deployment/util).

use serde_json::Value;

use crate::special::int_or_percent;

/// How many pods of a Deployment may be unavailable while it still counts as Available
/// (`deploymentutil.MaxUnavailable`): 0 for Recreate or no replicas; for RollingUpdate
/// (the default) `maxUnavailable` (default 25%) rounded down and `maxSurge` (default 25%)
/// rounded up against the replicas, `ResolveFenceposts` turning 0/0 into 0/1, capped at the
/// replicas.
pub fn max_unavailable(d: &Value) -> i64 {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let strategy = &d["spec"]["strategy"];
    if strategy["type"].as_str().unwrap_or("RollingUpdate") != "RollingUpdate" || replicas == 0 {
        return 0;
    }
    let field = |name: &str, round_up: bool| {
        let v = &strategy["rollingUpdate"][name];
        if v.is_null() {
            int_or_percent(&Value::String("25%".into()), replicas, round_up)
        } else {
            int_or_percent(v, replicas, round_up)
        }
        .unwrap_or(0)
    };
    let surge = field("maxSurge", true);
    let mut unavailable = field("maxUnavailable", false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    unavailable.min(replicas)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_replica_must_be_available() {
        // Headlamp, the Rook operator: replicas 1, default strategy.
        assert_eq!(max_unavailable(&json!({"spec": {"replicas": 1}})), 0);
    }

    #[test]
    fn defaults_round_down_and_fenceposts_resolve() {
        assert_eq!(max_unavailable(&json!({"spec": {"replicas": 4}})), 1);
        assert_eq!(max_unavailable(&json!({"spec": {"replicas": 10}})), 2);
        let zero = json!({"spec": {"replicas": 3, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(max_unavailable(&zero), 1);
        let recreate = json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}});
        assert_eq!(max_unavailable(&recreate), 0);
        let many =
            json!({"spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxUnavailable": 5}}}});
        assert_eq!(max_unavailable(&many), 2);
    }
}
