//! The inventory: one YAML file describing the cluster and its hosts.
//!
//! `load` reads and validates it; every problem carries file:line:col and a hint, and
//! secret-looking values are masked wherever the file is quoted back.
//! Nothing here touches the network: an invalid inventory never reaches a host.

pub mod defaults;
mod mask;
mod model;
mod problem;
mod raw;
mod syntax;
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
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(path, &bytes).map_err(LoadError::Invalid)
}

/// Validates the bytes of an inventory; text that is not UTF-8 is a problem at its first bad byte.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Loaded, InventoryError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(path, text),
        Err(e) => Err(InventoryError::new(
            path,
            &String::from_utf8_lossy(bytes),
            vec![syntax::not_utf8(bytes, &e)],
        )),
    }
}

/// Validates inventory `text` as if read from `path` (relative paths resolve beside it).
pub fn parse(path: &Path, text: &str) -> Result<Loaded, InventoryError> {
    let fail = |problems| InventoryError::new(path, text, problems);
    if syntax::is_empty(text) {
        return Err(fail(vec![syntax::empty()]));
    }
    let raw: raw::RawInventory =
        serde_saphyr::from_str(text).map_err(|e| fail(vec![syntax::parser_problem(&e)]))?;
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
            warnings: problem::render_warnings(path, text, &checked.problems),
            inventory,
        }),
        None => Err(fail(checked.problems)),
    }
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
