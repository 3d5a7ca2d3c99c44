/*!
`cargo xtask install [--root DIR]`: the binaries, built static and non-PIE as `cargo
xtask` always builds them (see [`util::build_release`]), copied into `DIR/bin`.

The default root is cargo's own (`$CARGO_HOME`, else `~/.cargo`), so the binaries land where
`cargo install` would put them, already on most users' `PATH`. Each file is copied beside its
destination and renamed over it, so a binary that is running (a sidecar, for days) is replaced
for the next start, never written in place.
*/

use std::path::{Path, PathBuf};

use crate::util::{self, Result};

/// What `install` copies: everything [`util::build_release`] builds.
pub const BINARIES: [&str; 6] = [
    "mosaic-launcher",
    "mosaic-fleet",
    "mosaic-respawn",
    "mosaic-hb",
    "mosaic-hb-exporter",
    "mosaic-log",
];

#[derive(clap::Args)]
pub struct Args {
    /// Install into DIR/bin [default: $CARGO_HOME, else ~/.cargo].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result {
    let root = match &args.root {
        Some(root) => std::path::absolute(root)
            .map_err(|e| format!("invalid --root {}: {e}", root.display()))?,
        None => default_root()?,
    };
    let bin = root.join("bin");
    eprintln!(
        "xtask: building {} (release, static; the first build takes a few minutes)",
        BINARIES.join(", ")
    );
    util::build_release()?;
    std::fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let from = util::release_dir();
    for name in BINARIES {
        let dest = bin.join(name);
        replace(&from.join(name), &dest)?;
        println!("installed {}", dest.display());
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir == bin));
    if !on_path {
        println!("note: {} is not on your PATH", bin.display());
    }
    Ok(())
}

fn default_root() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".cargo")),
        None => Err("neither CARGO_HOME nor HOME is set: give --root DIR".into()),
    }
}

/// Copies `from` to `to` through a temp file in `to`'s directory and a rename.
fn replace(from: &Path, to: &Path) -> Result {
    let tmp = to.with_file_name(format!(
        ".{}.xtask-install.{}",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(from, &tmp)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot install {}: {e}", to.display())
    })
}
