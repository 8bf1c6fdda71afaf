//! Atomic uploads: the contents go through stdin into `upload.sh`, which writes a temp
//! file beside the destination, checks its sha256 and renames it into place.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::exec::{self, Job, Privilege};
use super::{Connection, SshError};

const SCRIPT: &str = include_str!("upload.sh");

/// A file to place on a host.
#[derive(Clone)]
pub struct UploadRequest {
    /// Absolute path on the host.
    pub dest: String,
    pub contents: Vec<u8>,
    /// Permission bits, e.g. `0o600`.
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub privilege: Privilege,
}

impl UploadRequest {
    pub fn new(dest: impl Into<String>, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        UploadRequest {
            dest: dest.into(),
            contents: contents.into(),
            mode,
            owner: None,
            group: None,
            privilege: Privilege::User,
        }
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    pub fn privileged(mut self, sudo_password: Option<secrecy::SecretString>) -> Self {
        self.privilege = Privilege::Root { sudo_password };
        self
    }
}

impl std::fmt::Debug for UploadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Contents may be keys or tokens: only their size is shown.
        f.debug_struct("UploadRequest")
            .field("dest", &self.dest)
            .field("contents_bytes", &self.contents.len())
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("privilege", &self.privilege)
            .finish()
    }
}

pub(crate) async fn upload(conn: &Connection, req: UploadRequest) -> Result<(), SshError> {
    let UploadRequest {
        dest,
        contents,
        mode,
        owner,
        group,
        privilege,
    } = req;
    let contents = Zeroizing::new(contents);
    let fail = |reason: String| SshError::Upload {
        label: conn.label().to_string(),
        dest: dest.clone(),
        reason,
    };
    if !dest.starts_with('/') {
        return Err(fail("the destination must be an absolute path".to_string()));
    }
    if mode > 0o7777 {
        return Err(fail(format!("{mode:o} is not a file mode")));
    }
    for name in owner.iter().chain(group.iter()) {
        if name.is_empty() || name.contains([':', '\0']) {
            return Err(fail(format!("{name:?} is not a valid owner or group name")));
        }
    }
    let sum = hex::encode(Sha256::digest(contents.as_slice()));
    let mode = format!("{mode:o}");
    let args = [
        "sh",
        "-c",
        SCRIPT,
        "installer-upload",
        &dest,
        &sum,
        &mode,
        owner.as_deref().unwrap_or(""),
        group.as_deref().unwrap_or(""),
    ];
    let line = shlex::try_join(args)
        .map_err(|_| fail("the destination contains a NUL byte".to_string()))?;
    let shown = format!("upload to {dest}");
    let job = Job {
        shown: &shown,
        timeout: None,
        sink: None,
    };
    let out = exec::run(conn, &job, &line, Some(contents), &privilege).await?;
    if out.success() {
        return Ok(());
    }
    let stderr = out.stderr_str();
    let reason = match (stderr.trim(), out.exit_status) {
        ("", Some(code)) => format!("the upload script exited with status {code}"),
        ("", None) => "the upload script was killed".to_string(),
        (message, _) => message.to_string(),
    };
    Err(fail(reason))
}
