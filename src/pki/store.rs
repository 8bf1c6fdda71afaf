//! The local copy of the shared CA files (`.installer/<cluster>/pki/`).

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::bundle::{ClusterCa, Origin, RawFiles, SHARED_FILES};
use super::error::PkiError;

const DIR_MODE: u32 = 0o700;

impl ClusterCa {
    /// Writes the eight files under `dir` (created 0700, like its `etcd/`): keys 0600,
    /// certificates 0644, each through a temporary file and a rename so a crash never
    /// leaves a half-written file. Existing files are replaced.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        for sub in [dir.to_path_buf(), dir.join("etcd")] {
            make_private_dir(&sub).map_err(|source| PkiError::Io {
                action: "create directory",
                path: sub.clone(),
                source,
            })?;
        }
        for file in self.files() {
            let path = dir.join(file.path);
            crate::local_fs::write_atomic(&path, file.contents(), file.mode).map_err(|source| {
                PkiError::Io {
                    action: "write",
                    path,
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Reads and validates the files under `dir`. [`PkiError::NoLocalCa`] when none of
    /// them is there (a new cluster, or a lost state directory).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let mut raw = RawFiles::new();
        for rel in SHARED_FILES {
            let path = dir.join(rel);
            match fs::read(&path) {
                Ok(bytes) => {
                    raw.insert(rel, Zeroizing::new(bytes));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PkiError::Io {
                        action: "read",
                        path,
                        source,
                    });
                }
            }
        }
        if raw.is_empty() {
            return Err(PkiError::NoLocalCa {
                dir: dir.to_path_buf(),
            });
        }
        Self::validate(raw, &Origin::Dir(dir), OffsetDateTime::now_utc())
    }
}

fn make_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // An existing directory keeps its mode through create(): tighten it.
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}
