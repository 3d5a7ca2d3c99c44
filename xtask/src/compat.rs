/*!
`cargo xtask compat PATH`: run an external `start-agent-session.sh` test suite, unmodified,
against the built launcher, then check that it left no sidecar running.

The suite is copied into a fresh directory beside a `start-agent-session.sh` that execs
`mosaic-launcher`; `TMPDIR` points into that directory so everything the suite makes with
`mktemp` is ours to remove.
*/

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::procfs;
use crate::util::{self, Result, TempDir};

#[derive(clap::Args)]
pub struct Args {
    /// The test script, e.g. ../shared/seed/test-start-agent-session.sh
    path: PathBuf,
}

pub fn run(args: &Args) -> Result {
    let script = std::fs::canonicalize(&args.path)
        .map_err(|e| format!("cannot read test suite {}: {e}", args.path.display()))?;
    util::build_release()?;
    let launcher = util::release_dir().join("mosaic-launcher");
    let hb = util::release_dir().join("mosaic-hb");
    let before = procfs::processes_of(&hb);

    let tmp = TempDir::new("compat")?;
    let (bin, scratch) = (tmp.path().join("suite"), tmp.path().join("tmp"));
    for dir in [&bin, &scratch] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let name = script
        .file_name()
        .ok_or("the test suite path names no file")?;
    let copy = bin.join(name);
    std::fs::copy(&script, &copy).map_err(|e| format!("cannot copy {}: {e}", script.display()))?;
    let shim = bin.join("start-agent-session.sh");
    let quoted = launcher.to_string_lossy().replace('\'', "'\\''");
    std::fs::write(&shim, format!("#!/bin/sh\nexec '{quoted}' \"$@\"\n"))
        .and_then(|()| set_executable(&shim))
        .map_err(|e| format!("cannot write {}: {e}", shim.display()))?;

    eprintln!(
        "xtask: running {} against {}",
        script.display(),
        launcher.display()
    );
    let out = Command::new("bash")
        .arg(&copy)
        .current_dir(&bin)
        .env("TMPDIR", &scratch)
        .env_remove("TMUX")
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    if !out.status.success() || !last.starts_with("ok") {
        return Err(format!(
            "the suite failed ({}); last line: {last:?}",
            out.status
        ));
    }

    let leaked = util::wait_for(Duration::from_secs(5), || {
        let now: Vec<u32> = procfs::processes_of(&hb)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        now.is_empty().then_some(())
    });
    if leaked.is_none() {
        let left: Vec<u32> = procfs::processes_of(&hb)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        return Err(format!(
            "the suite passed but left mosaic-hb running: pids {left:?}"
        ));
    }
    eprintln!("xtask: compat ok: the suite passed and left no sidecar running");
    Ok(())
}

fn set_executable(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}
