use std::path::PathBuf;

/// Everything the PKI can refuse. Messages name the file and say what to do next; none ever
/// carries key material or a token secret.
#[derive(thiserror::Error, Debug)]
pub enum PkiError {
    #[error("cannot generate the {what}: {reason}; this is a bug or a broken crypto library")]
    Generate { what: &'static str, reason: String },

    #[error(
        "no cluster CA files in {dir}; the installer creates them on a new cluster or \
         recovers them from the masters of an existing one",
        dir = .dir.display()
    )]
    NoLocalCa { dir: PathBuf },

    #[error("{file} is missing; {fix}")]
    Missing { file: String, fix: String },

    #[error("{file}: {problem}; {fix}")]
    Invalid {
        file: String,
        problem: String,
        fix: String,
    },

    #[error("cannot {action} {path}: {source}; check the path and its permissions", path = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("not a usable certificate: {0}; pass a single PEM \"CERTIFICATE\" block")]
    Certificate(String),

    #[error(
        "invalid bootstrap token: {0}; a token is 6 and then 16 characters from a-z and 0-9, \
         joined by a dot"
    )]
    InvalidToken(&'static str),
}
