//! Inventory problems, each pinned to file:line:col with a hint on what to do.
//!
//! Everything shown goes through the file's `SourceView`: secret-looking values are masked in
//! the quoted line, in messages and hints, in text and in JSON alike.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::mask::SourceView;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
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
            // An unknown location is (0, 0); the file's start is the best we can say then.
            line: (at.line() as u32).max(1),
            column: (at.column() as u32).max(1),
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

    /// The same problem with every secret of the file scrubbed from its message and hint.
    pub(super) fn masked(mut self, view: &SourceView) -> Self {
        self.message = view.scrub(&self.message);
        self.hint = self.hint.map(|h| view.scrub(&h));
        self
    }

    /// Renders `file:line:col: error: message`, the (masked) source line, a caret and the hint.
    pub(super) fn render(&self, path: &Path, view: &SourceView) -> String {
        let mut out = format!(
            "{}:{}:{}: {}: {}",
            path.display(),
            self.line,
            self.column,
            self.severity.label(),
            self.message
        );
        if let Some(text) = view.line(self.line) {
            let column = view.column(self.line, self.column) as usize;
            // Tabs stay tabs under the line, so the caret lines up whatever the tab width.
            let pad: String = text
                .chars()
                .chain(std::iter::repeat(' '))
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n  | {text}\n  | {pad}^"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }

    /// One JSON object for `--output json`, in the shape of the other events.
    pub(super) fn to_json(&self, path: &Path) -> serde_json::Value {
        serde_json::json!({
            "event": "inventory_problem",
            "level": match self.severity {
                Severity::Error => "error",
                Severity::Warning => "warn",
            },
            "file": path.display().to_string(),
            "line": self.line,
            "col": self.column,
            "message": self.message,
            "hint": self.hint,
        })
    }
}

/// An inventory that cannot be used. Nothing has been contacted when this is returned.
///
/// It keeps the file only as it may be shown (secrets masked), so even `{:?}` of it is safe.
#[derive(Debug)]
pub struct InventoryError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
    view: SourceView,
}

impl InventoryError {
    /// `problems` found in `text` read from `path`; their messages are scrubbed of secrets here.
    pub(super) fn new(path: &Path, text: &str, problems: Vec<Problem>) -> Self {
        let view = SourceView::new(text);
        let mut problems: Vec<Problem> = problems.into_iter().map(|p| p.masked(&view)).collect();
        // In file order, whatever order the checks ran in.
        problems.sort_by_key(|p| (p.line, p.column));
        InventoryError {
            path: path.to_path_buf(),
            problems,
            view,
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// One line of JSON per problem, for `--output json`.
    pub fn json_lines(&self) -> String {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| p.to_json(&self.path).to_string())
            .collect();
        lines.join("\n")
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}", p.render(&self.path, &self.view))?;
        }
        // The summary says "error" without a colon: each problem carries the one "error:".
        let count = self.errors().count();
        write!(
            f,
            "inventory {} has {count} error{}; fix it and run again (no host was contacted)",
            self.path.display(),
            if count == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for InventoryError {}

/// Warnings of a valid inventory, rendered like errors (secrets masked).
pub(super) fn render_warnings(path: &Path, text: &str, problems: &[Problem]) -> Vec<String> {
    if problems.is_empty() {
        return Vec::new();
    }
    let view = SourceView::new(text);
    problems
        .iter()
        .map(|p| p.clone().masked(&view).render(path, &view))
        .collect()
}
