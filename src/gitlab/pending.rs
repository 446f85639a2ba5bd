//! Pending tokens: runners created in GitLab that no host holds yet.
//!
//! A freshly created runner's token is shown by GitLab once. Before it is
//! sent to the host it is saved on the controller (a 0600 file in a 0700
//! folder under the user's state folder) and removed only once the host's
//! config.toml holds it, so a run that dies between creating the runner and
//! writing the file reuses that runner next time instead of creating
//! another.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A saved runner token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    pub id: u64,
    pub token: String,
    pub token_expires_at: Option<String>,
    pub token_obtained_at: String,
}

/// Folder for the controller's own state.
fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("bootstrap");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/state/bootstrap")
}

/// Where the pending token of `host`'s runner `description` at `url` lives.
pub fn path(url: &str, host: &str, description: &str) -> PathBuf {
    let key = hex::encode(Sha256::digest(format!("{url}\n{host}\n{description}").as_bytes()));
    state_dir().join("pending-runners").join(format!("{}.json", &key[..32]))
}

/// The saved token at `path`, if there is a readable one.
pub fn load(path: &Path) -> Option<Pending> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice::<Pending>(&text).ok()
}

/// Save `p` at `path`: written to a temporary file, synced, renamed.
pub fn save(path: &Path, p: &Pending) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let ctx = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(ctx(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(ctx(&tmp))?;
    let text = serde_json::to_vec(p).map_err(std::io::Error::other)?;
    f.write_all(&text).and_then(|_| f.sync_all()).map_err(ctx(&tmp))?;
    std::fs::rename(&tmp, path).map_err(ctx(path))
}

/// Forget a saved token (the host holds it now, or it is stale).
pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_files_are_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bootstrap-pending-{}", std::process::id()));
        let path = dir.join("sub/x.json");
        let p = Pending { id: 1, token: "glrt-x".into(), token_expires_at: None, token_obtained_at: "2024-01-01T00:00:00Z".into() };
        save(&path, &p).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load(&path), Some(p));
        forget(&path);
        assert_eq!(load(&path), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
