//! `installer check` and `installer plan` against a real OpenSSH sshd on 127.0.0.1, and the
//! guarantees around them: invalid inventories never reach a host, secrets never show.

#[path = "support/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sshd::{PW_USER, Sshd, TEST_USER};

/// An inventory for one master reached through the test sshd (an external load balancer
/// address, so no VIP is probed on loopback).
fn inventory(sshd: &Sshd, dir: &Path, user: &str, extra_ssh: &str) -> PathBuf {
    let known_hosts = sshd.write_known_hosts("known_hosts-cli", &[sshd.known_hosts_line()]);
    let text = format!(
        "apiVersion: installer/v1
kind: Inventory
cluster:
  name: sshd-test
  kubernetes: 1.36.2
  runtime: containerd
  controlPlane:
    loadBalancer: {{address: 127.0.0.1, port: 16443}}
ssh:
  user: {user}
  port: {port}
  identityFile: {key}
  agent: false
  knownHosts: {kh}
{extra_ssh}hosts:
  - name: master-1
    address: 127.0.0.1
    roles: [master]
",
        port = sshd.port,
        key = sshd.client_key.display(),
        kh = known_hosts.display(),
    );
    let path = dir.join("hosts.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn installer(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_installer"));
    cmd.args(args).env_remove("SSH_AUTH_SOCK");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run installer")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn connections_logged(sshd: &Sshd) -> usize {
    sshd.log().matches("Connection from").count()
}

#[test]
fn check_prints_one_row_per_host_and_changes_nothing() {
    let Some(sshd) = Sshd::start("check_prints_one_row_per_host_and_changes_nothing") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), TEST_USER, "");
    let before = snapshot_etc();
    let out = installer(&["check", "-i", inv.to_str().unwrap()], &[]);
    let all = text(&out);
    let row = master_row(&all);
    assert!(row.contains("127.0.0.1") && row.contains("master"), "{row}");
    assert!(
        !row.contains("root access failed"),
        "passwordless sudo must count as root: {row}"
    );
    // The verdict and the exit code agree.
    assert_eq!(row.contains("FAIL"), !out.status.success(), "{all}");
    assert!(
        row.contains("PASS") || row.contains("WARN") || row.contains("FAIL"),
        "{row}"
    );
    assert_eq!(before, snapshot_etc(), "check must not change the host");
    let log = tmp.path().join(".installer/sshd-test/logs/master-1.log");
    let logged = std::fs::read_to_string(&log).expect("per-host log written");
    assert!(
        logged.contains("Gather facts"),
        "the log records the remote commands: {logged}"
    );
}

#[test]
fn check_fails_a_host_whose_sudo_wants_a_password_not_given() {
    let Some(sshd) = Sshd::start("check_fails_a_host_whose_sudo_wants_a_password_not_given") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), PW_USER, "");
    let out = installer(&["check", "-i", inv.to_str().unwrap()], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let row = master_row(&all);
    assert!(
        row.contains("FAIL") && row.contains("root access failed"),
        "{row}"
    );
    assert!(
        row.contains("sudoPasswordEnv"),
        "the row says what to do: {row}"
    );
}

#[test]
fn sudo_password_from_env_works_and_never_appears_in_output_or_logs() {
    let Some(sshd) =
        Sshd::start("sudo_password_from_env_works_and_never_appears_in_output_or_logs")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(
        &sshd,
        tmp.path(),
        PW_USER,
        "  sudoPasswordEnv: TEST_SUDO_PW\n",
    );
    let password = sshd.pw_password();
    let out = installer(
        &["check", "-v", "-i", inv.to_str().unwrap()],
        &[("TEST_SUDO_PW", password)],
    );
    let all = text(&out);
    let row = master_row(&all);
    assert!(!row.contains("root access failed"), "{row}");
    assert!(
        !all.contains(password),
        "the sudo password leaked into the output"
    );
    let logs = tmp.path().join(".installer/sshd-test/logs");
    for entry in std::fs::read_dir(&logs).unwrap() {
        let body = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !body.contains(password),
            "the sudo password leaked into a log"
        );
    }
}

#[test]
fn invalid_inventory_exits_2_with_position_and_contacts_no_host() {
    let Some(sshd) = Sshd::start("invalid_inventory_exits_2_with_position_and_contacts_no_host")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), TEST_USER, "");
    let broken = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("roles: [master]", "roles: [mastr]");
    std::fs::write(&inv, broken).unwrap();
    let before = connections_logged(&sshd);
    for verb in ["check", "plan", "up"] {
        let out = installer(&[verb, "-i", inv.to_str().unwrap()], &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{verb}: {all}");
        assert!(
            all.contains("hosts.yaml:18:13: error: unknown role \"mastr\""),
            "{verb}: {all}"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        connections_logged(&sshd),
        before,
        "no SSH connection may be attempted:\n{}",
        sshd.log()
    );
    assert!(
        !tmp.path().join(".installer").exists(),
        "nothing written for an invalid inventory"
    );
}

#[test]
fn unreachable_host_is_a_fail_row_naming_the_host() {
    if !sshd::root_or_skip("unreachable_host_is_a_fail_row_naming_the_host") {
        return;
    }
    // An empty network namespace: the address is valid but nothing can leave this machine.
    let ns = format!("installer-empty-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let tmp = tempfile::tempdir().unwrap();
    let key = sshd::generate_key(tmp.path(), "id_ed25519", "");
    let inv = tmp.path().join("hosts.yaml");
    std::fs::write(
        &inv,
        format!(
            "apiVersion: installer/v1\nkind: Inventory\ncluster:\n  name: gone\n  kubernetes: 1.37.1\n  controlPlane: {{vip: 192.0.2.100}}\n\
ssh: {{user: ops, identityFile: {}, agent: false, knownHosts: {}/kh, connectTimeout: 2}}\n\
hosts:\n  - {{name: master-1, address: 192.0.2.11, roles: [master]}}\n",
            key.display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            env!("CARGO_BIN_EXE_installer"),
            "check",
            "-i",
            inv.to_str().unwrap(),
        ])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let row = master_row(&all);
    assert!(
        row.contains("FAIL") && row.contains("cannot connect to master-1 (192.0.2.11:22)"),
        "{row}"
    );
}

#[test]
fn plan_lists_tasks_with_guards_evaluated_and_changes_nothing() {
    let Some(sshd) = Sshd::start("plan_lists_tasks_with_guards_evaluated_and_changes_nothing")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), TEST_USER, "");
    let before = snapshot_etc();
    let out = installer(&["plan", "-i", inv.to_str().unwrap()], &[]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("master-1:"), "{all}");
    // This machine has no swap: the guard is evaluated against its facts.
    assert!(
        all.contains("skip  Turn swap off now (when: facts.swap_active)"),
        "{all}"
    );
    assert!(
        all.contains("Install kubelet, kubeadm, kubectl at the pinned version"),
        "{all}"
    );
    assert!(all.contains("Nothing was changed."), "{all}");
    assert_eq!(before, snapshot_etc(), "plan must not change the host");

    let json = installer(
        &["plan", "--output", "json", "-i", inv.to_str().unwrap()],
        &[],
    );
    // One JSON document per line: the run's SSH summary, then the plan, last (scripts read
    // a verb's result from the last line).
    let stdout = String::from_utf8_lossy(&json.stdout).to_string();
    let docs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let [.., summary, plan] = docs.as_slice() else {
        panic!("fewer than two JSON lines:\n{stdout}")
    };
    assert!(
        plan["plan"].as_array().is_some_and(|a| !a.is_empty()),
        "the plan is the last line:\n{stdout}"
    );
    assert!(
        summary["ssh"]["round_trips"].as_u64() > Some(0),
        "the SSH summary comes before the result:\n{stdout}"
    );
}

/// What up would write: if any of these appear, something was changed.
fn snapshot_etc() -> Vec<(String, bool)> {
    [
        "/etc/modules-load.d/kubernetes.conf",
        "/etc/sysctl.d/99-kubernetes.conf",
        "/etc/apt/sources.list.d/kubernetes.list",
        "/etc/apt/keyrings/kubernetes-apt-keyring.gpg",
        "/etc/containerd/config.toml",
    ]
    .iter()
    .map(|p| (p.to_string(), Path::new(p).exists()))
    .collect()
}

#[test]
fn playbooks_dir_overrides_the_embedded_playbooks() {
    let Some(sshd) = Sshd::start("playbooks_dir_overrides_the_embedded_playbooks") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), TEST_USER, "");
    // Start from the project's playbooks and change one task's name.
    let books = tmp.path().join("playbooks");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks"))
        .arg(&books)
        .status()
        .unwrap();
    assert!(copy.success());
    let os = books.join("os/main.yaml");
    let edited = std::fs::read_to_string(&os)
        .unwrap()
        .replace("Kernel settings persisted", "Site-specific kernel settings");
    std::fs::write(&os, edited).unwrap();
    let out = installer(
        &[
            "plan",
            "--playbooks",
            books.to_str().unwrap(),
            "-i",
            inv.to_str().unwrap(),
        ],
        &[],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Site-specific kernel settings"), "{all}");
    assert!(!all.contains("Kernel settings persisted"), "{all}");
}

#[test]
fn check_json_output_is_one_event_per_line() {
    let Some(sshd) = Sshd::start("check_json_output_is_one_event_per_line") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), TEST_USER, "");
    let out = installer(
        &["check", "--output", "json", "-i", inv.to_str().unwrap()],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "phase_started" && e["phase"] == "Gather facts"),
        "{stdout}"
    );
    let result = events
        .iter()
        .find(|e| e.get("check").is_some())
        .expect("a final check document");
    assert_eq!(result["check"][0]["host"], "master-1");
    assert!(
        ["pass", "warn", "fail"].contains(&result["check"][0]["verdict"].as_str().unwrap_or(""))
    );
}

/// The check table's row for master-1 (the output is shown when there is none).
fn master_row(all: &str) -> &str {
    all.lines()
        .find(|l| l.starts_with("master-1"))
        .unwrap_or_else(|| panic!("no row for master-1:\n{all}"))
}

#[test]
fn second_up_on_the_same_cluster_is_refused_while_the_first_holds_the_lock() {
    let Some(sshd) =
        Sshd::start("second_up_on_the_same_cluster_is_refused_while_the_first_holds_the_lock")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, tmp.path(), TEST_USER, "");
    // Stand in for a first `up` that is running: hold the cluster's lock as it does.
    let state = tmp.path().join(".installer/sshd-test");
    std::fs::create_dir_all(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tmp.path().join(".installer"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("lock"))
        .unwrap();
    lock.try_lock().expect("the test holds the lock");
    let before = sshd.log().matches("Accepted publickey").count();
    for verb in [&["up"][..], &["reset", "--yes"][..]] {
        let mut args = verb.to_vec();
        args.extend(["-i", inv.to_str().unwrap()]);
        let out = installer(&args, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("another installer run holds"), "{all}");
    }
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        before,
        "a refused run must not touch any host"
    );
    drop(lock);
}
