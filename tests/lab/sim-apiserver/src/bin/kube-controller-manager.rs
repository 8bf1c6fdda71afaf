//! kube-controller-manager simulator: leader-elected controllers over the API
//! (see sim_apiserver::controllers for the list).

use std::time::Duration;

use sim_apiserver::client::{self, Client, parse_duration};
use sim_apiserver::controllers::{Controllers, Settings, start_csr_signer};
use sim_apiserver::{admission, flags};

fn fail(msg: String) -> ! {
    eprintln!("E0000 kube-controller-manager: {msg}");
    std::process::exit(1);
}

/// A string quoted the way klog prints structured values (Go's strconv.Quote).
fn go_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn node_cidrs(f: &flags::Flags) -> Option<((u32, u8), u8)> {
    if !f.bool("allocate-node-cidrs", false) {
        return None;
    }
    let Some(cidr) = f.get("cluster-cidr") else {
        fail("--cluster-cidr is required when --allocate-node-cidrs is true".into());
    };
    let first = cidr.split(',').next().unwrap_or(cidr);
    let parsed = admission::parse_cidr(first)
        .unwrap_or_else(|| fail(format!("invalid --cluster-cidr {cidr}")));
    let mask = f
        .get("node-cidr-mask-size")
        .or(f.get("node-cidr-mask-size-ipv4"))
        .unwrap_or("24");
    let mask: u8 = mask
        .parse()
        .unwrap_or_else(|_| fail(format!("invalid --node-cidr-mask-size {mask}")));
    if mask < parsed.1 {
        fail(format!(
            "--node-cidr-mask-size {mask} is smaller than the --cluster-cidr prefix /{}",
            parsed.1
        ));
    }
    Some((parsed, mask))
}

fn main() {
    let specs = flags::specs_for(flags::CONTROLLER_MANAGER);
    let f = flags::parse_or_exit("kube-controller-manager", &specs);
    if f.has("version") {
        println!("Kubernetes {}", sim_apiserver::component_version());
        return;
    }
    let Some(kubeconfig) = f.get("kubeconfig") else {
        fail("--kubeconfig is required (in-cluster configuration is not simulated)".into());
    };
    let c = Client::from_kubeconfig(kubeconfig).unwrap_or_else(|e| fail(format!("{e:#}")));
    let dur = |flag: &str, default: &str| {
        let v = f.get(flag).unwrap_or(default);
        parse_duration(v).unwrap_or_else(|| {
            fail(format!(
                "invalid argument \"{v}\" for \"--{flag}\" flag: time: invalid duration \"{v}\""
            ))
        })
    };
    let mut enabled = f.list("controllers");
    if enabled.is_empty() {
        enabled.push("*".into());
    }
    let s = Settings {
        enabled,
        signing_cert: f.get("cluster-signing-cert-file").map(str::to_owned),
        signing_key: f.get("cluster-signing-key-file").map(str::to_owned),
        signing_duration: dur("cluster-signing-duration", "8760h"),
        root_ca: f.get("root-ca-file").map(str::to_owned),
        node_grace: dur("node-monitor-grace-period", "40s"),
        node_cidrs: node_cidrs(&f),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e.to_string()));
    rt.block_on(async move {
        if let Err(e) = sim_apiserver::health::serve(&f, 10257).await {
            eprintln!("E0000 {e:#}");
            std::process::exit(1);
        }
        if f.bool("leader-elect", true) {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into());
            let id = format!("{host}_{}", sim_apiserver::obj::new_uid());
            let name = f
                .get("leader-elect-resource-name")
                .unwrap_or("kube-controller-manager");
            client::lead(&c, name, &id, 15).await;
        }
        // The controllers start once this process leads (or at once without leader
        // election); a controller that fails to start stops the process, like the real
        // StartControllers ("Error starting controllers", exit 1), and the kubelet restarts it.
        let signer = start_csr_signer(&s).unwrap_or_else(|e| {
            eprintln!(
                "E0000 kube-controller-manager: \"Error starting controller\" err={} controller=\"certificatesigningrequest-signing-controller\"",
                go_quote(&e)
            );
            eprintln!(
                "E0000 kube-controller-manager: \"Error starting controllers\" err={}",
                go_quote(&e)
            );
            std::process::exit(1);
        });
        let ctl = Controllers { c, s, signer };
        let mut tick = 0u64;
        loop {
            ctl.pass(tick).await;
            tick += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
