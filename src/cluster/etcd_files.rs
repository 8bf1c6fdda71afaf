//! etcd snapshot files on this machine: the integrity check etcd itself makes on restore, the
//! `sha256sum`-style checksum file beside each copy, the metadata (etcd version, member), and
//! the state directory's `etcd-backups/` (0700, files 0600, the newest N kept).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What is known about a snapshot besides its bytes, kept beside it as `<file>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotMeta {
    pub cluster: String,
    /// The master whose member the snapshot was taken from.
    pub member: String,
    /// etcd's server version there (the restore tool must read its format).
    pub etcd_version: String,
    /// UTC, `YYYYMMDDTHHMMSSZ`.
    pub taken: String,
    pub bytes: u64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// etcd's Snapshot RPC sends the bbolt database and then its sha256; `etcdctl snapshot save`
/// keeps both, and `snapshot restore` refuses a file whose trailing hash does not match
/// (server/etcdserver/api/snap, `hasChecksum`: size % 512 == 32). Same check, before the
/// file is kept or used.
pub fn verify_integrity(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 512 + 32 || bytes.len() % 512 != 32 {
        return Err(format!(
            "{} bytes is not an etcd snapshot (a bbolt database in 512-byte pages followed by its 32-byte sha256)",
            bytes.len()
        ));
    }
    let (db, hash) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(db).as_slice() != hash {
        return Err("the snapshot's trailing sha256 does not match its content: the file is damaged or truncated".into());
    }
    Ok(())
}

/// `sha256sum` format, so `sha256sum -c FILE.sha256` works beside the file.
pub fn checksum_line(bytes: &[u8], file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    format!("{}  {name}\n", sha256_hex(bytes))
}

pub fn sidecar(file: &Path, ext: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{ext}"));
    PathBuf::from(name)
}

/// Checks FILE against FILE.sha256 (required: a restore from an unverified file is refused).
pub fn verify_checksum(file: &Path, bytes: &[u8]) -> Result<(), String> {
    let sum_path = sidecar(file, "sha256");
    let text = std::fs::read_to_string(&sum_path).map_err(|e| {
        format!(
            "cannot read the checksum {} ({e}); it is written beside every backup: restore from a file `installer etcd backup` wrote",
            sum_path.display()
        )
    })?;
    let want = text.split_whitespace().next().unwrap_or_default();
    let got = sha256_hex(bytes);
    if want != got {
        return Err(format!(
            "{} does not match its checksum (sha256 {got}, {} says {want}); nothing was changed",
            file.display(),
            sum_path.display()
        ));
    }
    Ok(())
}

/// Writes the snapshot, its checksum and metadata as `path`, `path.sha256`, `path.json`
/// (0600 each, each whole or not at all).
pub fn write_snapshot(path: &Path, bytes: &[u8], meta: &SnapshotMeta) -> Result<(), String> {
    let write = |p: &Path, data: &[u8]| {
        crate::local_fs::write_atomic(p, data, 0o600)
            .map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write(path, bytes)?;
    write(
        &sidecar(path, "sha256"),
        checksum_line(bytes, path).as_bytes(),
    )?;
    let json = serde_json::to_string_pretty(meta).unwrap_or_default() + "\n";
    write(&sidecar(path, "json"), json.as_bytes())
}

pub fn read_meta(file: &Path) -> Option<SnapshotMeta> {
    let text = std::fs::read_to_string(sidecar(file, "json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The state directory's backup directory, made 0700 (and narrowed if it was wider).
pub fn backup_dir(state_dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir.join("etcd-backups");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The snapshots in `dir` (`etcd-*.db`), oldest first: their names sort by time.
pub fn list_snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with("etcd-") && n.ends_with(".db"))
        })
        .collect();
    files.sort();
    files
}

/// Removes all but the newest `keep` snapshots (with their checksum and metadata); returns
/// the removed snapshot files.
pub fn prune(dir: &Path, keep: usize) -> Vec<PathBuf> {
    let files = list_snapshots(dir);
    let excess = files.len().saturating_sub(keep);
    let old: Vec<PathBuf> = files.into_iter().take(excess).collect();
    for f in &old {
        let _ = std::fs::remove_file(f);
        let _ = std::fs::remove_file(sidecar(f, "sha256"));
        let _ = std::fs::remove_file(sidecar(f, "json"));
    }
    old
}

/// `major.minor` of a version such as `3.4.23` or `v3.6.8`.
pub fn minor_of(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether a restore tool of `tool_version` writes a data directory an etcd of
/// `server_version` (the one the snapshot came from) can start on: same major.minor. An
/// older tool lacks what the newer server's schema needs (etcd 3.6 refuses a data directory
/// without the 3.5 storage fields); a newer one writes a schema the older server does not know.
pub fn tool_fits(tool: &str, tool_version: &str, server_version: &str) -> Result<(), String> {
    let (Some(t), Some(s)) = (minor_of(tool_version), minor_of(server_version)) else {
        return Err(format!(
            "cannot compare {tool} {tool_version:?} with the snapshot's etcd {server_version:?}"
        ));
    };
    if t != s {
        return Err(format!(
            "{tool} {tool_version} cannot restore a snapshot of etcd {server_version} (the minor must match): put etcdutl {}.{} (etcd's release tarball) in /usr/local/bin on the masters and run the restore again",
            s.0, s.1
        ));
    }
    if tool == "etcdctl" && s >= (3, 6) {
        return Err(format!(
            "etcdctl {tool_version} has no `snapshot restore` (removed in etcd 3.6): put etcdutl {tool_version} on the masters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(db_pages: usize) -> Vec<u8> {
        let db: Vec<u8> = (0..db_pages * 512).map(|i| (i % 251) as u8).collect();
        let mut bytes = db.clone();
        bytes.extend_from_slice(&Sha256::digest(&db));
        bytes
    }

    #[test]
    fn a_snapshot_with_its_trailing_sha256_passes() {
        verify_integrity(&snapshot(4)).unwrap();
    }

    #[test]
    fn a_flipped_byte_or_a_truncated_file_is_refused() {
        let mut bytes = snapshot(4);
        bytes[700] ^= 1;
        assert!(
            verify_integrity(&bytes)
                .unwrap_err()
                .contains("does not match")
        );
        let bytes = snapshot(4);
        assert!(
            verify_integrity(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .contains("not an etcd snapshot")
        );
    }

    #[test]
    fn checksum_file_is_checked_and_a_missing_one_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd-x.db");
        let bytes = snapshot(2);
        let meta = SnapshotMeta {
            cluster: "c".into(),
            member: "m1".into(),
            etcd_version: "3.4.23".into(),
            taken: "20261205T000000Z".into(),
            bytes: bytes.len() as u64,
        };
        write_snapshot(&path, &bytes, &meta).unwrap();
        verify_checksum(&path, &bytes).unwrap();
        assert_eq!(read_meta(&path), Some(meta));
        let mut other = bytes.clone();
        other[0] ^= 1;
        assert!(
            verify_checksum(&path, &other)
                .unwrap_err()
                .contains("does not match")
        );
        std::fs::remove_file(sidecar(&path, "sha256")).unwrap();
        assert!(
            verify_checksum(&path, &bytes)
                .unwrap_err()
                .contains("cannot read the checksum")
        );
    }

    #[test]
    fn prune_keeps_the_newest_and_their_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        for t in ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"] {
            let p = dir.path().join(format!("etcd-c-{t}.db"));
            for f in [p.clone(), sidecar(&p, "sha256"), sidecar(&p, "json")] {
                std::fs::write(f, b"x").unwrap();
            }
        }
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let removed = prune(dir.path(), 2);
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with("etcd-c-20260101T000000Z.db"));
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 7, "{left:?}");
        assert!(left.contains(&"notes.txt".to_string()));
    }

    #[test]
    fn the_tool_must_match_the_servers_minor() {
        tool_fits("etcdctl", "3.4.23", "3.4.20").unwrap();
        tool_fits("etcdutl", "3.6.8", "3.6.6").unwrap();
        assert!(
            tool_fits("etcdctl", "3.4.23", "3.6.8")
                .unwrap_err()
                .contains("etcdutl 3.6")
        );
        assert!(
            tool_fits("etcdctl", "3.6.8", "3.6.8")
                .unwrap_err()
                .contains("removed")
        );
        assert!(tool_fits("etcdutl", "", "3.6.8").is_err());
    }
}
