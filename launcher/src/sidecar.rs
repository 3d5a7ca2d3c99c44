/*!
Starting the heartbeat sidecar:
`setsid <mosaic-hb> --pid - --file HB --interval N --idle-after S --agent A`, the launcher's side
of [`mosaic_core::handover`].

`setsid` (from PATH) puts the sidecar in a session of its own, so it outlives a terminal that
hangs up; `mosaic-fleet up`, which starts a hundred at a time, spares that exec per agent and
has the sidecar leave the session itself (`mosaic-hb --setsid`, [`Detach::Itself`]). It is
spawned right after tmux is asked for the session and reads the pane's pid
(and start time) from a pipe on its stdin once tmux has answered, so its start-up overlaps
tmux's work instead of following it; a launch that needs no sidecar closes the pipe and the
sidecar leaves without writing anything. Handed its pane, `mosaic-hb` takes its lock,
attaches, writes its first record and says so on its stdout ([`mosaic_core::handover::READY`]):
we return on that line, and the sidecar, still our child, is adopted by init when we exit (no
daemon's double fork on the launch's path). A sidecar that cannot run exits instead, and its
exit status says why. Its stderr is a pipe it gives up before it answers, so
`$(mosaic-launcher a)` returns at once.
*/

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mosaic_core::handover::{Answer, Request, Target, READY};
use mosaic_core::proc::process_state;
use mosaic_core::record::Status;
use mosaic_core::status::classify;

use crate::child::{self, Cut, Finished, Running};
use crate::launch::Heartbeat;

/// How a sidecar start ended.
pub enum Started {
    Running,
    /// Another sidecar holds the file's lock (a racing launcher started it).
    AlreadyKept,
    /// The agent's process was already gone.
    TargetGone(String),
}

/// How a sidecar leaves the launcher's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// Through `setsid` from PATH: the launcher's contract (a stand-in `setsid` sees the
    /// sidecar's whole command line).
    Setsid,
    /// By itself (`mosaic-hb --setsid`): one exec fewer per agent, for `mosaic-fleet up`.
    Itself,
}

pub struct Sidecar {
    /// `setsid(1)`, for [`Detach::Setsid`].
    setsid: Option<PathBuf>,
    hb: PathBuf,
}

impl Sidecar {
    /// Finds `mosaic-hb` (override, next to us, or on PATH), and `setsid` on PATH when it is
    /// the way out, before anything is started, so a missing piece leaves nothing behind.
    pub fn locate(hb_override: Option<&Path>, detach: Detach) -> Result<Sidecar, String> {
        let setsid = match detach {
            Detach::Setsid => {
                Some(on_path("setsid").ok_or("cannot find setsid on PATH (util-linux)")?)
            }
            Detach::Itself => None,
        };
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
    /// `timeout` bounds every wait for it. (It starts in our process group, not as a group
    /// leader: `setsid` would then fork and return at once, its exit status saying nothing,
    /// and `mosaic-hb --setsid` would fail.)
    pub fn spawn(
        &self,
        file: &Path,
        hb: &Heartbeat,
        agent: &str,
        socket: &str,
        timeout: Duration,
    ) -> Result<Pending, String> {
        let request = Request {
            file,
            interval: hb.interval,
            idle_after: hb.idle_after,
            agent,
            socket,
            // A pane's process leads its session: what it leaves behind is ended at its death.
            reap: Some(mosaic_core::teardown::DEFAULT_GRACE),
            restart: &hb.restart,
            hook: hb
                .hook
                .as_ref()
                .map(|(command, timeout)| (command.as_os_str(), *timeout)),
            setsid: self.setsid.is_none(),
        };
        let mut cmd = match &self.setsid {
            Some(setsid) => {
                let mut cmd = Command::new(setsid);
                cmd.arg(&self.hb);
                cmd
            }
            None => Command::new(&self.hb),
        };
        cmd.args(request.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = child::spawn(&mut cmd, false).map_err(|e| {
            format!(
                "cannot run {}: {}",
                self.setsid.as_ref().unwrap_or(&self.hb).display(),
                mosaic_core::why(&e)
            )
        })?;
        Ok(Pending {
            child: Some(child),
            hb: self.hb.clone(),
            timeout,
        })
    }
}

/// A sidecar that is starting and waits for its target. Dropping it without [`Pending::start`]
/// cancels it: its stdin closes, and it exits having written nothing.
pub struct Pending {
    child: Option<Running>,
    hb: PathBuf,
    timeout: Duration,
}

impl Pending {
    /// Hands the sidecar pane `pid`, with the pane's start time read here at once (so the
    /// sidecar refuses a stranger that took the PID in the meantime), and waits until it has
    /// written its first record (it says `running`) or failed (it exits).
    pub fn start(self, pid: i32) -> Result<Started, String> {
        self.hand(pid).answer()
    }

    /// Hands the sidecar pane `pid` (as [`Pending::start`]) without waiting for its answer:
    /// past this the launch is committed to the pane.
    pub fn hand(mut self, pid: i32) -> Handed {
        let mut child = self.child.take().expect("a pending sidecar starts once");
        let target = Target::now(pid);
        if let Some(mut stdin) = child.stdin() {
            // A sidecar that already failed has closed its end: its exit status says why.
            let _ = stdin.write_all(target.line().as_bytes());
        }
        Handed {
            child: Some(child),
            hb: std::mem::take(&mut self.hb),
            timeout: self.timeout,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // EOF on its stdin: it leaves at once, having written nothing.
            let _ = child.finish(Instant::now() + self.timeout, None);
        }
    }
}

/// A sidecar handed its pane ([`Pending::hand`]), its answer still to come.
pub struct Handed {
    child: Option<Running>,
    hb: PathBuf,
    timeout: Duration,
}

impl Handed {
    /// Waits (the timeout from now) until the sidecar has written its first record (it says
    /// `running`) or failed (it exits).
    pub fn answer(mut self) -> Result<Started, String> {
        let child = self.child.take().expect("a sidecar answers once");
        // Past the hand-over the launch is committed: stop signals wait until it is done.
        let out = child
            .finish_or_said(READY, Instant::now() + self.timeout, None)
            .map_err(|cut| match cut {
                Cut::TimedOut => format!(
                    "heartbeat sidecar {} did not start within {} (MOSAIC_TMUX_TIMEOUT)",
                    self.hb.display(),
                    crate::tmux::seconds(self.timeout)
                ),
                Cut::Io(e) => format!("cannot wait for mosaic-hb: {}", mosaic_core::why(&e)),
                // Not asked for (no `Stop` given).
                Cut::Interrupted(sig) => format!("mosaic-hb start cut by signal {sig}"),
            })?;
        let out = match out {
            // Its first record is written.
            Finished::Said => return Ok(Started::Running),
            Finished::Exited(out) => out,
        };
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("mosaic-hb: ");
        match Answer::from_code(out.status.code()) {
            // Exit 0 without the line: not a sidecar we know (a stand-in `setsid`, say).
            Answer::Running => Ok(Started::Running),
            Answer::Kept => Ok(Started::AlreadyKept),
            Answer::TargetGone => Ok(Started::TargetGone(format!("pane {err}"))),
            Answer::Failed => {
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
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // Unanswered: it keeps the pane; only its start-up is waited for.
            let _ = child.finish_or_said(READY, Instant::now() + self.timeout, None);
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

/// Who keeps a heartbeat file now, as seen through its lock and its record.
#[derive(Debug)]
pub enum Keeper {
    /// Nobody holds the lock.
    Nobody,
    /// A sidecar beating on time for the pane.
    Healthy,
    /// A sidecar that keeps the file for another process (an agent of the same name on
    /// another tmux socket): `hb_pid` watches `pid`.
    Other { hb_pid: Option<i32>, pid: i32 },
    /// A sidecar that holds the lock but does not beat: stopped, hung, or gone.
    Stuck { hb_pid: Option<i32>, why: String },
}

/// How long a record that says `restarting` for another pid may take to name the pane its
/// sidecar has just respawned.
const RESPAWN_RECORD: Duration = Duration::from_secs(1);

/// Reads the keeper of `file` for pane `pane_pid`, waiting until `deadline` for the first
/// record of a keeper that is just starting (a racing launcher's).
pub fn keeper(file: &Path, pane_pid: i32, deadline: Instant) -> Keeper {
    if !matches!(mosaic_core::lock::is_held(file), Ok(true)) {
        return Keeper::Nobody;
    }
    // Judge the holder by its own record: until the holder has written one (a sidecar that
    // is just starting), the file may still hold its dead predecessor's. A supervising sidecar
    // that has just respawned the pane still says `restarting` for the pane before: it names
    // the new one next, so give it a moment before calling the file another's.
    let respawned_by = deadline.min(Instant::now() + RESPAWN_RECORD);
    let record = loop {
        let record = mosaic_core::record::read(file);
        // The lock file names its holder only once the holder is in the background: a dead pid
        // there is the predecessor's, not yet overwritten.
        let holder = mosaic_core::lock::holder(file)
            .filter(|&p| !matches!(process_state(p), None | Some('Z' | 'X')));
        match record {
            // A dead process holds no lock: a dead pid in the lock file is a predecessor's,
            // not yet overwritten by the new holder.
            Some(r)
                if r.hb_pid.is_some()
                    && r.hb_pid == holder
                    && (r.pid == pane_pid
                        || r.status != Status::Restarting
                        || Instant::now() >= respawned_by) =>
            {
                break r
            }
            _ if Instant::now() >= deadline => {
                return Keeper::Stuck {
                    hb_pid: mosaic_core::lock::holder(file),
                    why: "it has written no record".into(),
                }
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
        if !matches!(mosaic_core::lock::is_held(file), Ok(true)) {
            return Keeper::Nobody;
        }
    };
    let hb_pid = record.hb_pid;
    if record.pid != pane_pid {
        return Keeper::Other {
            hb_pid,
            pid: record.pid,
        };
    }
    let state = hb_pid.and_then(process_state);
    match state {
        Some('T' | 't') => {
            return Keeper::Stuck {
                hb_pid,
                why: "it is stopped".into(),
            }
        }
        None | Some('Z' | 'X') => {
            return Keeper::Stuck {
                hb_pid,
                why: "its process is not running".into(),
            }
        }
        _ => {}
    }
    // Late, by the one rule `status` applies.
    let now = chrono::Utc::now();
    if let Some(age) = classify::late(&record, now, classify::STALE_AFTER) {
        let interval = record.interval.unwrap_or(classify::DEFAULT_INTERVAL);
        return Keeper::Stuck {
            hb_pid,
            why: format!("its last beat is {age:.1}s old at a {interval}s interval"),
        };
    }
    Keeper::Healthy
}

/// A supervising sidecar that will start the dead pane `dead` again: the live keeper of
/// `file`, whose record says `restarting` for that very pid. Returns the sidecar's pid and
/// when the restart is due.
pub fn restarting(file: &Path, dead: i32) -> Option<(i32, Option<DateTime<Utc>>)> {
    if !matches!(mosaic_core::lock::is_held(file), Ok(true)) {
        return None;
    }
    let record = mosaic_core::record::read(file)?;
    let hb_pid = record.hb_pid?;
    let ours = record.status == Status::Restarting
        && record.pid == dead
        && mosaic_core::lock::holder(file) == Some(hb_pid)
        && !matches!(process_state(hb_pid), None | Some('Z' | 'X' | 'T' | 't'));
    ours.then_some((hb_pid, record.lifecycle.restart_at))
}

/// Ends a stuck keeper of `file` (only a `mosaic-hb` process, only the lock's holder) and
/// waits until its lock is free.
pub fn end_stuck(file: &Path, hb_pid: Option<i32>, deadline: Instant) -> Result<(), String> {
    let holder = mosaic_core::lock::holder(file).filter(|&p| Some(p) == hb_pid);
    if let Some(pid) = holder.filter(|&p| is_mosaic_hb(p)) {
        // A sidecar that holds the file's lock but does not beat.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    while matches!(mosaic_core::lock::is_held(file), Ok(true)) {
        if Instant::now() >= deadline {
            return Err(format!(
                "heartbeat file {} is locked by a sidecar that does not beat{} and would not end",
                file.display(),
                holder.map_or(String::new(), |p| format!(" (pid {p})"))
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn is_mosaic_hb(pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    argv0.ends_with(b"mosaic-hb")
}
