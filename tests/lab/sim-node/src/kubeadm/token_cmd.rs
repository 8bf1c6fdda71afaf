//! `kubeadm token create|list|delete|generate`.

use anyhow::{Result, anyhow, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

use crate::kube::Kube;
use crate::kubeconfig::KubeConfig;
use crate::paths::{self, p};
use crate::token::{self, Token};

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    cmd: TokenCmd,
    /// The kubeconfig file to use when talking to the cluster.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Create bootstrap tokens on the server
    Create {
        token: Option<String>,
        #[arg(long = "print-join-command")]
        print_join_command: bool,
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_delimiter = ',')]
        usages: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long = "certificate-key")]
        certificate_key: Option<String>,
    },
    /// List bootstrap tokens on the server
    List {
        #[arg(short = 'o', long = "output")]
        output: Option<String>,
    },
    /// Delete bootstrap tokens on the server
    Delete { tokens: Vec<String> },
    /// Generate and print a bootstrap token, but do not create it on the server
    Generate,
}

pub fn run(a: TokenArgs) -> Result<()> {
    let conf = a.kubeconfig.clone().unwrap_or_else(|| p(paths::ADMIN_CONF));
    let client = || Kube::from_kubeconfig(&conf);
    match a.cmd {
        TokenCmd::Generate => {
            println!("{}", Token::generate().full());
            Ok(())
        }
        TokenCmd::Create {
            token,
            print_join_command,
            ttl,
            description,
            usages,
            groups,
            certificate_key,
        } => {
            if certificate_key.is_some() {
                bail!(
                    "--certificate-key is not implemented by the lab simulator: copy the shared CA files instead"
                );
            }
            let t = match token {
                Some(s) => Token::parse(&s)?,
                None => Token::generate(),
            };
            token::validate_usages_groups(&usages, &groups)?;
            let ttl = match ttl {
                Some(s) => crate::util::parse_duration(&s)?,
                None => token::DEFAULT_TTL,
            };
            let kube = client()?;
            let secret = t.secret_object(
                description.as_deref().unwrap_or(""),
                Some(ttl),
                &usages,
                &groups,
            );
            let r = kube.post("/api/v1/namespaces/kube-system/secrets", &secret)?;
            if r.status == 409 {
                bail!("a token with id {:?} already exists", t.id);
            }
            r.into_result("failed to create the bootstrap token Secret")?;
            if print_join_command {
                let kc = KubeConfig::load(&conf)?;
                let creds = kc.credentials()?;
                let endpoint = creds
                    .server
                    .trim_start_matches("https://")
                    .trim_end_matches('/');
                let hash = crate::pki::spki_pin(&creds.ca_pem)?;
                println!(
                    "kubeadm join {endpoint} --token {} --discovery-token-ca-cert-hash {hash} ",
                    t.full()
                );
            } else {
                println!("{}", t.full());
            }
            Ok(())
        }
        TokenCmd::List { output } => list(&client()?, output.as_deref()),
        TokenCmd::Delete { tokens } => {
            if tokens.is_empty() {
                bail!(
                    "missing subcommand; 'token delete' is missing token of form \"[a-z0-9]{{6}}\" or \"[a-z0-9]{{6}}\\.[a-z0-9]{{16}}\""
                );
            }
            let kube = client()?;
            for t in tokens {
                let id = t.split('.').next().unwrap_or_default().to_string();
                if id.len() != 6
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                {
                    bail!(
                        "given token didn't match pattern \"[a-z0-9]{{6}}\" or \"[a-z0-9]{{6}}\\.[a-z0-9]{{16}}\""
                    );
                }
                let r = kube.delete(&format!(
                    "/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}"
                ))?;
                if r.status == 404 {
                    bail!(
                        "failed to delete bootstrap token {id:?}: secrets \"bootstrap-token-{id}\" not found"
                    );
                }
                r.into_result("deleting the bootstrap token")?;
                println!("bootstrap token {id:?} deleted");
            }
            Ok(())
        }
    }
}

fn decode(data: &Value, key: &str) -> String {
    data[key]
        .as_str()
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn list(kube: &Kube, output: Option<&str>) -> Result<()> {
    let secrets = kube
        .get("/api/v1/namespaces/kube-system/secrets")?
        .into_result("listing bootstrap tokens")?;
    let items = secrets["items"]
        .as_array()
        .ok_or_else(|| anyhow!("the API server returned no items"))?;
    let mut rows = vec![];
    for s in items
        .iter()
        .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
    {
        let d = &s["data"];
        let id = decode(d, "token-id");
        let secret = decode(d, "token-secret");
        let exp = decode(d, "expiration");
        let (ttl, expires) = match crate::util::parse_rfc3339(&exp) {
            Some(t) => {
                let left = t - time::OffsetDateTime::now_utc();
                if left.is_negative() {
                    continue;
                }
                (format!("{}h", left.whole_hours()), exp.clone())
            }
            None => ("<forever>".to_string(), "<never>".to_string()),
        };
        let usages: Vec<&str> = ["authentication", "signing"]
            .into_iter()
            .filter(|u| decode(d, &format!("usage-bootstrap-{u}")) == "true")
            .collect();
        rows.push((
            format!("{id}.{secret}"),
            ttl,
            expires,
            usages.join(","),
            decode(d, "description"),
            decode(d, "auth-extra-groups"),
        ));
    }
    if output == Some("json") {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::json!({"kind": "BootstrapToken", "apiVersion": "output.kubeadm.k8s.io/v1alpha3", "token": r.0, "ttl": r.1, "expires": r.2, "usages": r.3.split(',').collect::<Vec<_>>(), "description": r.4, "groups": r.5.split(',').collect::<Vec<_>>()}))
            .collect();
        for x in v {
            println!("{}", serde_json::to_string_pretty(&x)?);
        }
        return Ok(());
    }
    println!(
        "{:<24} {:<5} {:<21} {:<26} {:<40} EXTRA GROUPS",
        "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
    );
    for r in rows {
        let desc = if r.4.is_empty() {
            "<none>".to_string()
        } else {
            r.4
        };
        println!(
            "{:<24} {:<5} {:<21} {:<26} {:<40} {}",
            r.0, r.1, r.2, r.3, desc, r.5
        );
    }
    Ok(())
}
