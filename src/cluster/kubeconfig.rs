//! `installer kubeconfig [-o FILE]`: the admin kubeconfig (server = the control-plane
//! endpoint), written to FILE (0600) or printed.

use std::path::Path;

use super::phases::write_admin_kubeconfig;
use super::{Ctx, PhaseError, connect_to_leader};

pub async fn kubeconfig(ctx: &mut Ctx, output: Option<&Path>) -> Result<(), PhaseError> {
    let err = |m: String| PhaseError::new("Kubeconfig", m);
    connect_to_leader(ctx).await?;
    let path = write_admin_kubeconfig(ctx).await.map_err(err)?;
    let text = std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    match output {
        Some(dest) => {
            crate::local_fs::write_atomic(dest, &text, 0o600)
                .map_err(|e| err(format!("cannot write {}: {e}", dest.display())))?;
            ctx.reporter.print(&format!("wrote {}", dest.display()));
        }
        // Printing credentials is what was asked for: deliberately not redacted.
        None => print!("{}", String::from_utf8_lossy(&text)),
    }
    Ok(())
}
