//! kube-scheduler simulator: leader-elected, binds pending pods honouring nodeSelector,
//! required node affinity, taints/tolerations and cordoned nodes.

use std::time::Duration;

use sim_apiserver::client::{self, Client};
use sim_apiserver::{flags, scheduler};

fn main() {
    let specs = flags::specs_for(flags::SCHEDULER);
    let f = flags::parse_or_exit("kube-scheduler", &specs);
    if f.has("version") {
        println!("Kubernetes {}", sim_apiserver::component_version());
        return;
    }
    let Some(kubeconfig) = f.get("kubeconfig").or(f.get("authentication-kubeconfig")) else {
        eprintln!(
            "E0000 kube-scheduler: --kubeconfig is required (in-cluster configuration is not simulated)"
        );
        std::process::exit(1);
    };
    let c = match Client::from_kubeconfig(kubeconfig) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("E0000 kube-scheduler: {e:#}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("E0000 kube-scheduler: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        if let Err(e) = sim_apiserver::health::serve(&f, 10259).await {
            eprintln!("E0000 {e:#}");
            std::process::exit(1);
        }
        if f.bool("leader-elect", true) {
            let id = format!("{}_{}", hostname(), sim_apiserver::obj::new_uid());
            let name = f
                .get("leader-elect-resource-name")
                .unwrap_or("kube-scheduler");
            client::lead(&c, name, &id, 15).await;
        }
        loop {
            if let Err(e) = scheduler::pass(&c).await {
                eprintln!("scheduling pass failed: {e}");
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}
