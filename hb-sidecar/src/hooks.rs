/*!
Event hooks (`--on-event CMD`): the operator's command, run as `/bin/sh -c CMD` when something
happens to the agent (`started`, `exited`, `restarting`, `failed`, `stopped`, `busy`, `idle`,
`waiting`), so a person or a program hears of it without a Prometheus.

The [`crate::writer`] notes each event as it writes the record that tells it ([`Hooks::push`]);
the one wait point ([`crate::wait`]) runs them: it starts the next one before it sleeps, has the
running hook's pidfd in its `ppoll`, and reaps it with `WNOHANG` once that is readable. So:

- one hook at a time; later events wait in a queue of [`QUEUE`], in order; one more is
  dropped and counted (`hook_dropped=`), except a final one (`exited`, `stopped`, `failed`),
  which takes the place of the newest queued event instead;
- no process while nothing happens, none per beat;
- a hook still running at `--hook-timeout` gets SIGKILL, through its process group (it leads
  one of its own; its pid, not yet reaped, cannot name anyone else's group), and counts as a
  failure, as does a non-zero exit (`hook_failures=`);
- the values are in the environment only (`MOSAIC_AGENT`, `MOSAIC_EVENT`, ...), never in the
  command string; stdin is /dev/null, stdout and stderr go to the hooks' log
  (`.AGENT.hb.hook.log` beside the record, 0600, opened `O_NOFOLLOW`, started afresh before a
  run once over [`HOOK_LOG_CAP`]), with a line of ours before and after each run; every other
  descriptor of the sidecar is close-on-exec.
*/

use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use nix::fcntl::{openat, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use mosaic_core::activity::Activity;
use mosaic_core::layout::{hook_log_name, HOOK_LOG_CAP};

/// How many events wait for the running hook, at most.
pub const QUEUE: usize = 16;

/// How often a running hook is looked at without a pidfd (`--no-pidfd`, kernels before 5.3).
const NO_PIDFD_POLL: Duration = Duration::from_millis(100);

/// What happened, as `MOSAIC_EVENT` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookEvent {
    /// The agent's process runs: the first record, or the first after a restart.
    Started,
    /// It exited and nothing restarts it (`status=exited`).
    Exited,
    /// It died and its restart policy starts it again (`status=restarting`).
    Restarting,
    /// It died once too often: supervision gave up (`status=failed`).
    Failed,
    /// A deliberate stop (`status=stopped`), never `exited`.
    Stopped,
    Busy,
    Idle,
    Waiting,
}

impl HookEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Started => "started",
            HookEvent::Exited => "exited",
            HookEvent::Restarting => "restarting",
            HookEvent::Failed => "failed",
            HookEvent::Stopped => "stopped",
            HookEvent::Busy => "busy",
            HookEvent::Idle => "idle",
            HookEvent::Waiting => "waiting",
        }
    }

    /// The sidecar's last event: never dropped.
    fn is_final(self) -> bool {
        matches!(
            self,
            HookEvent::Exited | HookEvent::Stopped | HookEvent::Failed
        )
    }

    /// Whether the agent's last exit status or signal goes with it.
    fn tells_a_death(self) -> bool {
        matches!(
            self,
            HookEvent::Exited | HookEvent::Restarting | HookEvent::Failed
        )
    }
}

impl From<Activity> for HookEvent {
    fn from(activity: Activity) -> Self {
        match activity {
            Activity::Busy => HookEvent::Busy,
            Activity::Idle => HookEvent::Idle,
            Activity::Waiting => HookEvent::Waiting,
        }
    }
}

/// An event as it was when it happened: a queued one runs later, with these values.
#[derive(Clone, Copy, Debug)]
pub struct Happened {
    pub event: HookEvent,
    pub exit_status: Option<i32>,
    pub exit_signal: Option<i32>,
    pub restarts: u32,
    pub at: DateTime<Utc>,
}

/// The event before, for `MOSAIC_PREVIOUS`.
#[derive(Clone, Copy)]
struct Queued {
    happened: Happened,
    previous: Option<HookEvent>,
}

/// What the hooks' environment says of the agent, the same for every event.
pub struct Place {
    pub agent: String,
    pub socket: String,
    pub hb_file: PathBuf,
}

/// The event hook of one agent: its queue, the hook running, and the counts the record shows.
pub struct Hooks {
    command: OsString,
    timeout: Duration,
    place: Place,
    dir: OwnedFd,
    log_name: CString,
    use_pidfd: bool,
    queue: VecDeque<Queued>,
    previous: Option<HookEvent>,
    running: Option<Running>,
    /// Hooks that exited non-zero, were killed at the timeout, or could not be started.
    pub failures: u32,
    /// Events no hook ran for.
    pub dropped: u32,
}

struct Running {
    child: Child,
    pidfd: Option<OwnedFd>,
    event: HookEvent,
    began: Instant,
    deadline: Instant,
    killed: bool,
    log: Option<File>,
}

impl Hooks {
    /// Hooks running `command` for the heartbeat file `name` in directory `dir`.
    pub fn new(
        command: OsString,
        timeout: Duration,
        place: Place,
        (dir, name): (BorrowedFd, &CStr),
        use_pidfd: bool,
    ) -> io::Result<Hooks> {
        Ok(Hooks {
            command,
            timeout,
            place,
            dir: dir.try_clone_to_owned()?,
            log_name: hook_log_name(name),
            use_pidfd,
            queue: VecDeque::with_capacity(QUEUE),
            previous: None,
            running: None,
            failures: 0,
            dropped: 0,
        })
    }

    /// Notes an event; its hook runs when the ones before it are done.
    pub fn push(&mut self, happened: Happened) {
        let queued = Queued {
            happened,
            previous: self.previous.replace(happened.event),
        };
        if self.queue.len() >= QUEUE {
            self.dropped += 1;
            if !happened.event.is_final() {
                return;
            }
            self.queue.pop_back();
        }
        self.queue.push_back(queued);
    }

    /// Whether a hook runs or waits.
    pub fn busy(&self) -> bool {
        self.running.is_some() || !self.queue.is_empty()
    }

    /// The running hook's pidfd, readable once it has exited.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.running.as_ref()?.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// When the running hook next needs a look without its pidfd being readable: its
    /// timeout (or, without a pidfd, soon).
    pub fn deadline(&self) -> Option<Instant> {
        let running = self.running.as_ref()?;
        let soon = || Instant::now() + NO_PIDFD_POLL;
        match (running.pidfd.is_some(), running.killed) {
            (true, false) => Some(running.deadline),
            (true, true) => None,
            (false, false) => Some(running.deadline.min(soon())),
            (false, true) => Some(soon()),
        }
    }

    /// Reaps the running hook if it is done, kills it if its time is up, and starts the next.
    /// Spawns nothing and makes no system call while nothing is queued or running.
    pub fn service(&mut self) {
        if let Some(running) = &mut self.running {
            match running.child.try_wait() {
                Ok(Some(status)) => {
                    let running = self.running.take().expect("checked");
                    self.finished(running, Some(status));
                }
                Ok(None) if !running.killed && Instant::now() >= running.deadline => {
                    // Its pid is not reaped yet, so its group id is still its own.
                    let group = Pid::from_raw(running.child.id() as i32);
                    let _ = killpg(group, Signal::SIGKILL);
                    running.killed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    crate::log(format_args!("cannot wait for the event hook: {e}"));
                    let running = self.running.take().expect("checked");
                    self.finished(running, None);
                }
            }
        }
        while self.running.is_none() {
            let Some(next) = self.queue.pop_front() else {
                break;
            };
            match self.spawn(next) {
                Ok(running) => self.running = Some(running),
                Err(e) => {
                    self.failures += 1;
                    crate::log(format_args!(
                        "cannot run the {} hook: {}",
                        next.happened.event.as_str(),
                        mosaic_core::why(&e)
                    ));
                }
            }
        }
    }

    /// Gives up on what is left (a second stop signal while the last hooks run): the running
    /// hook's group is killed, the queue dropped. Nothing is waited for: the sidecar leaves.
    pub fn abandon(&mut self) {
        if let Some(running) = self.running.take() {
            if !running.killed {
                let _ = killpg(Pid::from_raw(running.child.id() as i32), Signal::SIGKILL);
            }
            crate::log(format_args!(
                "the {} hook was killed: the sidecar was told to stop again",
                running.event.as_str()
            ));
        }
        self.dropped += u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        self.queue.clear();
    }

    fn finished(&mut self, mut running: Running, status: Option<ExitStatus>) {
        let ok = !running.killed && status.is_some_and(|s| s.success());
        if !ok {
            self.failures += 1;
        }
        let how = match status {
            _ if running.killed => format!(
                "killed after {}s (--hook-timeout)",
                mosaic_core::validate::format_interval(self.timeout)
            ),
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(sig)) => match mosaic_core::death::signal_name(sig) {
                    Some(name) => format!("killed by SIG{name}"),
                    None => format!("killed by signal {sig}"),
                },
                _ => status.to_string(),
            },
            None => "not waited for".into(),
        };
        if let Some(log) = &mut running.log {
            let took = running.began.elapsed().as_secs_f64();
            let _ = writeln!(
                log,
                "== {} hook: {how} after {took:.1}s",
                running.event.as_str()
            );
        }
    }

    fn spawn(&self, queued: Queued) -> io::Result<Running> {
        let Queued { happened, previous } = queued;
        let mut log = self.open_log();
        let (stdout, stderr) = match &mut log {
            Some(file) => {
                let _ = writeln!(
                    file,
                    "== {} {} hook",
                    happened.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    happened.event.as_str()
                );
                (file.try_clone()?.into(), file.try_clone()?.into())
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let number = |n: Option<i32>| n.map(|n| n.to_string()).unwrap_or_default();
        let (status, signal) = match happened.event.tells_a_death() {
            true => (number(happened.exit_status), number(happened.exit_signal)),
            false => Default::default(),
        };
        let time = happened.at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let place = &self.place;
        // The values travel in the environment only: the command string is the operator's,
        // as given, and no agent name or exit status is ever spliced into it.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .env("MOSAIC_AGENT", &place.agent)
            .env("MOSAIC_EVENT", happened.event.as_str())
            .env("MOSAIC_PREVIOUS", previous.map_or("", HookEvent::as_str))
            .env("MOSAIC_EXIT_STATUS", status)
            .env("MOSAIC_EXIT_SIGNAL", signal)
            .env("MOSAIC_RESTARTS", happened.restarts.to_string())
            .env("MOSAIC_SOCKET", &place.socket)
            .env("MOSAIC_HB_FILE", &place.hb_file)
            .env("MOSAIC_TIME", time)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // A group of its own: the timeout ends all of it, and nothing that ends the
            // pane's session or group (a stop, a reap) reaches it.
            .process_group(0)
            .spawn()?;
        let pidfd = match self.use_pidfd {
            true => mosaic_core::sys::pidfd_open(child.id() as i32).ok(),
            false => None,
        };
        let began = Instant::now();
        Ok(Running {
            child,
            pidfd,
            event: happened.event,
            began,
            deadline: began + self.timeout,
            killed: false,
            log,
        })
    }

    /// The hooks' log, for appending: never through a symlink, only a regular file of ours
    /// with one link, started afresh once over the cap. `None` (output discarded) otherwise.
    fn open_log(&self) -> Option<File> {
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_APPEND
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let opened = openat(
            self.dir.as_fd(),
            self.log_name.as_c_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io::Error::from)
        .map(File::from)
        .and_then(|file| {
            let meta = file.metadata()?;
            let ours = meta.uid() == nix::unistd::geteuid().as_raw();
            if !meta.is_file() || meta.nlink() != 1 || !ours {
                return Err(io::Error::other("not a regular file of ours with one link"));
            }
            if meta.mode() & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            if meta.len() > HOOK_LOG_CAP {
                file.set_len(0)?;
            }
            Ok(file)
        });
        match opened {
            Ok(file) => Some(file),
            Err(e) => {
                crate::log(format_args!(
                    "cannot use the hooks' log {}: {} (the hook's output is discarded)",
                    self.log_path().display(),
                    mosaic_core::why(&e)
                ));
                None
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let dir = self.place.hb_file.parent().unwrap_or(Path::new("."));
        dir.join(std::ffi::OsStr::from_bytes(self.log_name.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks() -> Hooks {
        let dir = File::open("/").unwrap();
        let place = Place {
            agent: "a".into(),
            socket: "s".into(),
            hb_file: "/nonexistent/a.hb".into(),
        };
        let dir = (dir.as_fd(), c"a.hb");
        Hooks::new("true".into(), Duration::from_secs(1), place, dir, true).unwrap()
    }

    fn happened(event: HookEvent) -> Happened {
        Happened {
            event,
            exit_status: None,
            exit_signal: None,
            restarts: 0,
            at: Utc::now(),
        }
    }

    #[test]
    fn the_queue_is_bounded_and_keeps_order_and_the_final_event() {
        let mut hooks = hooks();
        let events = [HookEvent::Busy, HookEvent::Idle];
        for i in 0..QUEUE + 3 {
            hooks.push(happened(events[i % 2]));
        }
        assert_eq!((hooks.queue.len(), hooks.dropped), (QUEUE, 3));
        hooks.push(happened(HookEvent::Stopped));
        assert_eq!((hooks.queue.len(), hooks.dropped), (QUEUE, 4));
        let order: Vec<HookEvent> = hooks.queue.iter().map(|q| q.happened.event).collect();
        assert_eq!(
            order[..3],
            [HookEvent::Busy, HookEvent::Idle, HookEvent::Busy]
        );
        assert_eq!(order[QUEUE - 1], HookEvent::Stopped);
        // Each knows the one before it, dropped or not.
        let last = hooks.queue.back().unwrap();
        assert_eq!(last.previous, Some(events[(QUEUE + 2) % 2]));
        assert_eq!(hooks.queue.front().unwrap().previous, None);
    }

    #[test]
    fn nothing_runs_while_nothing_happened() {
        let mut hooks = hooks();
        hooks.service();
        assert!(!hooks.busy());
        assert!(hooks.fd().is_none() && hooks.deadline().is_none());
    }
}
