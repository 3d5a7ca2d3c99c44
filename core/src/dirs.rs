/*!
Where heartbeat files live, and how their directory is made safe to use.

One rule for the default directory, shared by `mosaic-launcher`, `mosaic-hb` and
`mosaic-hb status`: `$XDG_RUNTIME_DIR/mosaic/heartbeat` when the session has a runtime directory,
else `/tmp/mosaic-<uid>/heartbeat`. A default directory is trusted only when every level is a
real directory of ours, closed to group and others, the rule tmux applies to its socket
directory: the `/tmp` fallback lives in a world-writable directory, and `XDG_RUNTIME_DIR` may
name someone else's (`su` without `-` keeps the previous user's). Each level is checked before
anything is created inside it; `$XDG_RUNTIME_DIR` itself is checked, never created.
*/

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The environment variable that names the heartbeat directory.
pub const ENV_DIR: &str = "MOSAIC_HEARTBEAT_RUN_DIR";

/// The default heartbeat directory for this user.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(xdg) if Path::new(&xdg).is_absolute() => Path::new(&xdg).join("mosaic/heartbeat"),
        _ => tmp_root().join("heartbeat"),
    }
}

/// `$MOSAIC_HEARTBEAT_RUN_DIR` when set and not empty, else [`default_dir`].
pub fn dir_from_env() -> PathBuf {
    match std::env::var_os(ENV_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_dir(),
    }
}

fn tmp_root() -> PathBuf {
    let uid = nix::unistd::geteuid();
    PathBuf::from(format!("/tmp/mosaic-{uid}"))
}

/// Creates `dir` (and missing parents) with mode 0700. When `dir` is a default directory, also
/// refuses it unless every level (`$XDG_RUNTIME_DIR`, `mosaic`, `heartbeat`; or
/// `/tmp/mosaic-<uid>`, `heartbeat`) is a real directory owned by us and not writable by group
/// or others.
pub fn prepare(dir: &Path) -> Result<(), String> {
    if let Some((base, levels)) = default_levels(dir) {
        if let Some(base) = base {
            check_private(&base)?;
        }
        for level in levels {
            create(&level, false)?;
            check_private(&level)?;
        }
        return Ok(());
    }
    create(dir, true)?;
    if !dir.is_dir() {
        return Err(format!(
            "heartbeat dir {} is not a directory",
            dir.display()
        ));
    }
    Ok(())
}

/// When `dir` is a default directory (by this process's environment): the level that must
/// already be ours (`$XDG_RUNTIME_DIR`; none for `/tmp`, which is everyone's), and the levels
/// to create and check, outermost first.
fn default_levels(dir: &Path) -> Option<(Option<PathBuf>, [PathBuf; 2])> {
    let root = tmp_root();
    if dir == root.join("heartbeat") {
        return Some((None, [root, dir.to_path_buf()]));
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(xdg) if Path::new(&xdg).is_absolute() => {
            let xdg = PathBuf::from(xdg);
            let mosaic = xdg.join("mosaic");
            (dir == mosaic.join("heartbeat")).then(|| (Some(xdg), [mosaic, dir.to_path_buf()]))
        }
        _ => None,
    }
}

/// "cannot WHAT heartbeat dir DIR: WHY", the one way every reader and writer says it.
pub fn cannot(what: &str, dir: &Path, err: &std::io::Error) -> String {
    format!(
        "cannot {what} heartbeat dir {}: {}",
        dir.display(),
        crate::why(err)
    )
}

fn create(dir: &Path, parents: bool) -> Result<(), String> {
    match DirBuilder::new().recursive(parents).mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists || parents => {
            Err(cannot("create", dir, &e))
        }
        _ => Ok(()),
    }
}

fn check_private(dir: &Path) -> Result<(), String> {
    let refuse = |why: String| {
        Err(format!(
            "refusing heartbeat dir {}: {why} (set {ENV_DIR} or XDG_RUNTIME_DIR)",
            dir.display()
        ))
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| cannot("inspect", dir, &e))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_dir() {
        return refuse("it is not a real directory".into());
    }
    if meta.uid() != me {
        return refuse(format!("it is owned by uid {}, not {me}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "it is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_creates_private_dirs() {
        let base = std::env::temp_dir().join(format!("mosaic-dirs-test-{}", std::process::id()));
        let dir = base.join("a/b");
        prepare(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn private_dirs_must_be_ours_closed_and_real() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("mosaic-dirs-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        DirBuilder::new().mode(0o700).create(&base).unwrap();
        assert!(check_private(&base).is_ok());

        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = check_private(&base).unwrap_err();
        assert!(
            err.contains("writable by group or others (mode 770)"),
            "{err}"
        );
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();

        let link = base.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&base, &link).unwrap();
        let err = check_private(&link).unwrap_err();
        assert!(err.contains("not a real directory"), "{err}");
        std::fs::remove_file(&link).unwrap();

        // Only root can hand a directory to another user; elsewhere this part proves nothing.
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&base, Some(65534), None).unwrap();
            let err = check_private(&base).unwrap_err();
            assert!(err.contains("owned by uid 65534, not 0"), "{err}");
        } else {
            eprintln!("SKIPPED the other-owner case: needs root to chown");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn prepare_refuses_a_file() {
        let file = std::env::temp_dir().join(format!("mosaic-dirs-file-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let err = prepare(&file).unwrap_err();
        assert!(err.contains("cannot create heartbeat dir"), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
