//! Run one playbook, given by path, on every connected host: the hidden `run-playbook`
//! verb, which lets the benchmark time our SSH and playbook engine on the same work as
//! Ansible and pyinfra. No facts are gathered (as Ansible's `gather_facts: false`).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cluster::Ctx;
use crate::cluster::phase::{Phase, PhaseError, PhaseFuture};
use crate::playbook::{Mode, Playbooks, RunOptions};

pub struct RunPlaybook {
    /// The playbook's root (its parent directory) and its name (the directory holding
    /// main.yaml), as the engine loads `ROOT/NAME/main.yaml`.
    root: PathBuf,
    name: String,
}

impl RunPlaybook {
    /// `path`: a directory holding main.yaml, or that main.yaml itself.
    pub fn new(path: &Path) -> Result<RunPlaybook, String> {
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !dir.join("main.yaml").is_file() {
            return Err(format!(
                "{} holds no main.yaml: give a playbook directory (DIR/main.yaml) or its main.yaml",
                dir.display()
            ));
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} has no usable name", dir.display()))?
            .to_string();
        let root = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        Ok(RunPlaybook { root, name })
    }

    fn options(&self, ctx: &Ctx) -> RunOptions {
        RunOptions {
            playbooks: Playbooks::Dir(self.root.clone()),
            ..ctx.run_options(Mode::Apply)
        }
    }
}

impl Phase for RunPlaybook {
    fn title(&self) -> &'static str {
        "Run playbook"
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> PhaseFuture<'a> {
        Box::pin(async move {
            let fail = |m: String| PhaseError::new("Run playbook", m);
            let opts = self.options(ctx);
            let playbook = opts
                .playbooks
                .load(&self.name)
                .map_err(|e| fail(e.to_string()))?;
            let hosts: Vec<_> = ctx.usable(|_| true).collect();
            let targets = ctx.targets(&hosts, &json!({}));
            let reports = crate::playbook::run(&playbook, targets, &opts).await;
            let failed = ctx.absorb(&reports);
            let unreachable = ctx.failed_hosts();
            if !failed.is_empty() {
                return Err(fail(failed.join("; ")));
            }
            if !unreachable.is_empty() {
                let names: Vec<_> = unreachable
                    .iter()
                    .map(|(h, why)| format!("{h}: {why}"))
                    .collect();
                return Err(fail(names.join("; ")));
            }
            ctx.reporter.print(&format!(
                "{} ran on {} host(s)",
                playbook.name,
                reports.len()
            ));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_or_its_main_yaml_names_the_same_playbook() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("overhead");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("main.yaml"), "name: x\ntasks: []\n").unwrap();
        let by_dir = RunPlaybook::new(&dir).unwrap();
        let by_file = RunPlaybook::new(&dir.join("main.yaml")).unwrap();
        assert_eq!(by_dir.name, "overhead");
        assert_eq!((&by_dir.root, &by_dir.name), (&by_file.root, &by_file.name));
        assert_eq!(by_dir.root, tmp.path().canonicalize().unwrap());
    }

    #[test]
    fn a_directory_without_main_yaml_is_refused_with_what_to_give() {
        let tmp = tempfile::tempdir().unwrap();
        let err = RunPlaybook::new(tmp.path()).err().unwrap();
        assert!(err.contains("holds no main.yaml"), "{err}");
    }
}
