/*!
`mosaic-launcher AGENT`: a drop-in for `start-agent-session.sh`.

One run: validate everything (exit 2, nothing started or written); prepare the heartbeat
directory and find `setsid` and `mosaic-hb` (exit 1, nothing started); ask tmux for the session
and, while it works, start the sidecar waiting for its pane; watch the pane's process until it
has executed the agent's command ([`verdict`](crate::verdict)); then hand the sidecar its
pane, or cancel it when the agent needs none (one already keeps the file, or tmux named no
pane), and wait for the sidecar's answer, which follows its first record.

Invariants:
- A launch reports started only after exec: a command that cannot be executed (not found, not
  executable, a bad interpreter) or that exits at once is a failure (exit 1) with the shell's
  status and message, and the session this run created is removed.
- All or nothing, also when interrupted: SIGINT, SIGTERM and SIGHUP are held back for the
  launch ([`Stop`]); one that arrives before the sidecar has its pane undoes what this run
  created (the session, by its `@mosaic_launch` mark; the pending sidecar) and exits 128+N;
  one that arrives later lets the launch complete, then exits 128+N saying so.
- One agent, one sidecar: the session names its heartbeat file (`@mosaic_hb`); a relaunch
  reports (or heals) that file, and a heartbeat file kept for another process is never
  reported as this agent's. A restart its sidecar has pending is the sidecar's: a relaunch
  says `restarting` and starts nothing.
*/

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mosaic_core::death::signal_name;
use mosaic_core::exit::{Exit, Fail};
use mosaic_core::{dirs, json, supervise, validate};

use crate::child::Stop;
use crate::cli::Cli;
use crate::config::LaunchConfig;
use crate::pane;
use crate::sidecar::{self, Keeper, Pending, Sidecar, Started};
use crate::tmux::{self, Created, DeadPane, Failure, Pane, PanePids, Spec, Tmux};
use crate::verdict::{self, Verdict};

/// A validated request.
pub struct Plan {
    pub agent: String,
    pub socket: String,
    pub workdir: PathBuf,
    pub pane_command: OsString,
    pub heartbeat: Option<Heartbeat>,
    /// Bounds every tmux call and every wait for the sidecar.
    pub timeout: Duration,
    /// How long a started agent must live on after its exec.
    pub settle: Duration,
    /// The command and runtime-bin as resolved, for the stored [`LaunchConfig`].
    pub command: OsString,
    pub runtime_bin: Option<PathBuf>,
    /// The restart policy and its limits as flags (`restart`, `restart-delay`, ...), for the
    /// stored [`LaunchConfig`]; empty for `no`.
    pub restart: Vec<(&'static str, String)>,
}

pub struct Heartbeat {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub interval: Duration,
    pub idle_after: Duration,
    pub hb_bin: Option<PathBuf>,
    /// The sidecar's restart arguments (none without a restart policy).
    pub restart: Vec<String>,
}

/// How the agent came to be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Started,
    AlreadyRunning,
    /// Its pane was dead (the previous run's end is kept here) and was started again.
    Restarted(DeadPane),
    /// Its pane is dead and its own supervising sidecar starts it again (when, if known):
    /// left to that sidecar.
    Restarting(DeadPane, Option<DateTime<Utc>>),
}

/// The sidecar's part in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarState {
    Started,
    /// Kept by a sidecar that was already running.
    Running,
    None,
}

impl SidecarState {
    fn as_str(self) -> &'static str {
        match self {
            SidecarState::Started => "started",
            SidecarState::Running => "running",
            SidecarState::None => "none",
        }
    }
}

/// What happened, for the report.
pub struct Report {
    pub outcome: Outcome,
    pub pane_pid: Option<i32>,
    pub sidecar: SidecarState,
    /// The heartbeat file the agent has (the session's own, which may differ from the plan's).
    pub heartbeat: Option<PathBuf>,
    /// A previously running sidecar was replaced.
    pub healed: bool,
}

/// `mosaic-launcher AGENT`, from parsed arguments to exit code.
pub fn run(cli: Cli) -> ExitCode {
    let stop = Stop::new();
    let json = cli.json;
    let result = plan(cli).and_then(|plan| launch(&plan, &stop).map(|report| (plan, report)));
    let late = stop.signal();
    match result {
        Ok((plan, report)) => {
            store_config(&plan, &report);
            let line = if json {
                render_json(&plan, &report)
            } else {
                printable(&render_text(&plan, &report))
            };
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
                say(&format!(
                    "cannot write the report to stdout: {} (agent {} is running)",
                    mosaic_core::why(&e),
                    plan.agent
                ));
                return ExitCode::from(Exit::Failed.code());
            }
            if let Some(sig) = late {
                say(&format!(
                    "interrupted by {} after agent {} had started: it keeps running",
                    signal(sig),
                    plan.agent
                ));
                return ExitCode::from(128 + sig as u8);
            }
            ExitCode::SUCCESS
        }
        Err(fail) => {
            say(&fail.message);
            ExitCode::from(fail.code)
        }
    }
}

/// One line on stderr, control characters escaped; a stderr that cannot be written is
/// ignored (the exit code still tells).
fn say(message: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "mosaic-launcher: {}",
        printable(message)
    );
}

/// `text` with every control character escaped (`\n`, `\x1b`, `\u{85}`), so that one line
/// printed is one line read, and no escape sequence reaches a terminal raw.
pub fn printable(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `SIGINT`, as a person who pressed Ctrl-C reads it.
fn signal(sig: i32) -> String {
    match signal_name(sig) {
        Some(name) => format!("SIG{name}"),
        None => format!("signal {sig}"),
    }
}

fn interrupted(sig: i32, agent: &str, undone: bool) -> Fail {
    let what = if undone {
        format!("the launch of agent {agent} was undone")
    } else {
        format!("agent {agent} was not started")
    };
    Fail::new(
        128 + sig as u8,
        format!("interrupted by {}: {what}", signal(sig)),
    )
}

/// Checks every input; touches nothing.
pub fn plan(cli: Cli) -> Result<Plan, Fail> {
    let agent = validate::agent(text(&cli.agent, "agent name")?)
        .map_err(Fail::usage)?
        .to_string();
    // An empty variable counts as unset, as `${VAR:-default}` did in the bash original.
    let socket = text(
        &cli.socket,
        "tmux socket name (--socket, MOSAIC_TMUX_SOCKET)",
    )?;
    let socket = validate::socket(or_default(socket, validate::DEFAULT_SOCKET))
        .map_err(Fail::usage)?
        .to_string();
    let runtime = cli.runtime.as_deref();
    let runtime = runtime.map(|r| text(r, "runtime (--runtime, MOSAIC_AGENT_RUNTIME)"));
    let runtime = match runtime.transpose()?.filter(|r| !r.is_empty()) {
        Some(r) => Some(validate::runtime(r).map_err(Fail::usage)?),
        None => None,
    };
    let command = match (cli.command.filter(|c| !c.is_empty()), runtime) {
        (Some(command), _) => command,
        (None, Some(runtime)) => OsString::from(format!("mosaic yolo {runtime}")),
        (None, None) => {
            return Err(Fail::usage(
                "no agent command: set --command (MOSAIC_AGENT_COMMAND) or --runtime (MOSAIC_AGENT_RUNTIME)".into(),
            ))
        }
    };
    let workdir = match cli.workdir.filter(|w| !w.is_empty()) {
        Some(dir) => absolute(&dir)?,
        None => std::env::current_dir().map_err(|e| {
            Fail::failed(format!(
                "cannot read the current directory: {}",
                mosaic_core::why(&e)
            ))
        })?,
    };
    if !workdir.is_dir() {
        return Err(Fail::usage(format!(
            "invalid workdir {}: not a directory",
            workdir.display()
        )));
    }
    let runtime_bin = match cli.runtime_bin.filter(|d| !d.is_empty()).map(PathBuf::from) {
        Some(dir) if dir.as_os_str().as_encoded_bytes().contains(&b':') => {
            return Err(Fail::usage(format!(
                "invalid runtime-bin {}: a PATH entry cannot contain ':'",
                dir.display()
            )))
        }
        Some(dir) => Some(absolute(&dir)?),
        None => None,
    };
    let home = std::env::var_os("HOME");
    let prefix =
        pane::runtime_bin_prefix(&pane::candidates(runtime_bin.as_deref(), home.as_deref()));
    let pane_command = pane::command(&prefix, &command);
    let interval = text(
        &cli.hb_interval,
        "interval (--hb-interval, MOSAIC_HEARTBEAT_INTERVAL)",
    )?;
    let interval = validate::interval(or_default(interval, validate::DEFAULT_INTERVAL))
        .map_err(Fail::usage)?;
    let idle_after = text(
        &cli.idle_after,
        "idle threshold (--idle-after, MOSAIC_IDLE_AFTER)",
    )?;
    let idle_after = validate::idle_after(or_default(idle_after, validate::DEFAULT_IDLE_AFTER))
        .map_err(Fail::usage)?;
    let timeout = seconds(
        &cli.tmux_timeout,
        "tmux timeout (--tmux-timeout, MOSAIC_TMUX_TIMEOUT)",
        0.01,
    )?
    .unwrap_or(tmux::DEFAULT_TIMEOUT);
    let settle =
        seconds(&cli.settle, "settle time (--settle, MOSAIC_SETTLE)", 0.0)?.unwrap_or_default();
    let policy = cli
        .restart
        .as_deref()
        .map(|v| text(v, "restart policy (--restart, MOSAIC_RESTART)"))
        .transpose()?;
    let (policy, limits) = cli.limits.resolve(policy, true).map_err(Fail::usage)?;
    if cli.no_heartbeat && policy != supervise::Restart::No {
        return Err(Fail::usage(format!(
            "--restart {} needs the heartbeat sidecar, which restarts the agent: drop --no-heartbeat",
            policy.as_str()
        )));
    }
    let heartbeat = if cli.no_heartbeat {
        None
    } else {
        let dir = match cli.hb_dir.filter(|d| !d.is_empty()) {
            Some(dir) => absolute(&dir)?,
            None => dirs::default_dir(),
        };
        Some(Heartbeat {
            file: dir.join(format!("{agent}.hb")),
            dir,
            interval,
            idle_after,
            hb_bin: cli.hb_bin.filter(|b| !b.is_empty()).map(PathBuf::from),
            restart: supervise::sidecar_args(policy, &limits, &socket),
        })
    };
    Ok(Plan {
        agent,
        socket,
        workdir,
        pane_command,
        heartbeat,
        timeout,
        settle,
        command,
        runtime_bin,
        restart: supervise::settings(policy, &limits),
    })
}

/// Seconds from `min` to an hour, fractions allowed; empty or absent is `None`.
fn seconds(value: &Option<OsString>, what: &str, min: f64) -> Result<Option<Duration>, Fail> {
    let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = text(value, what)?;
    validate::seconds(text, min..=3600.0)
        .map(Some)
        .map_err(|why| Fail::usage(validate::invalid(what, text, &why)))
}

/// A value that must be text: names, sockets, runtimes and intervals are never raw bytes.
fn text<'a>(value: &'a std::ffi::OsStr, what: &str) -> Result<&'a str, Fail> {
    value
        .to_str()
        .ok_or_else(|| Fail::usage(format!("invalid {what} {value:?}: not UTF-8 text")))
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() {
        default
    } else {
        value
    }
}

fn absolute(path: impl AsRef<Path>) -> Result<PathBuf, Fail> {
    let path = path.as_ref();
    std::path::absolute(path).map_err(|e| {
        Fail::usage(format!(
            "invalid path {}: {}",
            path.display(),
            mosaic_core::why(&e)
        ))
    })
}

/// A unique mark for the session this launch creates, so that its roll-back removes that
/// session and never one a racing launcher made.
fn launch_token() -> String {
    format!(
        "{}-{:016x}",
        std::process::id(),
        mosaic_core::sys::random_u64()
    )
}

/// One launch, all or nothing. Signals in `stop` are looked at, never acted upon by default.
pub fn launch(plan: &Plan, stop: &Stop) -> Result<Report, Fail> {
    if let Some(sig) = stop.signal() {
        return Err(interrupted(sig, &plan.agent, false));
    }
    enough_descriptors().map_err(Fail::failed)?;
    let sidecar = match &plan.heartbeat {
        Some(hb) => {
            dirs::prepare(&hb.dir).map_err(Fail::failed)?;
            Some((
                hb,
                Sidecar::locate(hb.hb_bin.as_deref()).map_err(Fail::failed)?,
            ))
        }
        None => None,
    };
    let tmux = Tmux::new(&plan.socket, plan.timeout, Some(stop));
    let token = launch_token();
    // A bell in the pane marks the sidecar's bell file (see `mosaic_core::activity`).
    let bell_hook = plan
        .heartbeat
        .as_ref()
        .and_then(|hb| mosaic_core::layout::bell_path(&hb.file))
        .map(|bell| pane::bell_hook(&bell));
    let spec = Spec {
        bell_hook: bell_hook.as_deref(),
        agent: &plan.agent,
        workdir: &plan.workdir,
        pane_command: &plan.pane_command,
        token: &token,
        hb_file: plan.heartbeat.as_ref().map(|hb| hb.file.as_path()),
    };
    let mut run = Launch {
        plan,
        stop,
        tmux: &tmux,
        token: &token,
        created: false,
    };
    let session = tmux.start_new_session(&spec).map_err(|f| run.fail(f))?;
    // While tmux works, the sidecar starts and waits for its pane (see `sidecar`); dropping
    // `pending` cancels it.
    let pending = match &sidecar {
        Some((hb, sidecar)) => {
            match sidecar.spawn(
                &hb.file,
                hb.interval,
                hb.idle_after,
                &plan.agent,
                &hb.restart,
                plan.timeout,
            ) {
                Ok(pending) => Some(pending),
                Err(why) => {
                    let created = session.finish();
                    run.created = matches!(created, Ok(Created::New(_)) | Err(_));
                    return Err(run.undo(Fail::failed(why)));
                }
            }
        }
        None => None,
    };
    let mut created = session.finish();
    if matches!(&created, Err(Failure::Error(why)) if why.contains("server exited unexpectedly")) {
        // We reached a server that was exiting (its last session had just ended, or, before
        // remain-on-exit held, our own command ended at once): no session of ours survived
        // that. Once more, with a server of our own.
        created = tmux
            .start_new_session(&spec)
            .and_then(tmux::NewSession::finish);
    }
    // Even a failed or cut `new-session` may have made the session: the roll-back checks.
    run.created = !matches!(created, Ok(Created::AlreadyRunning));
    let created = created.map_err(|f| run.fail(f))?;
    let sidecar = sidecar.map(|(_, s)| s);
    match created {
        Created::New(Some(pids)) => run.new_session(pids, pending),
        Created::New(None) => run.stand_in(pending),
        Created::AlreadyRunning => run.existing(pending, sidecar.as_ref()),
    }
}

/// The fewest open files a tmux server is given: with `ulimit -n 16` and less, tmux 3.3a's
/// server (which inherits our limit) spins at full CPU instead of failing.
const MIN_OPEN_FILES: u64 = 32;

/// Raises the soft open-file limit to what tmux needs, if the hard limit allows; refuses to
/// start anything otherwise.
fn enough_descriptors() -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    // Raising the soft limit up to the hard one is always allowed.
    if soft >= MIN_OPEN_FILES
        || (hard >= MIN_OPEN_FILES
            && setrlimit(Resource::RLIMIT_NOFILE, MIN_OPEN_FILES, hard).is_ok())
    {
        return Ok(());
    }
    Err(format!(
        "the open-file limit (ulimit -n) is {soft}: tmux needs at least {MIN_OPEN_FILES}; nothing was started"
    ))
}

/// A launch under way: what it must undo if it fails.
struct Launch<'a> {
    plan: &'a Plan,
    stop: &'a Stop,
    tmux: &'a Tmux<'a>,
    token: &'a str,
    /// This run may have created the session (its roll-back removes it, if it carries our
    /// token).
    created: bool,
}

impl Launch<'_> {
    fn agent(&self) -> &str {
        &self.plan.agent
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.plan.timeout
    }

    /// Removes what this run created, and passes the failure on.
    fn undo(&self, fail: Fail) -> Fail {
        if self.created {
            self.tmux.remove_own_session(self.agent(), self.token);
        }
        fail
    }

    /// A tmux failure, after the roll-back.
    fn fail(&self, failure: Failure) -> Fail {
        match failure {
            Failure::Interrupted(sig) => self.undo(interrupted(sig, self.agent(), self.created)),
            Failure::Error(why) => self.undo(Fail::failed(why)),
        }
    }

    /// Rolls back if a stop signal has arrived: the last look before committing.
    fn check_stop(&self) -> Result<(), Fail> {
        match self.stop.signal() {
            Some(sig) => Err(self.undo(interrupted(sig, self.agent(), self.created))),
            None => Ok(()),
        }
    }

    /// A session this run created, with its pane's pid: the verdict, then the sidecar.
    fn new_session(&self, pids: PanePids, pending: Option<Pending>) -> Result<Report, Fail> {
        self.verdict(pids)?;
        self.check_stop()?;
        let (sidecar, heartbeat) = self.hand_over(pids.pane, pending)?;
        Ok(Report {
            outcome: Outcome::Started,
            pane_pid: Some(pids.pane),
            sidecar,
            heartbeat,
            healed: false,
        })
    }

    /// Watches the pane until its process has executed the agent; a process that exits
    /// instead is reported with tmux's record of its end, and its session removed.
    fn verdict(&self, pids: PanePids) -> Result<(), Fail> {
        let line = verdict::shell_cmdline(&tmux::pane_argument(&self.plan.pane_command));
        let verdict = verdict::watch(pids, &line, self.plan.settle, self.deadline(), self.stop)
            .map_err(|cut| match cut {
                crate::child::Cut::Interrupted(sig) => {
                    self.undo(interrupted(sig, self.agent(), self.created))
                }
                other => self.undo(Fail::failed(format!(
                    "cannot watch pane pid {} of agent {}: {other:?}",
                    pids.pane,
                    self.agent()
                ))),
            })?;
        match verdict {
            Verdict::Running => Ok(()),
            Verdict::NoExec => Err(self.undo(Fail::failed(format!(
                "agent {} did not execute its command within {} (MOSAIC_TMUX_TIMEOUT)",
                self.agent(),
                tmux::seconds(self.plan.timeout)
            )))),
            Verdict::Exited(status) => {
                Err(self.undo(Fail::failed(self.why_exited(pids.pane, status))))
            }
        }
    }

    /// "agent A exited at once with status 127: sh: 1: exec: nosuchcmd: not found", from
    /// the dead pane tmux keeps (it may take tmux a moment to notice the exit).
    fn why_exited(&self, pid: i32, wait_status: Option<i32>) -> String {
        // tmux notices the exit in its event loop; its status follows the pane's EOF. Give it
        // a moment, not the whole deadline: the exit itself is already certain.
        let deadline = Instant::now() + self.plan.timeout.min(Duration::from_secs(2));
        let mut death = None;
        let mut gone = None;
        loop {
            match self.tmux.pane(self.agent()) {
                Ok(Pane::Dead(d)) if d.pid == pid => {
                    // What we read from the zombie ourselves will do if tmux has nothing.
                    let known = d.known() || wait_status.is_some();
                    death = Some(d);
                    if known {
                        break;
                    }
                }
                Ok(Pane::Gone(why)) => {
                    gone = Some(why);
                    break;
                }
                Err(_) => break,
                _ => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let (Some(d), Some(raw)) = (death.as_mut(), wait_status) {
            d.fill_from_wait_status(raw);
        }
        // The pane's last output may still be on its way into tmux's screen: a few looks.
        let mut words = None;
        if death.is_some() {
            for _ in 0..10 {
                words = self.tmux.last_words(self.agent());
                if words.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut why = format!("agent {} exited at once", self.agent());
        match (&death, gone) {
            (Some(d), _) => why += &format!(" with {}", d.describe()),
            (None, Some(gone)) => why += &format!(": its session is gone ({gone})"),
            (None, None) => why += &format!(" (pane pid {pid})"),
        }
        if let Some(words) = words {
            why += &format!(": {words}");
        }
        why
    }

    /// Hands the pane to the pending sidecar and waits for its answer, which comes after its
    /// first record. Returns the sidecar's state and the heartbeat file.
    fn hand_over(
        &self,
        pane_pid: i32,
        pending: Option<Pending>,
    ) -> Result<(SidecarState, Option<PathBuf>), Fail> {
        let (Some(hb), Some(pending)) = (&self.plan.heartbeat, pending) else {
            return Ok((SidecarState::None, None));
        };
        self.start_sidecar(pending, pane_pid, &hb.file)
    }

    fn start_sidecar(
        &self,
        pending: Pending,
        pane_pid: i32,
        file: &Path,
    ) -> Result<(SidecarState, Option<PathBuf>), Fail> {
        match pending.start(pane_pid) {
            // Its answer came after its first record.
            Ok(Started::Running) => Ok((SidecarState::Started, Some(file.to_path_buf()))),
            Ok(Started::AlreadyKept) => match sidecar::keeper(file, pane_pid, self.deadline()) {
                Keeper::Other { hb_pid, pid } => Err(self.undo(collision(file, hb_pid, pid))),
                _ => Ok((SidecarState::Running, Some(file.to_path_buf()))),
            },
            Ok(Started::TargetGone(why)) => Err(self.undo(Fail::failed(format!(
                "agent {} exited at once: {why}",
                self.agent()
            )))),
            Err(why) => Err(self.undo(Fail::failed(why))),
        }
    }

    /// A stand-in tmux that created a session but printed no pane: ask for the pane, and hand
    /// the sidecar whatever pid it names, without a verdict.
    fn stand_in(&self, pending: Option<Pending>) -> Result<Report, Fail> {
        let report = |pane_pid, (sidecar, heartbeat)| Report {
            outcome: Outcome::Started,
            pane_pid,
            sidecar,
            heartbeat,
            healed: false,
        };
        if pending.is_none() {
            return Ok(report(None, (SidecarState::None, None)));
        }
        match self.tmux.pane(self.agent()).map_err(|f| self.fail(f))? {
            Pane::Live(pid) => {
                // A real tmux that printed no pane (it has been seen under load): the verdict
                // still holds, given the server's pid.
                if let Some(server) = self.tmux.server_pid() {
                    self.verdict(PanePids { pane: pid, server })?;
                }
                let hb = self.plan.heartbeat.as_ref().map(|hb| hb.file.as_path());
                let pending = pending.expect("checked above");
                match pending.start(pid) {
                    Ok(Started::Running | Started::AlreadyKept) => Ok(report(
                        Some(pid),
                        (SidecarState::Started, hb.map(Path::to_path_buf)),
                    )),
                    Ok(Started::TargetGone(why)) => Err(self.undo(Fail::failed(format!(
                        "agent {} exited at once: {why}",
                        self.agent()
                    )))),
                    Err(why) => Err(self.undo(Fail::failed(why))),
                }
            }
            Pane::Dead(d) => Err(self.undo(Fail::failed(format!(
                "agent {} exited at once with {}",
                self.agent(),
                d.describe()
            )))),
            Pane::Unknown => Ok(report(None, (SidecarState::None, None))),
            Pane::Gone(why) => Err(self.undo(Fail::failed(format!(
                "agent {} exited at once: its session is gone ({why})",
                self.agent()
            )))),
        }
    }

    /// The session existed: a live pane is "already running" (its sidecar checked, healed if
    /// stuck or gone); a dead one is started again.
    fn existing(
        &self,
        pending: Option<Pending>,
        sidecar: Option<&Sidecar>,
    ) -> Result<Report, Fail> {
        match self.tmux.pane(self.agent()).map_err(|f| self.fail(f))? {
            Pane::Live(pid) => self.running(pid, pending, sidecar),
            Pane::Dead(death) => self.restart(death, pending),
            Pane::Unknown => Ok(Report {
                outcome: Outcome::AlreadyRunning,
                pane_pid: None,
                sidecar: SidecarState::None,
                heartbeat: None,
                healed: false,
            }),
            Pane::Gone(why) => Err(Fail::failed(format!(
                "agent {} exited at once: its session is gone ({why})",
                self.agent()
            ))),
        }
    }

    fn running(
        &self,
        pid: i32,
        pending: Option<Pending>,
        sidecar: Option<&Sidecar>,
    ) -> Result<Report, Fail> {
        let report = |(sidecar, heartbeat), healed| Report {
            outcome: Outcome::AlreadyRunning,
            pane_pid: Some(pid),
            sidecar,
            heartbeat,
            healed,
        };
        let (Some(hb), Some(mut pending), Some(locator)) = (&self.plan.heartbeat, pending, sidecar)
        else {
            return Ok(report((SidecarState::None, None), false));
        };
        // The session's own heartbeat file, when it names one, wins: one agent, one sidecar.
        let own = self.tmux.hb_file(self.agent()).map_err(|f| self.fail(f))?;
        let file = match own.map(PathBuf::from) {
            Some(own) if own != hb.file && own.is_absolute() => {
                // Hand the sidecar that file instead.
                drop(pending);
                pending = locator
                    .spawn(
                        &own,
                        hb.interval,
                        hb.idle_after,
                        self.agent(),
                        &hb.restart,
                        self.plan.timeout,
                    )
                    .map_err(Fail::failed)?;
                own
            }
            Some(_) => hb.file.clone(),
            None => {
                // A session from before `@mosaic_hb` (or started without a heartbeat): it gets
                // ours from now on, so a later launch from elsewhere finds it.
                self.tmux.set_hb_file(self.agent(), &hb.file);
                hb.file.clone()
            }
        };
        match sidecar::keeper(&file, pid, self.deadline()) {
            Keeper::Healthy => return Ok(report((SidecarState::Running, Some(file)), false)),
            Keeper::Other { hb_pid, pid } => return Err(collision(&file, hb_pid, pid)),
            Keeper::Stuck { hb_pid, .. } => {
                sidecar::end_stuck(&file, hb_pid, self.deadline()).map_err(Fail::failed)?;
            }
            Keeper::Nobody => {}
        }
        if let Some(sig) = self.stop.signal() {
            return Err(interrupted(sig, self.agent(), false));
        }
        self.start_sidecar(pending, pid, &file).map(|state| {
            let healed = state.0 == SidecarState::Started;
            report(state, healed)
        })
    }

    /// A dead pane: start the agent again in it (tmux refuses if a racer did first: then it
    /// is already running), unless its own sidecar is about to.
    fn restart(&self, death: DeadPane, pending: Option<Pending>) -> Result<Report, Fail> {
        let own = self
            .tmux
            .hb_file(self.agent())
            .ok()
            .flatten()
            .map(PathBuf::from);
        // Under a restart policy, the pane's sidecar outlives it and starts it again when its
        // delay is up: a second start here would race it. Say so instead.
        let kept = own
            .clone()
            .or_else(|| self.plan.heartbeat.as_ref().map(|hb| hb.file.clone()));
        if let Some(file) = kept {
            if let Some((_, at)) = sidecar::restarting(&file, death.pid) {
                drop(pending);
                return Ok(Report {
                    outcome: Outcome::Restarting(death, at),
                    pane_pid: None,
                    sidecar: SidecarState::Running,
                    heartbeat: Some(file),
                    healed: false,
                });
            }
        }
        let respawned = self
            .tmux
            .respawn(self.agent(), &self.plan.workdir, &self.plan.pane_command)
            .map_err(|f| self.fail(f))?;
        let Some(pids) = respawned else {
            return match self.tmux.pane(self.agent()).map_err(|f| self.fail(f))? {
                Pane::Live(pid) => Ok(Report {
                    outcome: Outcome::AlreadyRunning,
                    pane_pid: Some(pid),
                    sidecar: SidecarState::None,
                    heartbeat: None,
                    healed: false,
                }),
                _ => Err(Fail::failed(format!(
                    "agent {} could not be started again",
                    self.agent()
                ))),
            };
        };
        // A failed restart leaves the pane dead, now with this run's end: no session to undo.
        self.verdict(pids)?;
        let (sidecar, heartbeat) = match (&self.plan.heartbeat, pending, own) {
            (Some(hb), Some(pending), own) if own.as_ref().is_none_or(|f| *f == hb.file) => {
                self.start_sidecar(pending, pids.pane, &hb.file)?
            }
            _ => (SidecarState::None, None),
        };
        Ok(Report {
            outcome: Outcome::Restarted(death),
            pane_pid: Some(pids.pane),
            sidecar,
            heartbeat,
            healed: false,
        })
    }
}

fn collision(file: &Path, hb_pid: Option<i32>, pid: i32) -> Fail {
    let by = hb_pid.map_or("a sidecar".into(), |p| format!("mosaic-hb pid {p}"));
    Fail::failed(format!(
        "heartbeat file {} is kept by {by} for pid {pid}, another agent of the same name \
         (on another tmux socket?): use another MOSAIC_HEARTBEAT_RUN_DIR (--hb-dir) or socket",
        file.display()
    ))
}

/// Stores the configuration of an agent this run started, so `mosaic-fleet restart` can start
/// it again the same way. The agent runs either way: a failure is a warning, not an error.
fn store_config(plan: &Plan, report: &Report) {
    let Some(hb) = &plan.heartbeat else { return };
    if report.outcome == Outcome::AlreadyRunning || report.sidecar != SidecarState::Started {
        return;
    }
    let config = LaunchConfig {
        agent: plan.agent.clone(),
        socket: plan.socket.clone(),
        workdir: plan.workdir.clone(),
        command: plan.command.clone(),
        runtime_bin: plan.runtime_bin.clone(),
        hb_dir: hb.dir.clone(),
        hb_interval: hb.interval,
        idle_after: hb.idle_after,
        restart: plan
            .restart
            .iter()
            .map(|(flag, value)| (flag.to_string(), value.clone()))
            .collect(),
    };
    if let Err(why) = config.store() {
        say(&format!(
            "warning: {why} (`mosaic-fleet restart` cannot restart it)"
        ));
    }
}

fn render_text(plan: &Plan, report: &Report) -> String {
    let ended = |death: &DeadPane| at(death.time.and_then(|t| DateTime::from_timestamp(t, 0)));
    let mut line = match &report.outcome {
        Outcome::Started => format!(
            "started agent {} on tmux socket {}",
            plan.agent, plan.socket
        ),
        Outcome::AlreadyRunning => format!(
            "agent {} already running on tmux socket {}",
            plan.agent, plan.socket
        ),
        Outcome::Restarted(death) => format!(
            "restarted agent {} on tmux socket {} (its last run ended with {}{})",
            plan.agent,
            plan.socket,
            death.describe(),
            ended(death)
        ),
        Outcome::Restarting(death, due) => format!(
            "agent {} is restarting on tmux socket {} (its last run ended with {}{}): its \
             sidecar starts it again{}",
            plan.agent,
            plan.socket,
            death.describe(),
            ended(death),
            at(*due)
        ),
    };
    if let Some(pid) = report.pane_pid {
        line += &format!(": pane pid {pid}");
    }
    match (&report.heartbeat, report.sidecar) {
        (Some(file), SidecarState::Started) => line += &format!(", heartbeat {}", file.display()),
        (Some(file), SidecarState::Running) => {
            line += &format!(", heartbeat {} (sidecar running)", file.display())
        }
        _ => line += ", no heartbeat",
    }
    if report.healed {
        line += " (sidecar restarted)";
    }
    line
}

/// ` at 2026-11-27T16:29:23Z`, or nothing.
fn at(time: Option<DateTime<Utc>>) -> String {
    time.map_or(String::new(), |t| {
        format!(
            " at {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    })
}

fn render_json(plan: &Plan, report: &Report) -> String {
    let heartbeat = match (&report.heartbeat, report.sidecar) {
        (Some(file), SidecarState::Started | SidecarState::Running) => Some(file.to_string_lossy()),
        _ => None,
    };
    let status = match report.outcome {
        Outcome::Started => "started",
        Outcome::AlreadyRunning => "already running",
        Outcome::Restarted(_) => "restarted",
        Outcome::Restarting(..) => "restarting",
    };
    let mut out = String::new();
    let mut obj = json::Object::new(&mut out);
    obj.string("agent", plan.agent.as_str())
        .string("socket", plan.socket.as_str())
        .string("status", status)
        .number("pane_pid", report.pane_pid)
        .string("heartbeat", heartbeat.as_deref())
        .string("sidecar", report.sidecar.as_str())
        .string("workdir", &*plan.workdir.to_string_lossy());
    if let Outcome::Restarted(death) | Outcome::Restarting(death, _) = &report.outcome {
        // How the previous run ended, as tmux kept it.
        let (status, signal) = death.death.keys();
        obj.number("previous_exit_status", status)
            .number("previous_signal", signal)
            .number("previous_time", death.time);
    }
    if let Outcome::Restarting(_, due) = &report.outcome {
        let due = due.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        obj.string("restart_at", due.as_deref());
    }
    obj.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_only() {
        assert_eq!(printable("a b/é"), "a b/é");
        assert_eq!(printable("x\nstarted agent evil"), "x\\nstarted agent evil");
        assert_eq!(printable("\u{1b}[31mred"), "\\x1b[31mred");
        assert_eq!(printable("\u{85}\u{7f}"), "\\u{85}\\x7f");
    }

    #[test]
    fn signals_are_named() {
        assert_eq!(signal(libc::SIGINT), "SIGINT");
        assert_eq!(signal(libc::SIGHUP), "SIGHUP");
        assert_eq!(signal(libc::SIGTERM), "SIGTERM");
    }
}
