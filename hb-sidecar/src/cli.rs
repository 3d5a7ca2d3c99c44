/*!
The `mosaic-hb` command line: watch a process and keep its heartbeat file current; or, with
`status`, report a directory of heartbeat files. The binary is a one-line wrapper around
[`main`]. See the crate doc for the theory of operation.
*/

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::activity;
use crate::hbfile::HbFile;
use crate::hooks::{Hooks, Place};
use crate::restart::Supervisor;
use crate::signals::Signals;
use crate::target::Target;
use crate::watch::{End, Sidecar};
use crate::writer::Writer;
use mosaic_core::exit::{Exit, Fail};
use mosaic_core::handover::{self, PID_FROM_STDIN};
use mosaic_core::lock::{Lock, LockError};
use mosaic_core::record::Status;
use mosaic_core::supervise::{Backoff, LimitArgs, Restart};
use mosaic_core::validate::{DEFAULT_HOOK_TIMEOUT, DEFAULT_IDLE_AFTER, DEFAULT_INTERVAL};
use mosaic_core::{dirs, status, sys, validate, why};

const SIDECAR_HELP: &str = "\
Environment:
  The sidecar reads no variable: --file names its heartbeat file.
  An --on-event hook gets MOSAIC_AGENT, MOSAIC_EVENT (started, exited, restarting, failed,
  stopped, busy, idle, waiting), MOSAIC_PREVIOUS (the event before), MOSAIC_EXIT_STATUS and
  MOSAIC_EXIT_SIGNAL (exited, restarting, failed; empty when unknown), MOSAIC_RESTARTS,
  MOSAIC_SOCKET, MOSAIC_HB_FILE, MOSAIC_TIME (RFC 3339, when it happened). Its output goes to
  .FILE.hook.log beside the heartbeat file (0600; started afresh past 64 KiB).
  `status` reads MOSAIC_HEARTBEAT_RUN_DIR and XDG_RUNTIME_DIR (see `mosaic-hb status --help`).

Exit codes:
  0  the sidecar is watching (its daemon runs on), or, with --foreground, it ended as it should
  1  failed at run time: the target is not running (a status=exited record is still written),
     or another sidecar already keeps the file (the message names its pid)
  2  bad input: an argument, or a heartbeat directory that cannot be used
  3  with --pid - (the launcher's hand-over): another sidecar already keeps the file
  4  with --pid -: the target is not running";

#[derive(Parser)]
#[command(
    name = "mosaic-hb",
    version,
    about = "Watch a process and keep its heartbeat file current (ts=, pid=, status=).",
    long_about = "Watch a process and keep its heartbeat file current.\n\n\
        Every INTERVAL seconds the file is replaced (never written in place) with `ts=`, `pid=`, \
        `status=ok` and more; when the process is gone it says `status=exited`, on SIGTERM, \
        SIGINT or SIGHUP `status=stopped`. Runs as a daemon unless --foreground.\n\n\
        `mosaic-hb status` reports a directory of heartbeat files.",
    after_help = SIDECAR_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    watch: WatchArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Report the state of every agent in a heartbeat directory.
    Status(status::StatusArgs),
    /// Serve the fleet's metrics to Prometheus over HTTP (runs mosaic-hb-exporter; see its
    /// --help).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Exporter {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Args)]
struct WatchArgs {
    /// Process to watch (any PID; a pidfd pins it, its start time identifies it). `-` reads
    /// one line `PID [STARTED]` from stdin once the file is prepared (the launcher's way of
    /// starting the sidecar while tmux is still creating the pane); EOF means "never mind".
    #[arg(long, value_name = "PID", required = true, allow_hyphen_values = true)]
    pid: Option<String>,
    /// Heartbeat file to keep current; its directory is created 0700 if missing.
    #[arg(long, value_name = "PATH", required = true)]
    file: Option<PathBuf>,
    // A SECS value may start with `-`, so that `validate` (not clap) refuses `-1` by name.
    /// Seconds between beats, 0.01 to 86400; fractions allowed.
    #[arg(long, value_name = "SECS", default_value = DEFAULT_INTERVAL, allow_hyphen_values = true)]
    interval: String,
    /// Start time the target must have (clock ticks since boot, /proc/PID/stat field 22);
    /// another process with this PID is refused as a stranger that reused it.
    #[arg(long, value_name = "TICKS", allow_hyphen_values = true)]
    started: Option<String>,
    /// Seconds without output after which a target with a terminal counts as idle
    /// (`activity=idle`), 1 to 86400; fractions allowed.
    #[arg(long, value_name = "SECS", default_value = DEFAULT_IDLE_AFTER, allow_hyphen_values = true)]
    idle_after: String,
    /// Agent name, written as `agent=`.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// After each death of the target, end the processes it left in its session and process
    /// group (SIGTERM, then SIGKILL after SECS) and record how many (`reaped=`). For a target
    /// that leads its session, as a tmux pane's process does; the launcher passes 10.
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    reap: Option<String>,
    /// Stay in the foreground instead of daemonizing.
    #[arg(long)]
    foreground: bool,
    /// Leave the caller's session first (setsid(2)), as `setsid mosaic-hb` would without a
    /// program of its own: `mosaic-fleet up` starts its sidecars so. Fails, before anything
    /// is written, if the sidecar leads a process group.
    #[arg(long)]
    setsid: bool,
    /// Append diagnostics to FILE (after daemonizing they are otherwise discarded).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Run `/bin/sh -c CMD` on each event of the agent (see Environment below): one at a
    /// time, later ones queued (16; more are dropped and counted as `hook_dropped=`); a
    /// non-zero exit or a kill at --hook-timeout counts as `hook_failures=`.
    #[arg(long, value_name = "CMD")]
    on_event: Option<std::ffi::OsString>,
    /// Seconds an --on-event hook may run before its process group is killed, 0.01 to 3600.
    #[arg(long, value_name = "SECS", default_value = DEFAULT_HOOK_TIMEOUT, allow_hyphen_values = true)]
    hook_timeout: String,
    /// Do not use a pidfd: watch with kill(2) and /proc only, as on kernels before 5.3.
    #[arg(long, hide = true)]
    no_pidfd: bool,
    #[command(flatten)]
    restart: RestartArgs,
}

/// Supervision: restart the agent's tmux pane when it dies (needs --agent and --socket).
#[derive(Args)]
struct RestartArgs {
    /// Restart policy: no, on-failure (non-zero exit or a signal), always (also after exit 0).
    /// Never after a stop signal. Restarting respawns pane `=AGENT:` on tmux socket SOCKET
    /// through `mosaic-respawn` (found next to mosaic-hb).
    #[arg(long, value_name = "POLICY", default_value = "no")]
    restart: String,
    /// tmux socket of the agent's session (`tmux -L SOCKET`), for restarts and the hooks'
    /// MOSAIC_SOCKET.
    #[arg(long, value_name = "SOCKET")]
    socket: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Path of the respawn helper (default: mosaic-respawn next to mosaic-hb).
    #[arg(long, value_name = "PATH", hide = true)]
    respawn_bin: Option<PathBuf>,
}

impl RestartArgs {
    /// The policy and its limits, checked; `None` for `--restart no`.
    fn backoff(&self) -> Result<Option<Backoff>, String> {
        let (policy, limits) = self.limits.resolve(Some(&self.restart), false)?;
        Ok((policy != Restart::No).then(|| Backoff::new(policy, limits)))
    }
}

/// The command line: the restart limits are plain flags here, the launcher's variables are
/// not read (the sidecar inherits the launcher's environment; its argv alone is its policy).
fn command() -> clap::Command {
    LimitArgs::without_env(Cli::command())
}

/// Runs `mosaic-hb` with the process's arguments.
pub fn main() -> ExitCode {
    // `status --help` names this user's default directory, resolved, not only its rule.
    let here = format!(
        "{}\n\nHere the default directory is {}.",
        status::HELP,
        dirs::dir_from_env().display()
    );
    let command = command().mut_subcommand("status", |sub| sub.after_help(here));
    let cli: Cli = mosaic_core::exit::parse_command("mosaic-hb", command);
    let result = match cli.command {
        Some(Command::Status(args)) => return ExitCode::from(status::run(&args)),
        Some(Command::Exporter { args }) => exporter(args),
        None => watch(cli.watch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => fail.report("mosaic-hb"),
    }
}

/// Watches a process: every step that can fail before the background, so a mistake reaches
/// the caller (see the crate doc's start-up order), then the event loop until the end.
fn watch(args: WatchArgs) -> Result<(), Fail> {
    if args.setsid {
        nix::unistd::setsid().map_err(|e| {
            Fail::failed(format!(
                "cannot leave the caller's session (--setsid): {}",
                why(&std::io::Error::from(e))
            ))
        })?;
    }
    if !args.foreground {
        // Before we open anything: a daemon keeps no descriptor its caller leaked to it.
        sys::release_inherited_fds(sys::Inherited::Close);
    } else {
        // Nor does anything it starts (a hook, the respawn helper).
        sys::release_inherited_fds(sys::Inherited::CloseOnExec);
    }
    let plan = Plan::check(&args)?;
    let (path, mut file) = open_file(args.file.clone().expect("clap requires --file"))?;
    let (pid, started) = match plan.pid {
        Some(pid) => (pid, plan.started),
        None => target_from_stdin().map(|(pid, given)| (pid, given.or(plan.started)))?,
    };
    let lock = take_lock(&file, &path, &plan)?;
    let log = open_log(args.log.as_deref())?;
    let target = match Target::attach(pid, !args.no_pidfd, started) {
        Ok(target) => target,
        Err((how, started)) => {
            // Leave a true record behind: whoever reads the file learns the agent is gone.
            Writer::new(file, pid, started, args.agent.as_deref(), plan.interval)
                .end(Status::Exited);
            return Err(Fail::new(
                plan.gone,
                format!("pid {pid} {}", how.describe()),
            ));
        }
    };
    // Before the background, like the target itself: the pane's terminal is the one it has now.
    let activity = watch_activity(pid, &file, plan.idle_after);
    let hooks = hooks(&args, &plan, &path, &file)?;
    let answer = into_background(&plan, args.foreground, log, &mut file, &lock)?;
    let signals = Signals::install()
        .map_err(|e| Fail::failed(format!("cannot install signal handling: {}", why(&e))))?;
    let mut sidecar = Sidecar::new(target, file, args.agent.as_deref(), plan.interval)
        .with_activity(activity)
        .with_hooks(hooks)
        .with_reap(plan.reap);
    if let Some(supervisor) = plan.supervisor {
        sidecar = sidecar.supervised(supervisor);
    }
    // Start-up (argument parsing above all) leaves freed heap and mapped pages behind; a fleet
    // runs one sidecar per agent for days, so hand those back. The loop itself allocates
    // nothing. For the hand-over, once the launcher has its answer, not on its clock.
    match answer {
        Some(answer) => sidecar = sidecar.on_first_record(answer),
        None => sys::release_free_memory(),
    }
    let (end, last) = sidecar.run(&signals);
    log_end(end, last, sidecar.pid());
    drop(lock);
    // The file is let go: a stop is not kept waiting, a new sidecar may start.
    sidecar.finish_hooks(&signals);
    match end {
        End::Failed(_) => std::process::exit(i32::from(Exit::Failed.code())),
        // Gone before its first record (the launcher still waits): "target gone".
        _ if !sidecar.answered() => std::process::exit(i32::from(plan.gone)),
        _ => Ok(()),
    }
}

/// The watch's arguments, checked: nothing is opened before every one of them is.
struct Plan {
    /// `None` for `--pid -`: the target arrives on stdin once the file is prepared (the
    /// hand-over).
    pid: Option<i32>,
    started: Option<u64>,
    interval: Duration,
    idle_after: Duration,
    reap: Option<Duration>,
    hook_timeout: Duration,
    supervisor: Option<Supervisor>,
    /// The exit codes for "another sidecar keeps the file" and "the target is gone": the
    /// hand-over's answers for the launcher; a person gets the documented 1.
    kept: u8,
    gone: u8,
}

impl Plan {
    fn check(args: &WatchArgs) -> Result<Plan, Fail> {
        let usage = Fail::usage;
        let pid = match args.pid.as_deref().unwrap_or_default() {
            PID_FROM_STDIN => None,
            text => Some(validate::pid(text).map_err(usage)?),
        };
        let (kept, gone) = match pid {
            None => (handover::KEPT, handover::TARGET_GONE),
            Some(_) => (Exit::Failed.code(), Exit::Failed.code()),
        };
        let interval = validate::interval(&args.interval).map_err(usage)?;
        let idle_after = validate::idle_after(&args.idle_after).map_err(usage)?;
        let reap = match &args.reap {
            Some(text) => {
                Some(validate::interval(text).map_err(|e| usage(format!("--reap: {e}")))?)
            }
            None => None,
        };
        let started = match &args.started {
            Some(text) => Some(validate::start_time(text).map_err(usage)?),
            None => None,
        };
        if let Some(agent) = &args.agent {
            validate::agent(agent).map_err(usage)?;
        }
        let hook_timeout = validate::hook_timeout(&args.hook_timeout).map_err(usage)?;
        if args.on_event.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(usage("invalid --on-event \"\": an empty command".into()));
        }
        if let Some(socket) = &args.restart.socket {
            validate::socket(socket).map_err(usage)?;
        }
        let supervisor = supervisor(args)?;
        Ok(Plan {
            pid,
            started,
            interval,
            idle_after,
            reap,
            hook_timeout,
            supervisor,
            kept,
            gone,
        })
    }

    /// The hand-over's sidecar (`--pid -`), whose answers the launcher reads.
    fn handover(&self) -> bool {
        self.pid.is_none()
    }
}

/// The restart policy's supervisor, when there is one: its limits checked and its helper
/// found.
fn supervisor(args: &WatchArgs) -> Result<Option<Supervisor>, Fail> {
    let usage = Fail::usage;
    let Some(backoff) = args.restart.backoff().map_err(usage)? else {
        return Ok(None);
    };
    let (Some(agent), Some(socket)) = (&args.agent, &args.restart.socket) else {
        return Err(usage(format!(
            "--restart {} needs --agent and --socket: the agent's tmux pane is what restarts",
            args.restart.restart
        )));
    };
    validate::socket(socket).map_err(usage)?;
    let helper = args.restart.respawn_bin.as_deref();
    Supervisor::new(backoff, helper, socket, agent, !args.no_pidfd)
        .map(Some)
        .map_err(Fail::failed)
}

/// The event hooks, when `--on-event` asks for them.
fn hooks(args: &WatchArgs, plan: &Plan, path: &Path, file: &HbFile) -> Result<Option<Hooks>, Fail> {
    let Some(command) = &args.on_event else {
        return Ok(None);
    };
    let place = Place {
        agent: args.agent.clone().unwrap_or_default(),
        socket: args.restart.socket.clone().unwrap_or_default(),
        hb_file: path.to_path_buf(),
    };
    let at = (file.dir(), file.name());
    Hooks::new(
        command.clone(),
        plan.hook_timeout,
        place,
        at,
        !args.no_pidfd,
    )
    .map(Some)
    .map_err(|e| Fail::failed(format!("cannot prepare the event hooks: {}", why(&e))))
}

/// Prepares the heartbeat file's directory and proves a file can be created there.
fn open_file(path: PathBuf) -> Result<(PathBuf, HbFile), Fail> {
    let usage = Fail::usage;
    let path = absolute(path)?;
    // Heartbeat files are 0644 whatever umask we inherited; directories we create stay 0700.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let (dir, _) = mosaic_core::layout::split(&path).map_err(usage)?;
    dirs::prepare(&dir).map_err(usage)?;
    let file = HbFile::open(&path).map_err(usage)?;
    Ok((path, file))
}

/// Takes the one-writer lock of the heartbeat file, or says who holds it.
fn take_lock(file: &HbFile, path: &Path, plan: &Plan) -> Result<Lock, Fail> {
    match Lock::acquire(file.dir(), file.name()) {
        Ok(lock) => {
            // Ours alone now: what a predecessor killed mid-beat left behind can go (for the
            // hand-over, once the launcher has its answer). A failure only leaves litter,
            // which status never reads (dotfiles).
            if !plan.handover() {
                let _ = file.remove_stale_temps();
            }
            Ok(lock)
        }
        Err(LockError::Held(holder)) => {
            let by = holder.map_or("another mosaic-hb".into(), |pid| {
                format!("mosaic-hb pid {pid}")
            });
            Err(Fail::new(
                plan.kept,
                format!("heartbeat file {} is already kept by {by}", path.display()),
            ))
        }
        Err(LockError::Io(e)) => Err(Fail::usage(format!(
            "cannot lock heartbeat file {}: {}",
            path.display(),
            why(&e)
        ))),
    }
}

/// Opens `--log` for appending, before the background, so a mistake reaches the caller.
fn open_log(log: Option<&Path>) -> Result<Option<File>, Fail> {
    let Some(log) = log else {
        return Ok(None);
    };
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(log)
        .map(Some)
        .map_err(|e| {
            Fail::usage(format!(
                "cannot open log file {}: {}",
                log.display(),
                why(&e)
            ))
        })
}

/// The activity watch of the target's terminal, if it has one; without it the sidecar
/// still beats, and says why once.
fn watch_activity(pid: i32, file: &HbFile, idle_after: Duration) -> Option<activity::Watch> {
    match activity::Watch::attach(pid, file.dir(), file.name(), idle_after) {
        Ok(watch) => watch,
        Err(e) => {
            crate::log(format_args!(
                "cannot watch the activity of pid {pid}: {} (no activity= reported)",
                why(&e)
            ));
            None
        }
    }
}

/// Goes into the background. The hand-over's sidecar is already the launcher's child in a
/// session of its own: it stays that process and answers on its stdout once its first record
/// is written (the returned [`handover::Ready`]). Anyone else's returns once the daemon runs.
fn into_background(
    plan: &Plan,
    foreground: bool,
    log: Option<File>,
    file: &mut HbFile,
    lock: &Lock,
) -> Result<Option<handover::Ready>, Fail> {
    if foreground {
        if let Some(log) = log {
            redirect_stderr(&log);
        }
        return Ok(None);
    }
    if plan.handover() {
        return detach_in_place(log).map(Some);
    }
    daemonize(log)?;
    // A new pid: the temp name and the lock's record follow it.
    file.renew_temp_name();
    lock.record_pid();
    Ok(None)
}

/// Logs how the sidecar ended and what its last record says.
fn log_end(end: End, last: Option<(Status, bool)>, pid: i32) {
    let why = match end {
        End::Exited(gone) => format!("pid {pid} {}", gone.describe()),
        End::Stopped(stop) => format!("stopped by {stop}"),
        End::GaveUp(gone) => format!("pid {pid} {}, once too often", gone.describe()),
        End::Failed(e) => format!("cannot wait for events: {}", why(&e.into())),
    };
    match last {
        Some((status, written)) => {
            let wrote = if written { "wrote" } else { "could not write" };
            crate::log(format_args!("{why}: {wrote} status={}", status.as_str()));
        }
        None => crate::log(format_args!("{why}: giving up, the last record goes stale")),
    }
}

/// `mosaic-hb exporter ARGS`: becomes `mosaic-hb-exporter ARGS`, found next to this binary,
/// else on PATH. The HTTP server lives in its own binary so that it never weighs on the
/// sidecar, of which one runs per agent.
fn exporter(args: Vec<std::ffi::OsString>) -> Result<(), Fail> {
    use std::os::unix::process::CommandExt;
    const NAME: &str = "mosaic-hb-exporter";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(NAME)))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from(NAME));
    let err = std::process::Command::new(&program).args(args).exec();
    Err(Fail::failed(format!(
        "cannot run {} (install it next to mosaic-hb or on PATH): {}",
        program.display(),
        why(&err)
    )))
}

/// Reads the hand-over line from stdin. EOF (the launcher needs no sidecar after all) is a
/// usage error that nobody reads: nothing has been written, no lock taken.
fn target_from_stdin() -> Result<(i32, Option<u64>), Fail> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Fail::usage(format!("cannot read a pid from stdin: {}", why(&e))))?;
    match handover::Target::parse(&line) {
        Ok(Some(target)) => Ok((target.pid, target.started)),
        Ok(None) => Err(Fail::usage("no pid on stdin: nothing to watch".into())),
        Err(message) => Err(Fail::usage(message)),
    }
}

fn absolute(path: PathBuf) -> Result<PathBuf, Fail> {
    std::path::absolute(&path).map_err(|e| {
        Fail::usage(format!(
            "invalid heartbeat file {}: {}",
            path.display(),
            why(&e)
        ))
    })
}

/// The hand-over's way into the background, without a fork: the launcher spawned us through
/// `setsid`, so we lead a session of our own with no terminal (and open none: the pane's is
/// opened `O_NOCTTY`), and once the launcher has read our answer, we are orphaned to init like
/// any daemon. Here: our own session (if `setsid` did not make one), cwd `/`, stdin on
/// /dev/null. Returns the answer, which once the first record is written says so on stdout
/// and lets go of stdout and stderr (stderr goes to the log, if any).
fn detach_in_place(log: Option<File>) -> Result<handover::Ready, Fail> {
    let failed =
        |what: &str, e: std::io::Error| Fail::failed(format!("cannot {what}: {}", why(&e)));
    if nix::unistd::getsid(None).ok() != Some(nix::unistd::getpid()) {
        // A process group leader (run by hand from a job-control shell) cannot: it stays in
        // its caller's session, where a hangup is a stop signal like any other.
        let _ = nix::unistd::setsid();
    }
    std::env::set_current_dir("/").map_err(|e| failed("change directory to /", e))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| failed("open /dev/null", e))?;
    let _ = nix::unistd::dup2_stdin(&null);
    Ok(handover::Ready { null, log })
}

/// Forks into the background: own session, cwd `/`, stdio on /dev/null (stderr on the log).
/// The caller's process exits here with 0 once the daemon is running.
// Out of line, so that daemonix's builder (no user, group or pid file) folds into it and its
// user and group lookups drop out of the static binary (glibc's NSS and resolver, 150 KB).
#[inline(never)]
fn daemonize(log: Option<File>) -> Result<(), Fail> {
    let mut daemon = daemonix::Daemonize::new()
        .working_directory("/")
        .umask(0o022u32);
    if let Some(log) = log {
        daemon = daemon.stderr(log);
    }
    match daemon.execute() {
        daemonix::Outcome::Parent(Ok(parent)) => {
            std::process::exit(if parent.first_child_exit_code == 0 {
                0
            } else {
                i32::from(Exit::Failed.code())
            })
        }
        daemonix::Outcome::Parent(Err(e)) => Err(Fail::failed(format!("cannot daemonize: {e}"))),
        daemonix::Outcome::Child(Ok(_)) => Ok(()),
        // The first child's error has nowhere to go but its exit code.
        daemonix::Outcome::Child(Err(_)) => std::process::exit(i32::from(Exit::Failed.code())),
    }
}

fn redirect_stderr(log: &File) {
    // Best effort, as a daemon's stderr: without it diagnostics go where they went before.
    let _ = nix::unistd::dup2_stderr(log);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn parse(args: &[&str]) -> Cli {
        let argv = ["mosaic-hb", "--pid", "1", "--file", "/x.hb"];
        let matches = command()
            .try_get_matches_from(argv.iter().chain(args))
            .unwrap();
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn each_restart_limit_reaches_its_flag() {
        command().debug_assert();
        let cli = parse(&[
            "--restart",
            "always",
            "--restart-delay",
            "0.5",
            "--restart-max-delay",
            "60",
            "--restart-stable",
            "120",
            "--restart-burst",
            "3",
            "--restart-window",
            "600",
            "--restart-guard",
            "0",
        ]);
        let backoff = cli.watch.restart.backoff().unwrap().unwrap();
        let s = std::time::Duration::from_secs;
        let want = mosaic_core::supervise::Limits {
            floor: std::time::Duration::from_millis(500),
            cap: s(60),
            stable: s(120),
            burst: 3,
            window: s(600),
            guard: s(0),
        };
        assert_eq!(*backoff.limits(), want);
        assert!(parse(&[]).watch.restart.backoff().unwrap().is_none());
    }

    #[test]
    fn the_sidecar_reads_no_restart_variable() {
        assert!(command().get_arguments().all(|arg| arg.get_env().is_none()));
    }
}
