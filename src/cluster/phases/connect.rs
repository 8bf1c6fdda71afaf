//! Connect to every host in parallel. A host that cannot be reached is recorded, not fatal
//! here: preflight decides (and `check` shows every host's state in one table).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseFuture};
use crate::cluster::secrets::SecretSource;
use crate::inventory::{self, Host};
use crate::playbook::SshRemote;
use crate::ssh::{ConnectSpec, Connection, HostKeyPolicy};

pub struct Connect;

impl Phase for Connect {
    fn title(&self) -> &'static str {
        "Connect to hosts"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let mut secrets = SecretSource::default();
            let mut attempts = Vec::new();
            let mut unusable = Vec::new();
            for host in &ctx.inventory.hosts {
                // Hosts this run already tried (a verb may add one later, as remove-node does).
                if ctx
                    .hosts
                    .get(&host.name)
                    .is_some_and(|s| s.remote.is_some() || s.error.is_some())
                {
                    continue;
                }
                match spec_for(host, &mut secrets, ctx) {
                    Ok((spec, sudo)) => attempts.push((host.name.clone(), spec, sudo)),
                    Err(why) => unusable.push((host.name.clone(), why)),
                }
            }
            for (name, why) in unusable {
                ctx.mark_failed(&name, why);
            }
            let limit = Arc::new(Semaphore::new(ctx.forks.max(1)));
            let connecting = attempts.into_iter().map(|(name, spec, sudo)| {
                let limit = limit.clone();
                async move {
                    let _permit = limit.acquire_owned().await.ok();
                    (name, Connection::connect(spec).await, sudo)
                }
            });
            for (name, result, sudo_password) in futures::future::join_all(connecting).await {
                match result {
                    Ok(connection) => {
                        ctx.reporter.host_info(&name, "connected");
                        if let Some(state) = ctx.hosts.get_mut(&name) {
                            state.remote = Some(SshRemote {
                                connection,
                                sudo_password,
                            });
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        ctx.logs.write(&name, &format!("connect failed: {why}"));
                        ctx.mark_failed(&name, why);
                    }
                }
            }
            Ok(())
        })
    }
}

type Spec = (ConnectSpec, Option<secrecy::SecretString>);

fn spec_for(host: &Host, secrets: &mut SecretSource, ctx: &Ctx) -> Result<Spec, String> {
    let s = &host.ssh;
    let redactor = ctx.reporter.redactor();
    let mut spec = ConnectSpec::new(
        &host.name,
        host.address.to_string(),
        s.port,
        &s.user,
        &s.known_hosts,
    );
    spec.identity_file = s.identity_file.clone();
    spec.use_agent = s.agent;
    spec.host_key_policy = match s.host_key_policy {
        inventory::HostKeyPolicy::Strict => HostKeyPolicy::Strict,
        inventory::HostKeyPolicy::AcceptNew => HostKeyPolicy::AcceptNew,
    };
    spec.connect_timeout = Duration::from_secs(s.connect_timeout_secs);
    if let Some(env) = &s.password_env {
        spec.password = Some(secrets.get(env, "SSH password", redactor)?);
    }
    if let Some(env) = &s.identity_passphrase_env {
        spec.identity_passphrase = Some(secrets.get(env, "SSH key passphrase", redactor)?);
    }
    if let Some(b) = &s.bastion {
        let mut jump = spec.clone();
        jump.label = format!("{} (bastion for {})", b.address, host.name);
        jump.address = b.address.clone();
        jump.port = b.port;
        jump.user = b.user.clone();
        jump.bastion = None;
        spec.bastion = Some(Box::new(jump));
    }
    let sudo = match &s.sudo_password_env {
        Some(env) => Some(secrets.get(env, "sudo password", redactor)?),
        None => None,
    };
    Ok((spec, sudo))
}
