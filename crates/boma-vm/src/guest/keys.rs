//! The harness's own SSH key pair: generated once, private key 0600, never `~/.ssh`.

use std::os::unix::fs::PermissionsExt;

use boma_exec::CmdExt;
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{Shell, cmd};

use crate::VmError;

/// The key pair in `dir` (`id_ed25519`, `id_ed25519.pub`), created if missing.
pub fn ensure_keypair(sh: &Shell, dir: &Utf8Path) -> Result<(Utf8PathBuf, String), VmError> {
    let private = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    if !private.exists() || !public.exists() {
        std::fs::create_dir_all(dir).map_err(|e| VmError::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| VmError::io(dir, e))?;
        let _ = std::fs::remove_file(&private);
        let _ = std::fs::remove_file(&public);
        cmd!(
            sh,
            "ssh-keygen -q -t ed25519 -N '' -C boma-integration-harness -f {private}"
        )
        .exec()
        .run()?;
    }
    // ssh refuses a private key others can read; fix it rather than fail later, obscurely.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| VmError::io(&private, e))?;
    let key = std::fs::read_to_string(&public).map_err(|e| VmError::io(&public, e))?;
    Ok((private, key.trim().to_owned()))
}
