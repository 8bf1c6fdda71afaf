//! A minimal crictl: `version` and `info` succeed only if the runtime socket answers.

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "crictl", about = "client for CRI (lab simulator)")]
struct Args {
    /// Container runtime endpoint.
    #[arg(
        short = 'r',
        long = "runtime-endpoint",
        env = "CONTAINER_RUNTIME_ENDPOINT"
    )]
    runtime_endpoint: Option<String>,
    #[arg(short = 'i', long = "image-endpoint", env = "IMAGE_SERVICE_ENDPOINT")]
    image_endpoint: Option<String>,
    #[arg(short = 't', long = "timeout")]
    timeout: Option<String>,
    #[arg(short = 'D', long = "debug")]
    debug: bool,
    #[arg(short = 'c', long = "config")]
    config: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Display runtime version information
    Version,
    /// Display information of the container runtime
    Info {
        #[arg(short = 'o', long = "output")]
        output: Option<String>,
    },
}

/// The cri-tools version the package claims (`cri-tools.version`, e.g. 1.36.0).
fn version() -> String {
    std::fs::read_to_string(crate::paths::p(
        "/usr/share/kubernetes-sim/cri-tools.version",
    ))
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "1.36.0".to_string())
}

pub fn main() -> i32 {
    if std::env::args()
        .skip(1)
        .any(|a| a == "--version" || a == "-v")
    {
        println!("crictl version v{}", version());
        return 0;
    }
    let a = Args::parse();
    match run(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("FATA[0000] {e:#}");
            1
        }
    }
}

/// The endpoint: flag/env, else /etc/crictl.yaml, else the known sockets in order.
fn endpoint(a: &Args) -> Result<String> {
    if let Some(e) = &a.runtime_endpoint {
        return Ok(e.clone());
    }
    let cfg = a
        .config
        .clone()
        .unwrap_or_else(|| crate::paths::s("/etc/crictl.yaml"));
    if let Ok(text) = std::fs::read_to_string(&cfg)
        && let Ok(v) = serde_saphyr::from_str::<serde_json::Value>(&text)
        && let Some(e) = v["runtime-endpoint"].as_str()
    {
        return Ok(e.to_string());
    }
    eprintln!(
        "WARN[0000] runtime connect using default endpoints: [{}]. As the default settings are now deprecated, you should set the endpoint instead.",
        super::KNOWN_ENDPOINTS.join(" ")
    );
    for e in super::KNOWN_ENDPOINTS {
        if super::answers(e).is_ok() {
            return Ok(e.to_string());
        }
    }
    bail!("validate service connection: no runtime answers at the default endpoints")
}

fn run(a: Args) -> Result<()> {
    let ep = endpoint(&a)?;
    super::answers(&ep).map_err(|e| anyhow::anyhow!("validate service connection: {e:#}"))?;
    let details = super::sim_get(&ep, "/version");
    match a.cmd {
        Cmd::Version => {
            println!("Version:  0.1.0");
            match details {
                Ok(v) => {
                    println!(
                        "RuntimeName:  {}",
                        v["runtimeName"].as_str().unwrap_or_default()
                    );
                    println!(
                        "RuntimeVersion:  {}",
                        v["runtimeVersion"].as_str().unwrap_or_default()
                    );
                    println!(
                        "RuntimeApiVersion:  {}",
                        v["runtimeApiVersion"].as_str().unwrap_or_default()
                    );
                }
                Err(_) => {
                    // A real gRPC runtime (containerd): it answered the connection preface, but
                    // this crictl does not speak the CRI API to ask for its name and version.
                    let name = ep
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches(".sock");
                    println!("RuntimeName:  {name}");
                    println!(
                        "RuntimeVersion:  unknown (the lab crictl only completes the HTTP/2 handshake with this runtime)"
                    );
                    println!("RuntimeApiVersion:  v1");
                }
            }
        }
        Cmd::Info { .. } => {
            let info = match super::sim_get(&ep, "/info") {
                Ok(v) => v,
                Err(_) => {
                    json!({"status": {"conditions": [{"type": "RuntimeReady", "status": true, "reason": "", "message": ""}]}})
                }
            };
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
    }
    Ok(())
}
