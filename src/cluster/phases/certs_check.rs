//! The expiry of every certificate and kubeconfig kubeadm manages, per master, read from
//! `kubeadm certs check-expiration` (kubeadm's own view, so the list follows kubeadm's
//! version): one table for the whole cluster.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::cluster::probe::probe_text_many;
use crate::inventory::Host;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CertRow {
    pub host: String,
    /// kubeadm's name (`apiserver`, `admin.conf`, ...); CAs as `ca (CA)`.
    pub cert: String,
    /// `2027-12-05 06:00 UTC`
    pub expires: String,
    pub days_left: i64,
}

#[derive(Default)]
pub struct CertsCheck {
    rows: Mutex<Vec<CertRow>>,
}

impl CertsCheck {
    pub fn rows(&self) -> Vec<CertRow> {
        self.rows.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Phase for CertsCheck {
    fn title(&self) -> &'static str {
        "Certificate expiry"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let masters: Vec<&Host> = ctx.usable(Host::is_master).collect();
            let now = time::OffsetDateTime::now_utc();
            let mut rows = Vec::new();
            let mut problems = Vec::new();
            for (host, answer) in probe_text_many(ctx, "certs-check", &masters, &json!({})).await {
                match answer {
                    Ok(text) => {
                        let parsed = parse_check_expiration(&host, &text, now);
                        if parsed.is_empty() {
                            problems.push(format!(
                                "{host}: kubeadm certs check-expiration listed no certificate"
                            ));
                        }
                        rows.extend(parsed);
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            if let Ok(mut slot) = self.rows.lock() {
                *slot = rows;
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(PhaseError::new(self.title(), problems.join("; ")))
            }
        })
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Dec 05, 2027 06:00 UTC`, kubeadm's format (`Jan 02, 2006 15:04 MST`).
fn parse_kubeadm_time(text: &str) -> Option<time::OffsetDateTime> {
    let re = regex::Regex::new(r"^(\w{3}) (\d{2}), (\d{4}) (\d{2}):(\d{2}) UTC$").ok()?;
    let c = re.captures(text.trim())?;
    let month = MONTHS.iter().position(|m| *m == &c[1])? as u8 + 1;
    let date = time::Date::from_calendar_date(
        c[3].parse().ok()?,
        time::Month::try_from(month).ok()?,
        c[2].parse().ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(c[4].parse().ok()?, c[5].parse().ok()?, 0).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// The rows of kubeadm's two tables (certificates and kubeconfigs, then CAs). Columns are
/// separated by two or more spaces (kubeadm's tabwriter pads with at least three); rows kubeadm
/// marks `!MISSING!` and lines that are not rows are skipped.
pub fn parse_check_expiration(host: &str, text: &str, now: time::OffsetDateTime) -> Vec<CertRow> {
    let sep = regex::Regex::new(r"\s{2,}").expect("valid regex");
    let mut rows = Vec::new();
    let mut in_cas = false;
    for line in text.lines() {
        if line.starts_with("CERTIFICATE AUTHORITY") {
            in_cas = true;
            continue;
        }
        let cells: Vec<&str> = sep.split(line.trim()).collect();
        if cells.len() < 2 {
            continue;
        }
        let Some(expires) = parse_kubeadm_time(cells[1]) else {
            continue;
        };
        let cert = if in_cas {
            format!("{} (CA)", cells[0])
        } else {
            cells[0].to_string()
        };
        rows.push(CertRow {
            host: host.to_string(),
            cert,
            expires: format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                expires.year(),
                u8::from(expires.month()),
                expires.day(),
                expires.hour(),
                expires.minute()
            ),
            days_left: (expires - now).whole_days(),
        });
    }
    rows
}

/// `364d`, `9y`, `expired`.
pub fn residual(days: i64) -> String {
    if days < 0 {
        "expired".into()
    } else if days >= 365 {
        format!("{}y {}d", days / 365, days % 365)
    } else {
        format!("{days}d")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = "[check-expiration] Reading configuration from the cluster...\n\
[check-expiration] FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'\n\n\
CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\n\
admin.conf                 Dec 05, 2027 06:00 UTC   364d            ca                      no\n\
apiserver                  Jan 10, 2027 13:45 UTC   35d             ca                      no\n\
!MISSING! super-admin.conf\n\n\
CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED\n\
ca                      Dec 03, 2036 06:00 UTC   9y              no\n";

    fn now() -> time::OffsetDateTime {
        parse_kubeadm_time("Dec 05, 2026 06:00 UTC").unwrap()
    }

    #[test]
    fn kubeadm_rows_and_cas_are_read_with_days_left() {
        let rows = parse_check_expiration("master-1", KUBEADM, now());
        let got: Vec<(&str, &str, i64)> = rows
            .iter()
            .map(|r| (r.cert.as_str(), r.expires.as_str(), r.days_left))
            .collect();
        assert_eq!(
            got,
            [
                ("admin.conf", "2027-12-05 06:00 UTC", 365),
                ("apiserver", "2027-01-10 13:45 UTC", 36),
                ("ca (CA)", "2036-12-03 06:00 UTC", 3651),
            ]
        );
    }

    #[test]
    fn residual_reads_like_kubeadm() {
        assert_eq!(residual(-1), "expired");
        assert_eq!(residual(36), "36d");
        assert_eq!(residual(3652), "10y 2d");
    }
}
