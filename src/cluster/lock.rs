//! One `up` or `reset` per cluster at a time: a lock file in the state directory, held for
//! the life of the returned handle (the OS drops it if the installer dies).

use super::Ctx;

pub fn lock_cluster(ctx: &Ctx) -> Result<std::fs::File, String> {
    let path = ctx.inventory.state_dir().join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another installer run holds {} for cluster {}; wait for it to finish",
            path.display(),
            ctx.inventory.cluster.name
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}
