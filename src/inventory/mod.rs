//! The inventory: one YAML file describing the cluster and its hosts.
//!
//! `load` reads and validates it; every problem carries file:line:col and a hint.
//! Nothing here touches the network: an invalid inventory never reaches a host.

mod defaults;
mod model;
mod problem;
mod raw;
mod validate;

pub use defaults::SUPPORTED_MINORS;
pub use model::*;
pub use problem::{InventoryError, Problem, Severity};

use std::path::{Path, PathBuf};

/// A valid inventory plus the warnings it raised (e.g. an even number of masters).
#[derive(Debug)]
pub struct Loaded {
    pub inventory: Inventory,
    pub warnings: Vec<String>,
}

/// Reads and validates the inventory at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text).map_err(LoadError::Invalid)
}

/// Validates inventory `text` as if read from `path` (relative paths resolve beside it).
pub fn parse(path: &Path, text: &str) -> Result<Loaded, InventoryError> {
    let fail = |problems| InventoryError {
        path: path.to_path_buf(),
        source_text: text.to_string(),
        problems,
    };
    let raw: raw::RawInventory =
        serde_saphyr::from_str(text).map_err(|e| fail(vec![syntax_problem(&e)]))?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let ctx = validate::Context {
        inventory_dir: &dir,
        home: std::env::var_os("HOME").map(PathBuf::from),
    };
    let checked = validate::check(raw, path.to_path_buf(), &ctx);
    match checked.inventory {
        Some(inventory) => Ok(Loaded {
            warnings: checked
                .problems
                .iter()
                .map(|p| p.render(path, text))
                .collect(),
            inventory,
        }),
        None => Err(fail(checked.problems)),
    }
}

fn syntax_problem(e: &serde_saphyr::Error) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((1, 1));
    let message = first_line(&e.to_string());
    let hint = if message.contains("unknown field") {
        "check the spelling against inventory/hosts.yaml (fields are camelCase)"
    } else if message.contains("missing field") {
        "add the missing field; inventory/hosts.yaml shows every field"
    } else {
        "fix the YAML at this position"
    };
    Problem {
        severity: Severity::Error,
        line,
        column,
        message,
        hint: Some(hint.into()),
    }
}

/// serde-saphyr appends its own snippet; we render ours, so keep its first line only.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read inventory {}: {source}; check the path given to -i", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(InventoryError),
}

#[cfg(test)]
mod tests;
