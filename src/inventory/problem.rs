//! Inventory problems, each pinned to file:line:col with a hint on what to do.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn error(at: Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, at, message)
    }
    pub fn warning(at: Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, at, message)
    }
    fn new(severity: Severity, at: Location, message: impl Into<String>) -> Self {
        Problem {
            severity,
            line: at.line() as u32,
            column: at.column() as u32,
            message: message.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn at<T>(spanned: &Spanned<T>, message: impl Into<String>) -> Self {
        Self::error(spanned.referenced, message)
    }
    /// Renders `file:line:col: error: message`, the source line, a caret and the hint.
    pub fn render(&self, path: &Path, source: &str) -> String {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!(
            "{}:{}:{}: {kind}: {}",
            path.display(),
            self.line,
            self.column,
            self.message
        );
        if let Some(text) = source.lines().nth((self.line as usize).saturating_sub(1)) {
            let pad = " ".repeat((self.column as usize).saturating_sub(1));
            out.push_str(&format!("\n  | {text}\n  | {pad}^"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }
}

/// An inventory that cannot be used. Nothing has been contacted when this is returned.
#[derive(Debug)]
pub struct InventoryError {
    pub path: PathBuf,
    pub source_text: String,
    pub problems: Vec<Problem>,
}

impl InventoryError {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors().count();
        writeln!(
            f,
            "inventory {} has {count} error{}:",
            self.path.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "{}", p.render(&self.path, &self.source_text))?;
        }
        write!(f, "fix the inventory and run again; no host was contacted")
    }
}

impl std::error::Error for InventoryError {}
