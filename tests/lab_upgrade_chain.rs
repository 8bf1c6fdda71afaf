//! A chained upgrade on the lab (lab `chain`, 1 master + 1 worker, containerd): `up` at
//! 1.35.4, `plan upgrade --to 1.37.1` shows two steps (1.36's latest patch, then 1.37.1) and
//! changes nothing, then `upgrade --to 1.37.1` walks both steps and leaves every node, package
//! and static pod at 1.37.1 — one minor at a time, as kubeadm's skew rules demand.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use cluster::{lay_cni_config, nodes, ok, states, wait_until};
use lab::{Lab, write_inventory};

const FROM: &str = "1.35.4";
const VIA: &str = "1.36.2";
const TO: &str = "1.37.1";
const HOSTS: [&str; 2] = ["master-1", "worker-1"];

#[test]
fn a_two_minor_upgrade_is_planned_as_two_steps_and_walks_them() {
    let Some(lab) = Lab::up_or_skip("chain", 1, 1) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(&lab, tmp.path(), "containerd", &HOSTS);
    let text = std::fs::read_to_string(&inv).unwrap();
    let at_from = text.replace(
        &format!("kubernetes: {VIA}"),
        &format!("kubernetes: {FROM}"),
    );
    assert_ne!(text, at_from, "the lab inventory is expected at {VIA}");
    std::fs::write(&inv, at_from).unwrap();
    let inv_s = inv.to_str().unwrap();
    let kubeconfig = tmp.path().join(".installer/lab/kubeconfig");

    eprintln!("step 1: up at {FROM}");
    ok(&["up", "-i", inv_s]);
    lay_cni_config(&lab, &HOSTS);
    wait_until("every node Ready", Duration::from_secs(120), || {
        let n = nodes(&kubeconfig);
        n.len() == HOSTS.len() && n.iter().all(|(_, _, ready, _)| *ready)
    });

    eprintln!("step 2: plan upgrade --to {TO} shows both steps and changes nothing");
    let before = states(&lab, &HOSTS);
    let planned = ok(&["plan", "upgrade", "-i", inv_s, "--to", TO]);
    for want in [
        &format!("upgrade in 2 step(s): {VIA} → {TO}"),
        &format!("[{VIA}] kubeadm upgrade plan v{VIA}, kubeadm upgrade apply v{VIA}"),
        &format!("[{TO}] kubeadm upgrade plan v{TO}, kubeadm upgrade apply v{TO}"),
        "Nothing was changed.",
    ] {
        assert!(planned.contains(want), "plan lacks {want:?}:\n{planned}");
    }
    assert_eq!(before, states(&lab, &HOSTS), "plan changed a host");

    eprintln!("step 3: upgrade --to {TO} walks {VIA}, then {TO}");
    let started = Instant::now();
    let text = ok(&["upgrade", "-i", inv_s, "--to", TO]);
    eprintln!(
        "figure: upgrade {FROM} -> {VIA} -> {TO} on 1+1 took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let first = text
        .find(&format!("step: Kubernetes {VIA}"))
        .unwrap_or_else(|| panic!("no {VIA} step:\n{text}"));
    let second = text
        .find(&format!("step: Kubernetes {TO}"))
        .unwrap_or_else(|| panic!("no {TO} step:\n{text}"));
    assert!(first < second, "{VIA} must come before {TO}:\n{text}");
    let n = nodes(&kubeconfig);
    assert!(
        n.iter()
            .all(|(_, v, ready, _)| v == &format!("v{TO}") && *ready),
        "every node Ready at v{TO}: {n:?}"
    );
    for h in HOSTS {
        let versions = lab.exec_ok(
            h,
            "dpkg-query -W -f='${Package} ${Version}\\n' kubelet kubeadm kubectl",
        );
        for line in versions.lines() {
            assert!(line.contains(&format!(" {TO}-")), "{h}: {line}");
        }
        assert_eq!(
            lab.exec_ok(h, "apt-mark showhold kubelet kubeadm kubectl | wc -l")
                .trim(),
            "3",
            "{h}: the kube packages are held again"
        );
    }
    let manifest = lab.exec_ok(
        "master-1",
        "sudo grep -h 'image:' /etc/kubernetes/manifests/kube-apiserver.yaml",
    );
    assert!(manifest.contains(&format!("v{TO}")), "{manifest}");

    eprintln!("step 4: upgrading again changes nothing");
    let again = ok(&["upgrade", "-i", inv_s, "--to", TO]);
    assert!(
        !again.contains("changed  "),
        "a second upgrade changed something:\n{again}"
    );
}
