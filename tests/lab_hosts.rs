//! The lab's acceptance tests: its hosts behave like real servers reachable over SSH.
//! They need root (skipped otherwise) and share one small lab, taken down at exit.
//! Run: `cargo test --test lab_hosts` (as root).

#[path = "support/lab.rs"]
mod lab;

use std::collections::HashSet;
use std::time::Duration;

use lab::Lab;

const LAB: &str = "labhosts";
const MASTERS: usize = 2;
const WORKERS: usize = 2;

fn shared() -> Option<(&'static Lab, std::sync::MutexGuard<'static, ()>)> {
    Lab::shared(LAB, MASTERS, WORKERS)
}

/// A value that differs between runs, so markers never collide with earlier ones.
fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{t}", std::process::id())
}

/// True when HOST answers on TCP port 22 when asked from FROM (another lab host).
fn reaches(lab: &Lab, from: &str, to: &str) -> bool {
    let address = &lab.host(to).address;
    let probe = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/22' 2>/dev/null");
    lab.exec(from, &probe).0 == 0
}

/// Waits up to SECS for PRED, polling twice a second.
fn eventually(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if pred() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn ssh_logs_in_by_key_as_the_non_root_user_and_refuses_other_logins() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for host in lab.hosts() {
        let out = lab.exec_ok(&host.name, "id -un; id -u");
        assert_eq!(out, "ops\n1000\n", "on {}", host.name);
    }
    // Without the key there is no way in: no password or keyboard-interactive login.
    let address = &lab.host("master-1").address;
    let refused = std::process::Command::new("ssh")
        .args(lab.ssh_args())
        .args(["-o", "PubkeyAuthentication=no", "--"])
        .arg(format!("ops@{address}"))
        .arg("true")
        .output()
        .expect("ssh runs");
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // root cannot log in even with the lab key.
    let root = std::process::Command::new("ssh")
        .args(lab.ssh_args())
        .arg("--")
        .arg(format!("root@{address}"))
        .arg("true")
        .output()
        .expect("ssh runs");
    assert_eq!(root.status.code(), Some(255));
}

#[test]
fn sudo_works_without_a_password() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for host in lab.hosts() {
        assert_eq!(
            lab.exec_ok(&host.name, "sudo -n id -u"),
            "0\n",
            "on {}",
            host.name
        );
    }
}

#[test]
fn hosts_have_their_own_names_addresses_and_host_keys() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let (mut names, mut addresses, mut keys, mut machine_ids) = (
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
    );
    for host in lab.hosts() {
        let out = lab.exec_ok(
            &host.name,
            "hostname; ip -4 -o addr show dev eth0 | awk '{print $4}'; \
             cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub; cat /etc/machine-id",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "unexpected output on {}: {out}", host.name);
        assert_eq!(lines[0], host.name);
        assert_eq!(lines[1], format!("{}/24", host.address));
        names.insert(lines[0].to_string());
        addresses.insert(lines[1].to_string());
        keys.insert(lines[2].to_string());
        machine_ids.insert(lines[3].to_string());
    }
    let n = lab.hosts().len();
    assert_eq!(names.len(), n, "host names repeat: {names:?}");
    assert_eq!(addresses.len(), n, "addresses repeat: {addresses:?}");
    assert_eq!(keys.len(), n, "host keys repeat");
    assert_eq!(machine_ids.len(), n, "machine ids repeat");
    // Every key the hosts present is in the lab's known_hosts (the exec above checked it
    // strictly); a host answering with another host's key would be refused.
    let known = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts exists");
    for key in &keys {
        assert_eq!(
            known.matches(key.as_str()).count(),
            1,
            "{key} in known_hosts"
        );
    }
}

#[test]
fn a_file_written_on_one_host_is_absent_on_another() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let marker = format!("/etc/lab-marker-{}", nonce());
    lab.exec_ok(
        "master-1",
        &format!("echo hello | sudo tee {marker} >/dev/null"),
    );
    assert_eq!(lab.exec_ok("master-1", &format!("cat {marker}")), "hello\n");
    for other in ["master-2", "worker-1"] {
        let (status, _, _) = lab.exec(other, &format!("test -e {marker}"));
        assert_eq!(
            status, 1,
            "{marker} written on master-1 is visible on {other}"
        );
    }
    lab.exec_ok("master-1", &format!("sudo rm {marker}"));
}

#[test]
fn apt_installs_from_the_mirror_only() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let host = "master-2";
    // No default route: the mirror is the only package source a host can reach.
    assert_eq!(lab.exec_ok(host, "ip route show default"), "");
    lab.exec_ok(host, "sudo apt-get update -q");
    let install = "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q keepalived";
    let out = lab.exec_ok(host, install);
    assert!(
        out.contains("mirror.lab"),
        "packages did not come from the mirror: {out}"
    );
    let version = lab.exec_ok(host, "sudo keepalived --version 2>&1 | head -n 1");
    assert!(version.starts_with("Keepalived v"), "{version}");
    assert!(
        lab.exec_ok(host, "systemctl is-enabled keepalived")
            .starts_with("enabled")
    );

    let (status, _, err) = lab.exec(
        host,
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx",
    );
    assert_ne!(status, 0, "a package the mirror lacks was installed");
    assert!(
        err.contains("Unable to locate package") || err.contains("no installation candidate"),
        "unexpected apt error: {err}"
    );
}

#[test]
fn kill_makes_a_host_unreachable_and_start_brings_it_back_with_its_disk() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let host = "worker-2";
    let marker = format!("/home/ops/survives-{}", nonce());
    lab.exec_ok(host, &format!("echo kept > {marker} && sync"));
    let boot_before = lab.exec_ok(host, "cut -d' ' -f22 /proc/1/stat");

    lab.kill(host).expect("kill");
    let (status, _, _) = lab.exec(host, "true");
    assert_eq!(status, 255, "{host} still answers after kill");
    assert!(
        !reaches(lab, "master-1", host),
        "{host} reachable after kill"
    );

    lab.start(host).expect("start");
    assert_eq!(lab.exec_ok(host, &format!("cat {marker}")), "kept\n");
    let boot_after = lab.exec_ok(host, "cut -d' ' -f22 /proc/1/stat");
    assert_ne!(boot_before, boot_after, "{host} was not rebooted");
    lab.exec_ok(host, &format!("rm {marker}"));
}

#[test]
fn partition_cuts_a_host_off_from_the_others_and_heal_restores_it() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let host = "worker-1";
    for other in ["master-1", "master-2"] {
        assert!(
            reaches(lab, other, host),
            "{other} cannot reach {host} before the partition"
        );
    }

    lab.partition(host).expect("partition");
    for other in ["master-1", "master-2"] {
        assert!(!reaches(lab, other, host), "{other} still reaches {host}");
    }
    let (status, _, _) = lab.exec(host, "true");
    assert_eq!(status, 255, "{host} answers ssh while partitioned");
    // The others still see each other: only the partitioned host is cut off.
    assert!(reaches(lab, "master-1", "master-2"));

    lab.heal(host).expect("heal");
    assert!(
        eventually(10, || reaches(lab, "master-1", host)),
        "{host} unreachable after heal"
    );
    lab.exec_ok(host, "true");
}
