//! One log file per host under `.installer/<cluster>/logs/` (dir 0700, files 0600): every
//! remote command and its output, redacted before it is written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Redactor;

#[derive(Clone)]
pub struct HostLogs {
    dir: PathBuf,
    redactor: Redactor,
    files: Arc<Mutex<HashMap<String, File>>>,
}

impl HostLogs {
    pub fn open(dir: &Path, redactor: Redactor) -> std::io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // An existing directory keeps its old mode unless we tighten it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(HostLogs {
            dir: dir.to_path_buf(),
            redactor,
            files: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.log"))
    }

    /// Appends `text` (redacted) to the host's log, prefixed with a timestamp per line.
    pub fn write(&self, host: &str, text: &str) {
        let clean = self.redactor.redact(text);
        let stamp = time::OffsetDateTime::now_utc();
        // Milliseconds: most commands take less than a second, and the gaps between them are
        // what someone reading a slow run looks for.
        let prefix = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            stamp.millisecond()
        );
        // One write per call: outputs of megabytes (a CRD list) were written line by line.
        let mut stamped = String::with_capacity(clean.len() + clean.len() / 8);
        for line in clean.lines() {
            stamped.push_str(&prefix);
            stamped.push(' ');
            stamped.push_str(line);
            stamped.push('\n');
        }
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        let file = match files.get_mut(host) {
            Some(f) => f,
            None => {
                let opened = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(self.path_for(host));
                match opened {
                    Ok(f) => files.entry(host.to_string()).or_insert(f),
                    // Logging must never take the run down; the terminal still shows progress.
                    Err(_) => return,
                }
            }
        };
        let _ = file.write_all(stamped.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_log_is_private_and_redacted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let r = Redactor::new();
        r.add_secret("correct-horse-battery");
        let logs = HostLogs::open(&dir, r).unwrap();
        logs.write(
            "master-1",
            "$ kubeadm join --token abcdef.0123456789abcdef\npassword is correct-horse-battery",
        );
        let text = fs::read_to_string(logs.path_for("master-1")).unwrap();
        assert!(
            !text.contains("abcdef.0123456789abcdef") && !text.contains("correct-horse-battery"),
            "{text}"
        );
        assert!(text.contains("$ kubeadm join --token [REDACTED]"), "{text}");
        // Every line stamped to the millisecond: 2026-12-05T12:00:00.123Z
        let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ").unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().all(|l| stamp.is_match(l)), "{text}");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&logs.path_for("master-1")), 0o600);
    }
}
