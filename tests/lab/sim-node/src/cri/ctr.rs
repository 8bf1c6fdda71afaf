//! `ctr` of the containerd simulator (package `containerd.io`). `ctr --version`, `ctr version`
//! and `ctr plugins ls` describe the simulated containerd 2.x; every other command runs the real
//! ctr shipped with the backend (/usr/libexec/containerd-lab/ctr), which talks to the real
//! containerd behind the simulator's socket.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use super::containerd::{BACKEND_DIR, version};

const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

fn get(address: &str, path: &str) -> Result<Value> {
    let mut s = UnixStream::connect(address).map_err(|e| {
        anyhow!(
            "failed to dial {address:?}: connection error: desc = \"transport: error while dialing: dial unix {address}: connect: {e}\""
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{address} is not the lab's containerd"))?;
    if !head.starts_with("HTTP/1.0 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    serde_json::from_str(body).context("malformed answer")
}

pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut address =
        std::env::var("CONTAINERD_ADDRESS").unwrap_or_else(|_| DEFAULT_ADDRESS.into());
    let mut i = 0;
    let mut rest = Vec::new();
    while i < args.len() {
        match args[i].as_str() {
            "--address" | "-a" => {
                i += 1;
                if let Some(a) = args.get(i) {
                    address = a.clone();
                }
            }
            a if a.starts_with("--address=") => address = a["--address=".len()..].to_string(),
            "--version" | "-v" => {
                println!("ctr github.com/containerd/containerd/v2 v{}", version());
                return 0;
            }
            _ => rest.push(args[i].clone()),
        }
        i += 1;
    }
    let words: Vec<&str> = rest
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let result = match words.as_slice() {
        ["version", ..] => ctr_version(&address),
        ["plugins" | "plugin", "ls" | "list", ..] => plugins(&address),
        _ => {
            let real = crate::paths::p(&format!("{BACKEND_DIR}/ctr"));
            let err = std::process::Command::new(&real)
                .arg("--address")
                .arg(&address)
                .args(args_without_address(&args))
                .exec();
            Err(anyhow!("cannot run {}: {err}", real.display()))
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ctr: {e:#}");
            1
        }
    }
}

fn args_without_address(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--address" || a == "-a" {
            skip = true;
            continue;
        }
        if a.starts_with("--address=") {
            continue;
        }
        out.push(a.clone());
    }
    out
}

fn ctr_version(address: &str) -> Result<()> {
    let v = version();
    println!("Client:\n  Version:  v{v}\n  Revision: lab-simulator\n  Go version: go1.24.11\n");
    let d = get(address, "/lab/daemon")?;
    println!(
        "Server:\n  Version:  {}\n  Revision: {}\n  UUID: {}",
        d["version"].as_str().unwrap_or_default(),
        d["revision"].as_str().unwrap_or_default(),
        d["uuid"].as_str().unwrap_or_default()
    );
    Ok(())
}

fn plugins(address: &str) -> Result<()> {
    let list = get(address, "/lab/plugins")?;
    println!("{:<40}{:<28}{:<16}STATUS", "TYPE", "ID", "PLATFORMS");
    for p in list.as_array().into_iter().flatten() {
        println!(
            "{:<40}{:<28}{:<16}{}",
            p["type"].as_str().unwrap_or_default(),
            p["id"].as_str().unwrap_or_default(),
            "linux/amd64",
            p["status"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
