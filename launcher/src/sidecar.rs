/*!
Starting the heartbeat sidecar:
`setsid <mosaic-hb> --pid - --file HB --interval N --idle-after S --agent A`.

`setsid` (from PATH) puts the sidecar in a session of its own, so it outlives a terminal that
hangs up. It is spawned right after tmux is asked for the session and reads the pane's pid
(and start time) from a pipe on its stdin once tmux has answered, so its start-up overlaps
tmux's work instead of following it; a launch that needs no sidecar closes the pipe and the sidecar
leaves without writing anything. We then wait for the `setsid`/`mosaic-hb` process itself:
`mosaic-hb` takes its lock and attaches to the pane *before* it daemonizes, so its exit status
says whether a sidecar is now running. Its stdout is /dev/null; its stderr is a pipe that
reaches EOF once the daemon has moved its own stderr to /dev/null, so `$(mosaic-launcher a)`
returns at once.
*/

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use mosaic_hb::target::Target;

/// How a sidecar start ended.
pub enum Started {
    Running,
    /// Another sidecar holds the file's lock (a racing launcher started it).
    AlreadyKept,
    /// The agent's process was already gone.
    TargetGone(String),
}

pub struct Sidecar {
    setsid: PathBuf,
    hb: PathBuf,
}

impl Sidecar {
    /// Finds `setsid` on PATH and `mosaic-hb` (override, next to us, or on PATH) before anything
    /// is started, so a missing piece leaves nothing behind.
    pub fn locate(hb_override: Option<&Path>) -> Result<Sidecar, String> {
        let setsid = on_path("setsid").ok_or("cannot find setsid on PATH (util-linux)")?;
        let hb = match hb_override {
            Some(hb) if is_executable(hb) => hb.to_path_buf(),
            Some(hb) => {
                return Err(format!(
                    "cannot use mosaic-hb {}: not an executable file",
                    hb.display()
                ))
            }
            None => beside_us("mosaic-hb")
                .or_else(|| on_path("mosaic-hb"))
                .ok_or(
                    "cannot find mosaic-hb next to mosaic-launcher or on PATH (set MOSAIC_HB_BIN)",
                )?,
        };
        Ok(Sidecar { setsid, hb })
    }

    /// Starts `setsid mosaic-hb --pid - ...` while tmux creates the session: the sidecar
    /// validates its arguments and prepares its file in parallel, then waits on its stdin for
    /// the pane's pid. That takes its start-up off the launch's critical path.
    pub fn spawn(
        &self,
        file: &Path,
        interval: &str,
        idle_after: &str,
        agent: &str,
    ) -> Result<Pending, String> {
        let child = Command::new(&self.setsid)
            .arg(&self.hb)
            .args(["--pid", "-", "--file"])
            .arg(file)
            .args(["--interval", interval, "--idle-after", idle_after])
            .args(["--agent", agent])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {}: {}",
                    self.setsid.display(),
                    mosaic_hb::why(&e)
                )
            })?;
        Ok(Pending {
            child: Some(child),
            hb: self.hb.clone(),
        })
    }
}

/// A sidecar that is starting and waits for its target. Dropping it without [`Pending::start`]
/// cancels it: its stdin closes, and it exits having written nothing.
pub struct Pending {
    child: Option<Child>,
    hb: PathBuf,
}

impl Pending {
    /// Hands the sidecar pane `pid`, with the pane's start time read here at once (so the
    /// sidecar refuses a stranger that took the PID in the meantime), and waits until it has
    /// daemonized or failed.
    pub fn start(mut self, pid: u32, file: &Path) -> Result<Started, String> {
        let mut child = self.child.take().expect("a pending sidecar starts once");
        let line = match Target::start_time(pid as i32) {
            Some(started) => format!("{pid} {started}\n"),
            None => format!("{pid}\n"),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A sidecar that already failed has closed its end: its exit status says why.
            let _ = stdin.write_all(line.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("cannot wait for mosaic-hb: {}", mosaic_hb::why(&e)))?;
        if out.status.success() {
            return Ok(Started::Running);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("mosaic-hb: ");
        if matches!(mosaic_hb::lock::is_held(file), Ok(true)) {
            return Ok(Started::AlreadyKept);
        }
        if let Err((gone, _)) = Target::attach(pid as i32, false, None) {
            return Ok(Started::TargetGone(format!(
                "pane pid {pid} {}",
                gone.describe()
            )));
        }
        let why = if err.is_empty() {
            out.status.to_string()
        } else {
            err.to_string()
        };
        Err(format!(
            "cannot start heartbeat sidecar {}: {why}",
            self.hb.display()
        ))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

fn beside_us(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(name);
    is_executable(&candidate).then_some(candidate)
}

/// The first executable `name` in `$PATH`, as the shell would find it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
