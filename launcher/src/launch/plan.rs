/*!
The launch's first step: [`plan`] checks every input (flags and their `MOSAIC_*` variables)
and touches nothing, so a mistake exits 2 before anything starts. Its [`Plan`] is all the
later steps read.
*/

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mosaic_core::exit::Fail;
use mosaic_core::{dirs, supervise, validate};

use crate::cli::Cli;
use crate::pane;
use crate::tmux;
use crate::worktree::{self, Worktree};

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
    /// The command and runtime-bin as resolved, for the stored [`LaunchConfig`](crate::config::LaunchConfig).
    pub command: OsString,
    pub runtime_bin: Option<PathBuf>,
    /// The restart policy and its limits as flags (`restart`, `restart-delay`, ...), for the
    /// stored [`LaunchConfig`](crate::config::LaunchConfig); empty for `no`.
    pub restart: Vec<(&'static str, String)>,
    /// The agent's own variables (`--env`), sorted by name; in `pane_command`.
    pub env: Vec<(String, OsString)>,
    /// Labels (`--label`), sorted by name; only stored.
    pub labels: Vec<(String, String)>,
    /// The transcript (none with `--no-log`).
    pub log: Option<Log>,
    /// The agent's own git worktree (`--worktree`); the pane starts in it, not in `workdir`.
    pub worktree: Option<Worktree>,
}

impl Plan {
    /// The sidecar's bell mark (`.AGENT.hb.bell`), with a heartbeat: a bell in the pane is marked
    /// there by its transcript's writer, else by tmux's `alert-bell` hook.
    pub fn bell_mark(&self) -> Option<PathBuf> {
        mosaic_core::layout::bell_path(&self.heartbeat.as_ref()?.file)
    }

    /// Where the agent's pane starts: its worktree, else its workdir.
    pub fn pane_workdir(&self) -> std::borrow::Cow<'_, Path> {
        match &self.worktree {
            Some(wt) => wt.workdir().into(),
            None => self.workdir.as_path().into(),
        }
    }
}

/// Where and how the agent's transcript is kept (`mosaic_core::transcript`).
pub struct Log {
    /// `--log-dir` as given, or the default base: what the launch file stores.
    pub base: PathBuf,
    /// `BASE/SOCKET`, where `AGENT.log` is.
    pub dir: PathBuf,
    pub max_size: u64,
    pub keep: u32,
    pub bin: Option<PathBuf>,
}

pub struct Heartbeat {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub interval: Duration,
    pub idle_after: Duration,
    pub hb_bin: Option<PathBuf>,
    /// The sidecar's restart arguments (none without a restart policy).
    pub restart: Vec<String>,
    /// The event hook (`--on-event`) and its timeout.
    pub hook: Option<(OsString, Duration)>,
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
    let AgentCommand {
        command,
        workdir,
        runtime_bin,
        pane_command,
        env,
    } = agent_command(&cli)?;
    let labels = pairs(&cli.labels, "--label", crate::config::label_key)?
        .into_iter()
        .map(|(k, v)| Ok((k, text(&v, "label value (--label)")?.to_string())))
        .collect::<Result<_, Fail>>()?;
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
    let hook = hook(&cli)?;
    if cli.no_heartbeat && hook.is_some() {
        return Err(Fail::usage(
            "--on-event needs the heartbeat sidecar, which runs the hooks: drop --no-heartbeat"
                .into(),
        ));
    }
    let worktree = worktree_of(&cli, &agent, &workdir, timeout)?;
    let log = log(&cli, &socket)?;
    let heartbeat = if cli.no_heartbeat {
        None
    } else {
        let dir = match cli.hb_dir.filter(|d| !d.is_empty()) {
            Some(dir) => absolute(&dir)?,
            None => dirs::default_dir(),
        };
        Some(Heartbeat {
            file: mosaic_core::layout::record_path(&dir, &agent),
            dir,
            interval,
            idle_after,
            hb_bin: cli.hb_bin.filter(|b| !b.is_empty()).map(PathBuf::from),
            restart: supervise::sidecar_args(policy, &limits),
            hook,
        })
    };
    Ok(Plan {
        log,
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
        env,
        labels,
        worktree,
    })
}

/// The event hook and its timeout; an empty command is none.
fn hook(cli: &Cli) -> Result<Option<(OsString, Duration)>, Fail> {
    let what = "hook timeout (--hook-timeout, MOSAIC_HOOK_TIMEOUT)";
    let given = Some(cli.hook_timeout.clone()).filter(|t| !t.is_empty());
    let timeout = match seconds(&given, what, validate::INTERVAL_MIN)? {
        Some(timeout) => timeout,
        None => validate::hook_timeout(validate::DEFAULT_HOOK_TIMEOUT).map_err(Fail::usage)?,
    };
    Ok(cli
        .on_event
        .clone()
        .filter(|c| !c.is_empty())
        .map(|command| (command, timeout)))
}

/// `--worktree` and its settings, checked (read-only git commands); `--base`, `--setup` and
/// `--teardown` without it are refused.
fn worktree_of(
    cli: &Cli,
    agent: &str,
    workdir: &Path,
    timeout: Duration,
) -> Result<Option<Worktree>, Fail> {
    let given = |v: &Option<OsString>| v.clone().filter(|v| !v.is_empty());
    let (base, setup, teardown) = (given(&cli.base), given(&cli.setup), given(&cli.teardown));
    if !cli.worktree {
        for (flag, value) in [
            ("--base", &base),
            ("--setup", &setup),
            ("--teardown", &teardown),
        ] {
            if value.is_some() {
                return Err(Fail::usage(format!("{flag} needs --worktree")));
            }
        }
        return Ok(None);
    }
    let base = base
        .map(|b| text(&b, "base (--base, MOSAIC_WORKTREE_BASE)").map(str::to_string))
        .transpose()?;
    worktree::resolve(agent, workdir, base, [setup, teardown], timeout).map(Some)
}

/// The transcript's settings, checked; `None` with `--no-log`, or with no `--log-dir` and no
/// absolute `HOME` or `XDG_STATE_HOME`.
fn log(cli: &Cli, socket: &str) -> Result<Option<Log>, Fail> {
    use mosaic_core::transcript;
    if cli.no_log {
        return Ok(None);
    }
    let base = match cli.log_dir.as_ref().filter(|d| !d.is_empty()) {
        Some(dir) => absolute(dir)?,
        // No HOME nor XDG_STATE_HOME (a bare service environment): no default place, so no
        // transcript, as before transcripts; `--log-dir` names one.
        None => match transcript::default_base() {
            Some(base) => base,
            None => return Ok(None),
        },
    };
    let size = cli.log_max_size.as_deref().filter(|v| !v.is_empty());
    let size = text(
        size.unwrap_or(transcript::DEFAULT_MAX_SIZE.as_ref()),
        "log size (--log-max-size, MOSAIC_LOG_MAX_SIZE)",
    )?;
    let max_size = validate::size(size).map_err(|why| {
        Fail::usage(validate::invalid(
            "log size (--log-max-size, MOSAIC_LOG_MAX_SIZE)",
            size,
            &why,
        ))
    })?;
    let keep = cli.log_keep.as_deref().filter(|v| !v.is_empty());
    let keep = text(
        keep.unwrap_or(transcript::DEFAULT_KEEP.as_ref()),
        "log keep (--log-keep, MOSAIC_LOG_KEEP)",
    )?;
    let keep = keep
        .parse::<u32>()
        .ok()
        .filter(|&k| k <= transcript::MAX_KEEP)
        .ok_or_else(|| {
            Fail::usage(validate::invalid(
                "log keep (--log-keep, MOSAIC_LOG_KEEP)",
                keep,
                &format!("a whole number from 0 to {}", transcript::MAX_KEEP),
            ))
        })?;
    Ok(Some(Log {
        dir: transcript::socket_dir(&base, socket),
        base,
        max_size,
        keep,
        bin: cli
            .log_bin
            .as_ref()
            .filter(|b| !b.is_empty())
            .map(PathBuf::from),
    }))
}

/// The agent's command as given, the pane command that runs it, and where: checked.
struct AgentCommand {
    command: OsString,
    workdir: PathBuf,
    runtime_bin: Option<PathBuf>,
    pane_command: OsString,
    env: Vec<(String, OsString)>,
}

fn agent_command(cli: &Cli) -> Result<AgentCommand, Fail> {
    let runtime = cli.runtime.as_deref();
    let runtime = runtime.map(|r| text(r, "runtime (--runtime, MOSAIC_AGENT_RUNTIME)"));
    let runtime = match runtime.transpose()?.filter(|r| !r.is_empty()) {
        Some(r) => Some(validate::runtime(r).map_err(Fail::usage)?),
        None => None,
    };
    let command = match (cli.command.clone().filter(|c| !c.is_empty()), runtime) {
        (Some(command), _) => command,
        (None, Some(runtime)) => OsString::from(format!("mosaic yolo {runtime}")),
        (None, None) => {
            return Err(Fail::usage(
                "no agent command: set --command (MOSAIC_AGENT_COMMAND) or --runtime (MOSAIC_AGENT_RUNTIME)".into(),
            ))
        }
    };
    let workdir = match cli.workdir.as_ref().filter(|w| !w.is_empty()) {
        Some(dir) => absolute(dir)?,
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
    let runtime_bin = match cli
        .runtime_bin
        .as_ref()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
    {
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
    let env = pairs(&cli.env, "--env", |k| pane::env_key(k).map(|_| ()))?;
    let pane_command = pane::with_env(&env, pane::command(&prefix, &command));
    Ok(AgentCommand {
        command,
        workdir,
        runtime_bin,
        pane_command,
        env,
    })
}

/// `KEY=VALUE` arguments of `flag`, keys checked by `check`, sorted by key; a key given twice
/// is refused.
fn pairs(
    values: &[OsString],
    flag: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<(String, OsString)>, Fail> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<(String, OsString)> = Vec::with_capacity(values.len());
    for value in values {
        let bytes = value.as_encoded_bytes();
        let at = bytes
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| Fail::usage(format!("invalid {flag} {value:?}: KEY=VALUE expected")))?;
        let key = std::str::from_utf8(&bytes[..at])
            .map_err(|_| Fail::usage(format!("invalid {flag} {value:?}: the key is not UTF-8")))?;
        check(key).map_err(|why| Fail::usage(format!("invalid {flag}: {why}")))?;
        if out.iter().any(|(k, _)| k == key) {
            return Err(Fail::usage(format!("invalid {flag}: {key} given twice")));
        }
        let rest = std::ffi::OsStr::from_bytes(&bytes[at + 1..]).to_os_string();
        out.push((key.to_string(), rest));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
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
