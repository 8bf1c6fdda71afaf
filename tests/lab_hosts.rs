//! The lab's acceptance tests: its hosts behave like real servers reachable over SSH, and its
//! mirror looks like the real package sources (issue 9).
//! They need root (skipped otherwise) and share one small mixed lab, taken down at exit:
//! master-1 and worker-1 run Debian 12, master-2 and worker-2 Debian 13; worker-1 is the
//! busy-apt host.
//! Run: `cargo test --test lab_hosts` (as root).

#[path = "support/lab.rs"]
mod lab;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;

use lab::{Lab, Options};

const LAB: &str = "labhosts";
const MASTERS: usize = 2;
const WORKERS: usize = 2;

fn shared() -> Option<(&'static Lab, std::sync::MutexGuard<'static, ()>)> {
    let options = Options {
        os: Some("mixed".into()),
        ..Options::default()
    };
    Lab::shared_with(LAB, MASTERS, WORKERS, &options)
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

// --- the mirror and the base image look like the real world (issue 9) ------------------------

/// apt as an installer should run it: non-interactive and waiting for the dpkg lock (one host
/// of the lab holds it for a while after each boot).
const APT: &str = "sudo DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=180";

/// The cri-dockerd release the installer is expected to download.
const CRI_DOCKERD: &str = "0.3.21";

/// Adds the lab's Docker repository to HOST as Docker's install guide does, for the host's
/// release, and updates apt.
fn add_docker_repo(lab: &Lab, host: &str) {
    let repo = &lab.packages().docker_repo;
    let codename = lab.host_codename(host);
    lab.exec_ok(
        host,
        &format!(
            "set -e; sudo install -d -m 0755 /etc/apt/keyrings
             curl -fsS {repo}/gpg | sudo tee /etc/apt/keyrings/docker.asc >/dev/null
             echo 'deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] {repo} {codename} stable' \\
               | sudo tee /etc/apt/sources.list.d/docker.list >/dev/null
             sudo apt-get update -q >/dev/null"
        ),
    );
}

/// Adds the lab's pkgs.k8s.io-like repository for MINOR to HOST and updates apt.
fn add_kubernetes_repo(lab: &Lab, host: &str, minor: &str) {
    let repo = lab.packages().kubernetes_repo.replace("{minor}", minor);
    lab.exec_ok(
        host,
        &format!(
            "set -e; sudo install -d -m 0755 /etc/apt/keyrings
             curl -fsS '{repo}Release.key' | sudo tee /etc/apt/keyrings/kubernetes.asc >/dev/null
             echo 'deb [signed-by=/etc/apt/keyrings/kubernetes.asc] {repo} /' \\
               | sudo tee /etc/apt/sources.list.d/kubernetes.list >/dev/null
             sudo apt-get update -q >/dev/null"
        ),
    );
}

/// Installs Docker CE (docker-ce, docker-ce-cli, containerd.io) on HOST unless it is there.
fn ensure_docker(lab: &Lab, host: &str) {
    if lab.exec(host, "dpkg-query -W docker-ce >/dev/null 2>&1").0 == 0 {
        return;
    }
    add_docker_repo(lab, host);
    lab.exec_ok(
        host,
        &format!("{APT} install -y docker-ce docker-ce-cli containerd.io >/dev/null"),
    );
}

/// The stanzas of an apt `Packages` index, as (field, value) lists.
fn stanzas(index: &str) -> Vec<Vec<(String, String)>> {
    index
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.lines()
                .filter(|l| !l.starts_with(' '))
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn field<'a>(stanza: &'a [(String, String)], name: &str) -> &'a str {
    stanza
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The Docker repository's Packages index for CODENAME, fetched by HOST.
fn docker_index(lab: &Lab, host: &str, codename: &str) -> Vec<Vec<(String, String)>> {
    let repo = &lab.packages().docker_repo;
    stanzas(&lab.exec_ok(
        host,
        &format!("curl -fsS {repo}/dists/{codename}/stable/binary-amd64/Packages"),
    ))
}

#[test]
fn iptables_is_not_preinstalled() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    // The images the hosts boot on (the other tests install packages on the hosts).
    let images = lab.images();
    assert_eq!(images.len(), 2, "{images:?}");
    for (suite, rootfs) in images {
        let out = std::process::Command::new("dpkg-query")
            .arg(format!("--admindir={}/var/lib/dpkg", rootfs.display()))
            .args(["-W", "-f", "${Package} ${Status}\n"])
            .output()
            .expect("dpkg-query runs");
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            list.contains("openssh-server install ok installed"),
            "{suite}: {list}"
        );
        for pkg in [
            "iptables",
            "nftables",
            "conntrack",
            "socat",
            "ebtables",
            "ethtool",
        ] {
            let installed = list
                .lines()
                .any(|l| l.starts_with(&format!("{pkg} ")) && l.ends_with("ok installed"));
            assert!(!installed, "the {suite} image has {pkg}");
        }
    }
}

#[test]
fn trixie_host_boots_with_sshd() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let mut codenames = HashSet::new();
    for host in lab.hosts() {
        let want = lab.host_codename(&host.name);
        let out = lab.exec_ok(
            &host.name,
            ". /etc/os-release; echo $VERSION_CODENAME; systemctl is-active ssh; \
             sed -n 's/^Suites: //p' /etc/apt/sources.list.d/debian.sources",
        );
        assert_eq!(
            out,
            format!("{want}\nactive\n{want}\n"),
            "{} should run Debian {want} with sshd and its own apt suite",
            host.name
        );
        codenames.insert(want);
    }
    assert!(codenames.contains("trixie") && codenames.contains("bookworm"));
    // apt on a Debian 13 host installs from the mirror's trixie suite.
    let trixie = lab
        .hosts()
        .iter()
        .find(|h| lab.host_codename(&h.name) == "trixie")
        .expect("a Debian 13 host");
    lab.exec_ok(&trixie.name, "sudo apt-get update -q >/dev/null");
    let policy = lab.exec_ok(
        &trixie.name,
        "apt-cache policy haproxy lvm2 gnupg keepalived",
    );
    assert!(
        policy.contains("mirror.lab/debian trixie/main"),
        "no trixie packages for a Debian 13 host: {policy}"
    );
    assert!(!policy.contains("Candidate: (none)"), "{policy}");
}

#[test]
fn apt_daily_timers_are_not_masked() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for host in lab.hosts() {
        let out = lab.exec_ok(
            &host.name,
            "systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer",
        );
        assert_eq!(out, "enabled\nenabled\n", "on {}", host.name);
    }
}

#[test]
fn busy_apt_host_holds_the_dpkg_lock_after_boot() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let host = lab.busy_apt_host().expect("the lab has a busy-apt host");
    assert_eq!(host, "worker-1", "the default busy-apt host");
    lab.stop(&host).expect("stop");
    lab.start(&host).expect("start");
    // Right after boot, an apt-get that does not wait for the lock fails as it does on a real
    // server where unattended-upgrade runs.
    let install = "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q ethtool";
    let mut refused = String::new();
    assert!(
        eventually(15, || {
            let (status, _, err) = lab.exec(&host, install);
            refused = err;
            status != 0 && refused.contains("Could not get lock /var/lib/dpkg/lock-frontend")
        }),
        "apt-get was not refused by the busy-apt host: {refused}"
    );
    assert!(refused.contains("(unattended-upgr)"), "{refused}");
    // Waiting for the lock works.
    lab.exec_ok(
        &host,
        &format!("{APT} update >/dev/null && {APT} install -y ethtool >/dev/null"),
    );
    lab.exec_ok(&host, &format!("{APT} purge -y ethtool >/dev/null"));
}

#[test]
fn docker_repo_has_no_cri_dockerd() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for (codename, number) in [("bookworm", 12), ("trixie", 13)] {
        let index = docker_index(lab, "master-1", codename);
        let names: HashSet<&str> = index.iter().map(|s| field(s, "Package")).collect();
        assert_eq!(
            names,
            HashSet::from(["docker-ce", "docker-ce-cli", "containerd.io"]),
            "{codename}"
        );
        for s in &index {
            let (name, version) = (field(s, "Package"), field(s, "Version"));
            let suffix = format!("-1~debian.{number}~{codename}");
            assert!(version.ends_with(&suffix), "{name} {version}");
            if name.starts_with("docker-ce") {
                assert!(version.starts_with("5:29."), "{name} {version}");
            } else {
                assert!(version.starts_with("2."), "containerd.io {version}");
            }
            assert!(
                field(s, "Filename").starts_with(&format!("dists/{codename}/pool/stable/amd64/")),
                "{}",
                field(s, "Filename")
            );
        }
    }
    // With the repository configured, apt finds no cri-dockerd in any repository.
    add_docker_repo(lab, "master-1");
    let out = lab.exec_ok("master-1", "apt-cache madison cri-dockerd");
    assert_eq!(out, "", "cri-dockerd is offered by a repository: {out}");
}

#[test]
fn docker_ce_depends_like_upstream() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for codename in ["bookworm", "trixie"] {
        let index = docker_index(lab, "master-1", codename);
        for s in index.iter().filter(|s| field(s, "Package") == "docker-ce") {
            let depends = field(s, "Depends");
            for dep in [
                "containerd.io (>= 1.7.27)",
                "docker-ce-cli",
                "iptables",
                "nftables",
            ] {
                assert!(depends.contains(dep), "docker-ce {codename}: {depends}");
            }
            assert!(field(s, "Conflicts").contains("docker.io"));
            assert!(field(s, "Recommends").contains("docker-ce-rootless-extras"));
        }
        let ctd = index
            .iter()
            .find(|s| field(s, "Package") == "containerd.io")
            .expect("containerd.io");
        for f in ["Conflicts", "Replaces", "Provides"] {
            assert_eq!(field(ctd, f), "containerd, runc", "containerd.io {f}");
        }
        assert!(field(ctd, "Depends").contains("libseccomp2"));
    }
}

#[test]
fn docker_ce_runs_on_debian_12_and_13() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for host in ["master-1", "master-2"] {
        ensure_docker(lab, host);
        let out = lab.exec_ok(
            host,
            "systemctl is-active containerd docker; \
             sudo docker version --format '{{.Server.Version}}'; \
             containerd --version; ctr --version; sudo ctr version | sed -n 's/^  Version: *//p'",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..2], ["active", "active"], "{host}: {out}");
        assert!(
            !lines[2].is_empty(),
            "{host}: docker's server did not answer: {out}"
        );
        assert!(
            lines[3].starts_with("containerd containerd.io v2."),
            "{host}: {out}"
        );
        assert!(
            lines[4].starts_with("ctr github.com/containerd/containerd/v2 v2."),
            "{host}: {out}"
        );
        assert!(
            lines[5..].iter().all(|v| v.starts_with("v2.")),
            "{host}: {out}"
        );
        // containerd.io ships with its CRI plugin disabled, as a Docker-only containerd.
        let config = lab.exec_ok(host, "cat /etc/containerd/config.toml");
        assert!(config.contains("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]"));
    }
}

#[test]
fn cri_dockerd_release_asset_matches_its_sha256() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let host = "master-1";
    let base = format!("{}/v{CRI_DOCKERD}", lab.packages().cri_dockerd_repo);
    let asset = format!("cri-dockerd_{CRI_DOCKERD}.3-0.debian-bookworm_amd64.deb");
    lab.exec_ok(
        host,
        &format!(
            "set -e; cd /tmp; curl -fsSO {base}/{asset}; curl -fsS {base}/SHA256SUMS -o SHA256SUMS
             grep ' {asset}$' SHA256SUMS | sha256sum -c -"
        ),
    );
    // As upstream: Ubuntu builds and a static tarball, no Debian 13 build.
    for present in [
        format!("cri-dockerd_{CRI_DOCKERD}.3-0.ubuntu-jammy_amd64.deb"),
        format!("cri-dockerd_{CRI_DOCKERD}.3-0.ubuntu-noble_amd64.deb"),
        format!("cri-dockerd-{CRI_DOCKERD}.amd64.tgz"),
    ] {
        lab.exec_ok(host, &format!("curl -fsS -o /dev/null -I {base}/{present}"));
    }
    let (status, _, _) = lab.exec(
        host,
        &format!(
            "curl -fsS -o /dev/null -I {base}/cri-dockerd_{CRI_DOCKERD}.3-0.debian-trixie_amd64.deb"
        ),
    );
    assert_ne!(
        status, 0,
        "a Debian 13 cri-dockerd asset exists; upstream has none"
    );

    // Installed next to Docker it runs socket-activated, like upstream's package.
    ensure_docker(lab, host);
    lab.exec_ok(host, &format!("{APT} install -y /tmp/{asset} >/dev/null"));
    let out = lab.exec_ok(
        host,
        "dpkg-query -W -f '${Version}\\n${Depends}\\n' cri-dockerd; cri-dockerd --version; \
         systemctl is-enabled cri-docker.socket cri-docker.service; \
         for i in $(seq 20); do systemctl is-active -q cri-docker.service && break; sleep 0.5; done; \
         systemctl is-active cri-docker.socket cri-docker.service; stat -c '%U:%G %a' /run/cri-dockerd.sock; \
         systemctl show -p ExecStart --value cri-docker.service",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("{CRI_DOCKERD}~3-0~debian-bookworm"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("containerd (>= 1.2.2-3) | containerd.io (>= 1.2.2-3), iptables"),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("cri-dockerd {CRI_DOCKERD}")),
        "{out}"
    );
    assert_eq!(
        &lines[3..7],
        ["enabled", "enabled", "active", "active"],
        "{out}"
    );
    assert_eq!(lines[7], "root:docker 660", "{out}");
    assert!(out.contains("--container-runtime-endpoint fd://"), "{out}");
}

#[test]
fn containerd_sim_rejects_invalid_v3_config() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let host = "worker-2";
    add_docker_repo(lab, host);
    add_kubernetes_repo(lab, host, "1.36");
    lab.exec_ok(
        host,
        &format!("{APT} install -y containerd.io cri-tools >/dev/null"),
    );
    let crictl = "sudo crictl --runtime-endpoint unix:///run/containerd/containerd.sock";
    let apply = |config: &str| -> i32 {
        let b64 = base64::engine::general_purpose::STANDARD.encode(config.as_bytes());
        lab.exec(
            host,
            &format!(
                "echo {b64} | base64 -d | sudo tee /etc/containerd/config.toml >/dev/null; \
                 sudo systemctl reset-failed containerd 2>/dev/null; sudo systemctl restart containerd"
            ),
        )
        .0
    };
    let journal = || {
        lab.exec_ok(
            host,
            "sudo journalctl -u containerd -n 30 --no-pager -o cat",
        )
    };
    let info = || -> serde_json::Value {
        serde_json::from_str(&lab.exec_ok(host, &format!("{crictl} info")))
            .expect("crictl info is JSON")
    };

    // The package's own configuration: containerd runs, the CRI is not served.
    lab.exec_ok(
        host,
        "sudo cp /etc/containerd/config.toml /tmp/containerd-package.toml",
    );
    let (status, _, err) = lab.exec(host, &format!("{crictl} version"));
    assert_ne!(status, 0);
    assert!(
        err.contains("unknown service runtime.v1.RuntimeService"),
        "{err}"
    );

    // Refused at start, as containerd 2 refuses them.
    for (config, message) in [
        (
            "disabled_plugins = [\"cri\"]\n",
            "invalid disabled plugin URI \"cri\" expect io.containerd.x.vx",
        ),
        (
            "version = 4\n",
            "expected containerd config version equal to or less than `3`, got `4`",
        ),
        (
            "version = 3\n[plugins\n",
            "failed to unmarshal TOML at row 2",
        ),
    ] {
        assert_ne!(apply(config), 0, "containerd started with {config:?}");
        assert!(journal().contains(message), "{config:?}: {}", journal());
        assert_ne!(lab.exec(host, "systemctl is-active -q containerd").0, 0);
    }

    // A version 3 file in the 1.x layout starts, but its CRI settings are dropped.
    let v1x = "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.9\"\n\
               [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
    assert_eq!(apply(v1x), 0);
    assert!(
        journal().contains("Ignoring unknown key in TOML for plugin"),
        "{}",
        journal()
    );
    let lab_info = &info()["lab"];
    assert_eq!(lab_info["systemdCgroup"], false);
    assert_eq!(lab_info["cgroupDriver"], "CGROUPFS");
    assert_eq!(lab_info["sandboxImage"], "registry.k8s.io/pause:3.10.1");

    // The containerd 2 layout takes effect.
    let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = 'registry.k8s.io/pause:3.10'\n\
              [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
    assert_eq!(apply(v3), 0);
    let i = info();
    assert_eq!(i["lab"]["cgroupDriver"], "SYSTEMD");
    assert_eq!(i["lab"]["sandboxImage"], "registry.k8s.io/pause:3.10");
    assert_eq!(
        i["config"]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"],
        true
    );
    let version = lab.exec_ok(host, &format!("{crictl} version"));
    assert!(
        version.contains("RuntimeName:  containerd") && version.contains("RuntimeVersion:  v2."),
        "{version}"
    );

    // A version 2 file is migrated in memory, as containerd 2 does.
    let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.9\"\n\
              [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n";
    assert_eq!(apply(v2), 0);
    assert_eq!(info()["lab"]["sandboxImage"], "registry.k8s.io/pause:3.9");
    assert_eq!(info()["lab"]["cgroupDriver"], "SYSTEMD");
    assert!(journal().contains("Configuration migrated from version 2"));

    // `containerd config default` has no SystemdCgroup key to flip with sed.
    let default = lab.exec_ok(host, "containerd config default");
    assert!(default.starts_with("version = 3"));
    assert!(!default.contains("SystemdCgroup"));

    lab.exec_ok(
        host,
        "sudo cp /tmp/containerd-package.toml /etc/containerd/config.toml; sudo systemctl restart containerd",
    );
}

#[test]
fn kubelet_does_not_pull_iptables() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for host in ["worker-1", "worker-2"] {
        add_kubernetes_repo(lab, host, "1.36");
        let plan = lab.exec_ok(
            host,
            "apt-get install -s --no-install-recommends kubelet kubeadm kubectl | sed -n 's/^Inst \\([^ ]*\\).*/\\1/p'",
        );
        for p in plan.lines() {
            assert!(
                [
                    "cri-tools",
                    "kubeadm",
                    "kubectl",
                    "kubelet",
                    "kubernetes-cni"
                ]
                .contains(&p),
                "{host}: installing kubelet without recommends pulls {p}:\n{plan}"
            );
        }
        assert!(plan.lines().any(|p| p == "kubelet"), "{host}: {plan}");
        // iptables is only recommended.
        if lab.exec(host, "dpkg-query -W iptables >/dev/null 2>&1").0 != 0 {
            let with = lab.exec_ok(
                host,
                "apt-get install -s kubelet | sed -n 's/^Inst \\([^ ]*\\).*/\\1/p'",
            );
            assert!(with.lines().any(|p| p == "iptables"), "{host}: {with}");
        }
        let control = lab.exec_ok(
            host,
            "apt-cache show kubelet | sed -n '1,/^$/{s/^\\(Depends\\|Recommends\\): //p}'",
        );
        assert_eq!(
            control, "kubernetes-cni (>= 1.2.0), mount, util-linux\niptables (>= 1.8.4)\n",
            "{host}"
        );
    }
}

#[test]
fn kubernetes_repos_carry_1_35_to_1_37() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    for minor in ["1.35", "1.36", "1.37"] {
        let repo = lab.packages().kubernetes_repo.replace("{minor}", minor);
        let index = lab.exec_ok("master-1", &format!("curl -fsS '{repo}Packages'"));
        let kubelets: Vec<String> = stanzas(&index)
            .iter()
            .filter(|s| field(s, "Package") == "kubelet")
            .map(|s| field(s, "Version").to_string())
            .collect();
        assert!(!kubelets.is_empty(), "no kubelet in {repo}");
        for v in &kubelets {
            assert!(
                v.starts_with(&format!("{minor}.")) && v.ends_with("-1.1"),
                "{v}"
            );
        }
        lab.exec_ok(
            "master-1",
            &format!("curl -fsS -o /dev/null '{repo}InRelease'"),
        );
    }
}

#[test]
fn inventory_names_the_docker_and_cri_dockerd_repos() {
    let Some((lab, _serial)) = shared() else {
        return;
    };
    let p = lab.packages();
    let mirror = lab.mirror_url();
    assert_eq!(p.docker_repo, format!("{mirror}/docker/linux/debian"));
    assert_eq!(
        p.cri_dockerd_repo,
        format!("{mirror}/github/Mirantis/cri-dockerd/releases/download")
    );
    lab.exec_ok(
        "master-1",
        &format!(
            "curl -fsS -o /dev/null {}/gpg && curl -fsS -o /dev/null {}/v{CRI_DOCKERD}/SHA256SUMS",
            p.docker_repo, p.cri_dockerd_repo
        ),
    );
}
