//! `installer upgrade` end to end on the lab (lab `upg`, 3 masters + 2 workers, containerd):
//! up at 1.36.2, an unsafe upgrade refused with nothing changed, `plan upgrade` changing
//! nothing, the upgrade to 1.37.1 while a thread samples the API through the VIP every 100 ms
//! (not one sample may fail),
//! then every node, static pod and package at 1.37.1 and held, a second run changing nothing,
//! `up` refusing the old inventory and, with the new one, changing only containerd's pause
//! image (then nothing on the run after).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/lab.rs"]
mod lab;
#[path = "support/vip_poller.rs"]
mod vip_poller;

use std::time::{Duration, Instant};

use cluster::{installer, lay_cni_config, nodes, ok, wait_until};
use lab::{Lab, all_output, write_inventory};
use vip_poller::VipPoller;

const FROM: &str = "1.36.2";
const TO: &str = "1.37.1";
const HOSTS: [&str; 5] = ["master-1", "master-2", "master-3", "worker-1", "worker-2"];
const MASTERS: [&str; 3] = ["master-1", "master-2", "master-3"];

#[test]
fn upgrade_from_1_36_to_1_37_keeps_the_api_up_and_converges() {
    let Some((lab, _serial)) = Lab::shared("upg", 3, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = write_inventory(lab, tmp.path(), "containerd", &HOSTS);
    let inv_s = inv.to_str().unwrap();
    let kubeconfig = tmp.path().join(".installer/lab/kubeconfig");
    assert!(
        std::fs::read_to_string(&inv)
            .unwrap()
            .contains(&format!("kubernetes: {FROM}")),
        "the lab inventory is expected at {FROM}"
    );

    eprintln!("step 1: up at {FROM}");
    let started = Instant::now();
    ok(&["up", "-i", inv_s]);
    eprintln!(
        "figure: up at {FROM} on 3+2 took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    lay_cni_config(lab, &HOSTS);
    wait_until("every node Ready", Duration::from_secs(120), || {
        let n = nodes(&kubeconfig);
        n.len() == HOSTS.len() && n.iter().all(|(_, _, ready, _)| *ready)
    });

    eprintln!("step 2: unsafe upgrades are refused and change nothing");
    let before = cluster::states(lab, &HOSTS);
    let out = installer(&["upgrade", "-i", inv_s, "--to", "1.36.1"]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("newer than --to 1.36.1: downgrades are not supported"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    let out = installer(&["upgrade", "-i", inv_s, "--to", "1.38.0"]);
    assert_eq!(out.status.code(), Some(2), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("not supported"),
        "{}",
        all_output(&out)
    );
    lab.exec_ok("worker-2", "sudo systemctl stop kubelet");
    wait_until("worker-2 NotReady", Duration::from_secs(120), || {
        nodes(&kubeconfig)
            .iter()
            .any(|(n, _, ready, _)| n == "worker-2" && !ready)
    });
    let out = installer(&["upgrade", "-i", inv_s, "--to", TO]);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("node worker-2 is not Ready"), "{text}");
    lab.exec_ok("worker-2", "sudo systemctl start kubelet");
    wait_until("worker-2 Ready again", Duration::from_secs(120), || {
        nodes(&kubeconfig).iter().all(|(_, _, ready, _)| *ready)
    });
    // A haproxy whose configuration predates the runtime socket cannot take a master out of
    // rotation: refused before any package moves, saying what to run.
    let socket = "/run/haproxy-installer.sock";
    lab.exec_ok("master-2", &format!("sudo mv {socket} {socket}.aside"));
    let out = installer(&["upgrade", "-i", inv_s, "--to", TO]);
    lab.exec_ok("master-2", &format!("sudo mv {socket}.aside {socket}"));
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "master-2",
        "has no runtime API socket",
        "run `installer up` once",
        "nothing was changed",
    ] {
        assert!(text.contains(want), "lacks {want:?}:\n{text}");
    }
    assert_eq!(
        before,
        cluster::states(lab, &HOSTS),
        "a refused upgrade changed a host"
    );

    eprintln!("step 3: plan upgrade shows the step and changes nothing");
    let planned = ok(&[
        "plan",
        "upgrade",
        "-i",
        inv_s,
        "--to",
        TO,
        "--max-unavailable",
        "2",
    ]);
    for want in [
        &format!("upgrade in 1 step(s): {TO}"),
        &format!("[{TO}] kubeadm upgrade plan v{TO}, kubeadm upgrade apply v{TO}"),
        &format!("[{TO}] kubeadm upgrade node (one master at a time) to v{TO}"),
        "[1.37.1] batch 4: drain, kubelet and kubectl 1.37.1",
        "Nothing was changed.",
    ] {
        assert!(planned.contains(want), "plan lacks {want:?}:\n{planned}");
    }
    assert_eq!(before, cluster::states(lab, &HOSTS), "plan changed a host");

    eprintln!("step 4: upgrade to {TO} while the API is sampled through the VIP");
    // A PodDisruptionBudget-free workload on the workers that the drains must move.
    let sampler = VipPoller::start_patient(kubeconfig.clone(), lab.vip());
    let started = Instant::now();
    let text = ok(&[
        "upgrade",
        "-i",
        inv_s,
        "--to",
        TO,
        "--max-unavailable",
        "2",
        "--drain-timeout",
        "120",
    ]);
    let took = started.elapsed().as_secs_f64();
    let failures = sampler.failures();
    let (samples, failed, longest) = sampler.finish();
    eprintln!("figure: upgrade {FROM} -> {TO} on 3 masters + 2 workers took {took:.0} s");
    eprintln!(
        "figure: API through the VIP during the upgrade: {samples} samples, {failed} failed, longest gap {longest:.1} s"
    );
    assert!(
        text.contains(&format!("cluster upgraded to Kubernetes {TO}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("set `cluster.kubernetes: {TO}`")),
        "{text}"
    );
    assert!(samples > 50, "too few samples: {samples}");
    // Every master is out of haproxy's rotation while its control plane or kubelet restarts:
    // no client of the VIP may see a failure (before that, 12-32 of 300-400 polls failed).
    assert_eq!(
        failed, 0,
        "{failed} of {samples} polls of the API through the VIP failed during the upgrade (longest gap {longest:.1} s):\n{failures}"
    );

    eprintln!("step 5: every node, static pod and package at {TO}, held, uncordoned");
    for (name, version, ready, unschedulable) in nodes(&kubeconfig) {
        assert_eq!(version, format!("v{TO}"), "{name}");
        assert!(
            ready && !unschedulable,
            "{name}: ready {ready}, unschedulable {unschedulable}"
        );
    }
    for m in MASTERS {
        for c in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let image = lab.exec_ok(
                m,
                &format!("sudo grep -m1 'image:' /etc/kubernetes/manifests/{c}.yaml"),
            );
            assert!(
                image.trim_end().ends_with(&format!("/{c}:v{TO}")),
                "{m}: {image}"
            );
        }
    }
    for h in HOSTS {
        for pkg in ["kubelet", "kubeadm", "kubectl"] {
            let v = lab.exec_ok(h, &format!("dpkg-query -W -f='${{Version}}' {pkg}"));
            assert!(v.starts_with(&format!("{TO}-")), "{h}: {pkg} {v}");
        }
        let held = lab.exec_ok(h, "apt-mark showhold");
        for pkg in ["kubelet", "kubeadm", "kubectl"] {
            assert!(
                held.lines().any(|l| l == pkg),
                "{h}: {pkg} not held: {held}"
            );
        }
        let list = lab.exec_ok(h, "cat /etc/apt/sources.list.d/kubernetes.list");
        assert!(list.contains("/v1.37/"), "{h}: {list}");
    }

    eprintln!("step 6: a second upgrade changes nothing");
    let after = cluster::states(lab, &HOSTS);
    let again = ok(&["upgrade", "-i", inv_s, "--to", TO]);
    assert!(again.contains("nothing changed"), "{again}");
    assert_eq!(
        after,
        cluster::states(lab, &HOSTS),
        "the second upgrade changed a host"
    );

    eprintln!("step 6b: a master an interrupted run left drained is put back by the next run");
    let haproxy = |host: &str, cmd: &str| {
        lab.exec_ok(
            host,
            &format!("echo '{cmd}' | sudo socat stdio unix-connect:/run/haproxy-installer.sock"),
        )
    };
    let master2_status = |host: &str| -> String {
        haproxy(host, "show stat")
            .lines()
            .find(|l| l.starts_with("kube-apiserver,master-2,"))
            .and_then(|l| l.split(',').nth(17))
            .unwrap_or_default()
            .to_string()
    };
    for m in MASTERS {
        haproxy(m, "set server kube-apiserver/master-2 state drain");
        assert_eq!(master2_status(m), "DRAIN", "{m}");
    }
    let again = ok(&["upgrade", "-i", inv_s, "--to", TO]);
    assert!(
        again.contains("Put API servers back into haproxy's rotation"),
        "{again}"
    );
    for m in MASTERS {
        assert_eq!(
            master2_status(m),
            "UP",
            "{m}: master-2 still out of rotation"
        );
    }

    eprintln!("step 7: up refuses the old inventory, converges with the new version");
    let out = installer(&["up", "-i", inv_s]);
    let text = all_output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("installer upgrade"), "{text}");
    let updated = std::fs::read_to_string(&inv)
        .unwrap()
        .replace(&format!("kubernetes: {FROM}"), &format!("kubernetes: {TO}"));
    std::fs::write(&inv, updated).unwrap();
    // The new minor's pause image goes into containerd's configuration (upgrade leaves the
    // runtime alone); the smoke test follows any change. Nothing else may change.
    let text = ok(&["up", "-i", inv_s]);
    for line in text.lines().filter(|l| l.contains("changed  ")) {
        assert!(
            [
                "containerd configuration",
                "Restart containerd for its new configuration",
                "Workload manifest",
                "Apply the workload",
                "Remove the workload",
                "Remove the manifest",
            ]
            .iter()
            .any(|t| line.contains(t)),
            "up after the upgrade changed more than the runtime's pause image: {line}\n{text}"
        );
    }
    let text = ok(&["up", "-i", inv_s]);
    assert!(text.contains("nothing changed"), "{text}");
}
