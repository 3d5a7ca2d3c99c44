/*!
`mosaic-launcher AGENT`: a drop-in for `start-agent-session.sh`.

One run: validate everything (exit 2, nothing started or written); prepare the heartbeat
directory and find `setsid` and `mosaic-hb` (exit 1, nothing started); ask tmux for the session
and, while it works, start the sidecar waiting for its pane; then hand the sidecar its pane, or
cancel it when the agent needs none (one already keeps the file, or tmux named no pane). A session this run created is killed again
if its sidecar cannot be started: all or nothing.
*/

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mosaic_hb::exit::Exit;
use mosaic_hb::{dirs, json, validate};

use crate::cli::Cli;
use crate::pane;
use crate::sidecar::{Sidecar, Started};
use crate::tmux::{Created, Pane, Tmux};

struct Fail(Exit, String);

fn usage(message: String) -> Fail {
    Fail(Exit::Usage, message)
}

fn failed(message: String) -> Fail {
    Fail(Exit::Failed, message)
}

/// A validated request.
struct Plan {
    agent: String,
    socket: String,
    workdir: PathBuf,
    pane_command: OsString,
    heartbeat: Option<Heartbeat>,
}

struct Heartbeat {
    dir: PathBuf,
    file: PathBuf,
    interval: String,
    idle_after: String,
    hb_bin: Option<PathBuf>,
}

/// What happened, for the report.
struct Report {
    already_running: bool,
    pane_pid: Option<u32>,
    /// "started", "running" (kept by an existing sidecar), or "none".
    sidecar: &'static str,
}

/// `mosaic-launcher AGENT`, from parsed arguments to exit code.
pub fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    let result = plan(cli).and_then(|plan| launch(&plan).map(|report| (plan, report)));
    match result {
        Ok((plan, report)) => {
            println!(
                "{}",
                if json {
                    render_json(&plan, &report)
                } else {
                    render_text(&plan, &report)
                }
            );
            ExitCode::SUCCESS
        }
        Err(Fail(code, message)) => {
            eprintln!("mosaic-launcher: {message}");
            ExitCode::from(code)
        }
    }
}

/// Checks every input; touches nothing.
fn plan(cli: Cli) -> Result<Plan, Fail> {
    let agent = validate::agent(text(&cli.agent, "agent name")?)
        .map_err(usage)?
        .to_string();
    // An empty variable counts as unset, as `${VAR:-default}` did in the bash original.
    let socket = text(
        &cli.socket,
        "tmux socket name (--socket, MOSAIC_TMUX_SOCKET)",
    )?;
    let socket = validate::socket(or_default(socket, "mosaic"))
        .map_err(usage)?
        .to_string();
    let runtime = cli.runtime.as_deref();
    let runtime = runtime.map(|r| text(r, "runtime (--runtime, MOSAIC_AGENT_RUNTIME)"));
    let runtime = match runtime.transpose()?.filter(|r| !r.is_empty()) {
        Some(r) => Some(validate::runtime(r).map_err(usage)?),
        None => None,
    };
    let command = match (cli.command.filter(|c| !c.is_empty()), runtime) {
        (Some(command), _) => command,
        (None, Some(runtime)) => OsString::from(format!("mosaic yolo {runtime}")),
        (None, None) => {
            return Err(usage(
                "no agent command: set --command (MOSAIC_AGENT_COMMAND) or --runtime (MOSAIC_AGENT_RUNTIME)".into(),
            ))
        }
    };
    let workdir = match cli.workdir.filter(|w| !w.is_empty()) {
        Some(dir) => absolute(&dir)?,
        None => std::env::current_dir().map_err(|e| {
            failed(format!(
                "cannot read the current directory: {}",
                mosaic_hb::why(&e)
            ))
        })?,
    };
    if !workdir.is_dir() {
        return Err(usage(format!(
            "invalid workdir {}: not a directory",
            workdir.display()
        )));
    }
    let runtime_bin = match cli.runtime_bin.filter(|d| !d.is_empty()).map(PathBuf::from) {
        Some(dir) if dir.as_os_str().as_encoded_bytes().contains(&b':') => {
            return Err(usage(format!(
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
    let interval = validate::interval(or_default(interval, "30")).map_err(usage)?;
    let idle_after = text(
        &cli.idle_after,
        "idle threshold (--idle-after, MOSAIC_IDLE_AFTER)",
    )?;
    let idle_after = validate::idle_after(or_default(idle_after, "60")).map_err(usage)?;
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
            interval: validate::format_interval(interval),
            idle_after: validate::format_interval(idle_after),
            hb_bin: cli.hb_bin.filter(|b| !b.is_empty()).map(PathBuf::from),
        })
    };
    Ok(Plan {
        agent,
        socket,
        workdir,
        pane_command,
        heartbeat,
    })
}

/// A value that must be text: names, sockets, runtimes and intervals are never raw bytes.
fn text<'a>(value: &'a std::ffi::OsStr, what: &str) -> Result<&'a str, Fail> {
    value
        .to_str()
        .ok_or_else(|| usage(format!("invalid {what} {value:?}: not UTF-8 text")))
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
        usage(format!(
            "invalid path {}: {}",
            path.display(),
            mosaic_hb::why(&e)
        ))
    })
}

fn launch(plan: &Plan) -> Result<Report, Fail> {
    let sidecar = match &plan.heartbeat {
        Some(hb) => {
            dirs::prepare(&hb.dir).map_err(failed)?;
            Some((hb, Sidecar::locate(hb.hb_bin.as_deref()).map_err(failed)?))
        }
        None => None,
    };
    let tmux = Tmux::new(&plan.socket);
    // A bell in the pane marks the sidecar's bell file (see `mosaic_hb::activity`).
    let bell_hook = plan
        .heartbeat
        .as_ref()
        .and_then(|hb| mosaic_hb::activity::bell_path(&hb.file))
        .map(|bell| pane::bell_hook(&bell));
    let session = tmux
        .start_new_session(
            &plan.agent,
            &plan.workdir,
            &plan.pane_command,
            bell_hook.as_deref(),
        )
        .map_err(failed)?;
    // While tmux works, the sidecar starts and waits for its pane (see `sidecar`); dropping
    // `pending` cancels it.
    let pending = match sidecar {
        Some((hb, sidecar)) => {
            match sidecar.spawn(&hb.file, &hb.interval, &hb.idle_after, &plan.agent) {
                Ok(pending) => Some(pending),
                Err(why) => {
                    if let Ok(Created::New(_)) = session.finish() {
                        tmux.kill_session(&plan.agent);
                    }
                    return Err(failed(why));
                }
            }
        }
        None => None,
    };
    let created = session.finish().map_err(failed)?;
    let (already_running, printed_pid) = match created {
        Created::New(pid) => (false, pid),
        Created::AlreadyRunning => (true, None),
    };
    let report = |pane_pid, sidecar| Report {
        already_running,
        pane_pid,
        sidecar,
    };
    let (Some(hb), Some(pending)) = (&plan.heartbeat, pending) else {
        return Ok(report(printed_pid, "none"));
    };
    let pane_pid = match printed_pid {
        Some(pid) => pid,
        None => match tmux.pane_pid(&plan.agent).map_err(failed)? {
            Pane::Pid(pid) => pid,
            Pane::Unknown => return Ok(report(None, "none")),
            Pane::Gone(why) => {
                return Err(failed(format!(
                    "agent {} exited at once: its session is gone ({why})",
                    plan.agent
                )))
            }
        },
    };
    // A running agent whose sidecar holds the lock is complete; one whose sidecar died is healed.
    if already_running && matches!(mosaic_hb::lock::is_held(&hb.file), Ok(true)) {
        return Ok(report(Some(pane_pid), "running"));
    }
    match pending.start(pane_pid, &hb.file) {
        Ok(Started::Running) => Ok(report(Some(pane_pid), "started")),
        Ok(Started::AlreadyKept) => Ok(report(Some(pane_pid), "running")),
        Ok(Started::TargetGone(why)) => Err(failed(format!(
            "agent {} exited at once: {why}",
            plan.agent
        ))),
        Err(why) => {
            if !already_running {
                tmux.kill_session(&plan.agent);
            }
            Err(failed(why))
        }
    }
}

fn render_text(plan: &Plan, report: &Report) -> String {
    let mut line = if report.already_running {
        format!(
            "agent {} already running on tmux socket {}",
            plan.agent, plan.socket
        )
    } else {
        format!(
            "started agent {} on tmux socket {}",
            plan.agent, plan.socket
        )
    };
    if let Some(pid) = report.pane_pid {
        line += &format!(": pane pid {pid}");
    }
    match (&plan.heartbeat, report.sidecar) {
        (Some(hb), "started") => line += &format!(", heartbeat {}", hb.file.display()),
        (Some(hb), "running") => {
            line += &format!(", heartbeat {} (sidecar running)", hb.file.display())
        }
        _ => line += ", no heartbeat",
    }
    if report.already_running && report.sidecar == "started" {
        line += " (sidecar restarted)";
    }
    line
}

fn render_json(plan: &Plan, report: &Report) -> String {
    let heartbeat = match (&plan.heartbeat, report.sidecar) {
        (Some(hb), "started" | "running") => Some(hb.file.to_string_lossy()),
        _ => None,
    };
    let status = if report.already_running {
        "already running"
    } else {
        "started"
    };
    let mut out = String::new();
    let mut obj = json::Object::new(&mut out);
    obj.string("agent", plan.agent.as_str())
        .string("socket", plan.socket.as_str())
        .string("status", status)
        .number("pane_pid", report.pane_pid)
        .string("heartbeat", heartbeat.as_deref())
        .string("sidecar", report.sidecar)
        .string("workdir", &*plan.workdir.to_string_lossy());
    obj.end();
    out
}
