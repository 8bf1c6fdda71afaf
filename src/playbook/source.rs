//! Where playbooks come from: embedded in the binary, or a directory given with --playbooks.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use super::model::Playbook;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/playbooks");

#[derive(Debug, Clone)]
pub enum Playbooks {
    Embedded,
    Dir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("playbook file {path} not found{}", where_hint(.dir))]
    NotFound { path: String, dir: Option<PathBuf> },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid UTF-8")]
    NotText { path: String },
    #[error("playbook {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

fn where_hint(dir: &Option<PathBuf>) -> String {
    match dir {
        Some(d) => format!(
            " in --playbooks {}; copy the missing file from the project's playbooks/",
            d.display()
        ),
        None => " among the embedded playbooks (a build problem: please report it)".into(),
    }
}

impl Playbooks {
    pub fn from_option(dir: Option<&Path>) -> Self {
        match dir {
            Some(d) => Playbooks::Dir(d.to_path_buf()),
            None => Playbooks::Embedded,
        }
    }

    /// Reads a file under the playbooks root, e.g. `preflight/main.yaml`.
    pub fn read(&self, path: &str) -> Result<String, PlaybookError> {
        match self {
            Playbooks::Embedded => {
                let file = EMBEDDED
                    .get_file(path)
                    .ok_or_else(|| PlaybookError::NotFound {
                        path: path.into(),
                        dir: None,
                    })?;
                file.contents_utf8()
                    .map(str::to_string)
                    .ok_or_else(|| PlaybookError::NotText { path: path.into() })
            }
            Playbooks::Dir(root) => {
                let full = root.join(path);
                std::fs::read_to_string(&full).map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => PlaybookError::NotFound {
                        path: path.into(),
                        dir: Some(root.clone()),
                    },
                    _ => PlaybookError::Read {
                        path: full.display().to_string(),
                        source,
                    },
                })
            }
        }
    }

    /// Loads `playbooks/<name>/main.yaml`.
    pub fn load(&self, name: &str) -> Result<Playbook, PlaybookError> {
        let path = format!("{name}/main.yaml");
        let text = self.read(&path)?;
        let mut playbook: Playbook =
            serde_saphyr::from_str(&text).map_err(|e| PlaybookError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        playbook.dir = name.to_string();
        Ok(playbook)
    }

    /// Names of all playbooks (directories holding a main.yaml), for `--playbooks` validation.
    pub fn names(&self) -> Vec<String> {
        self.dirs_holding("main.yaml")
    }

    /// Directories (relative to the root) that hold a file named `file_name`.
    pub fn dirs_holding(&self, file_name: &str) -> Vec<String> {
        match self {
            Playbooks::Embedded => EMBEDDED
                .find(&format!("**/{file_name}"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.path().parent().map(|p| p.display().to_string()))
                .collect(),
            Playbooks::Dir(root) => {
                let mut found = Vec::new();
                let mut stack = vec![root.clone()];
                while let Some(dir) = stack.pop() {
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if path.file_name().is_some_and(|n| n == file_name)
                            && let Some(rel) = path.parent().and_then(|p| p.strip_prefix(root).ok())
                        {
                            found.push(rel.display().to_string());
                        }
                    }
                }
                found
            }
        }
    }
}
