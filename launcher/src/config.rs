/*!
An agent's launch configuration, stored with the agent so it can be started again the same way
(`mosaic-fleet restart`, and later a restart policy) whatever the caller's environment.

The launcher writes it when it creates a session with a heartbeat: `HB_DIR/.AGENT.launch`, beside
the record, replaced whole by rename like the record (and, like the sidecars' lock and temp
files, a dotfile, so `mosaic-hb status` does not take it for an agent). It outlives the session,
so an agent that died and lost its session can still be restarted. An agent started with
`--no-heartbeat` has no heartbeat directory, so nothing is stored for it.

```text
agent=builder-1
socket=mosaic
workdir=/home/me/src/app
command=mosaic yolo claude
runtime_bin=/opt/claude/bin        (only when given)
hb_dir=/run/user/1000/mosaic/heartbeat
hb_interval=30
idle_after=60
restart=on-failure                 (only under a restart policy)
restart-delay=0.5                  (each restart limit that is not the default)
on_event=notify-send "$MOSAIC_AGENT" "$MOSAIC_EVENT"   (only with --on-event)
hook_timeout=30                    (with on_event)
env.API_URL=http://localhost:8080  (each --env, by name)
label.team=search                  (each --label, by name)
worktree=/home/me/src/app/.git/mosaic-worktrees/builder-1   (with --worktree: where,
branch=mosaic/builder-1            its branch,
base=main                          and each of --base, --setup, --teardown given)
log_dir=/home/me/.local/state/mosaic/logs   (the transcript's base; log=off for --no-log)
log_max_size=10485760
log_keep=5
```

Values are bytes (paths and commands need not be UTF-8): printable ASCII but `\` is written as
is, every other byte as `\xNN`, so a value is one line and comes back byte for byte.
*/

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use std::time::Duration;

use mosaic_core::supervise::LimitArgs;
use mosaic_core::validate;

use crate::cli::Cli;
use crate::launch::Plan;

/// The largest launch file we read: a real one is a few hundred bytes.
const READ_LIMIT: u64 = 256 * 1024;

/// Everything a launch was given, resolved (absolute paths, defaults applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub agent: String,
    pub socket: String,
    pub workdir: PathBuf,
    /// The agent command as the launcher ran it (after `exec`), byte for byte.
    pub command: OsString,
    pub runtime_bin: Option<PathBuf>,
    pub hb_dir: PathBuf,
    /// Between heartbeats, as the sidecar was given it.
    pub hb_interval: Duration,
    /// Without output for this long, the sidecar calls the agent idle.
    pub idle_after: Duration,
    /// The restart policy and its limits as flag names and values (`restart`,
    /// `restart-delay`, ...: [`mosaic_core::supervise::settings`]); empty for none.
    pub restart: Vec<(String, String)>,
    /// The agent's own variables (`--env`), sorted by name.
    pub env: Vec<(String, OsString)>,
    /// The event hook (`--on-event`) and its timeout.
    pub hook: Option<(OsString, Duration)>,
    /// Labels (`--label`), sorted by name.
    pub labels: Vec<(String, String)>,
    /// The transcript's base dir, rotation size and files kept; `None` for `--no-log`.
    pub log: Option<(PathBuf, u64, u32)>,
    /// Its git worktree (`--worktree`).
    pub worktree: Option<WorktreeConfig>,
}

/// An agent's git worktree as stored: where, its branch, and what it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorktreeConfig {
    pub path: PathBuf,
    pub branch: String,
    pub base: Option<String>,
    pub setup: Option<OsString>,
    pub teardown: Option<OsString>,
}

impl LaunchConfig {
    /// The agent's transcript folder (`BASE/SOCKET`); `None` for `--no-log`.
    pub fn transcript_dir(&self) -> Option<PathBuf> {
        let (base, _, _) = self.log.as_ref()?;
        Some(mosaic_core::transcript::socket_dir(base, &self.socket))
    }

    /// Where the launch configuration of `agent` lives in heartbeat directory `hb_dir`.
    pub fn path(hb_dir: &Path, agent: &str) -> PathBuf {
        hb_dir.join(mosaic_core::layout::launch_name(agent))
    }

    /// The configuration a launch of `plan` stores; `None` without a heartbeat (nowhere to
    /// store it).
    pub fn of(plan: &Plan) -> Option<LaunchConfig> {
        let hb = plan.heartbeat.as_ref()?;
        Some(LaunchConfig {
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
            env: plan.env.clone(),
            hook: hb.hook.clone(),
            labels: plan.labels.clone(),
            worktree: plan.worktree.as_ref().map(|wt| WorktreeConfig {
                path: wt.path.clone(),
                branch: wt.branch.clone(),
                base: wt.base.clone(),
                setup: wt.setup.clone(),
                teardown: wt.teardown.clone(),
            }),
            log: plan
                .log
                .as_ref()
                .map(|l| (l.base.clone(), l.max_size, l.keep)),
        })
    }

    /// Writes the file (atomically, never through a symlink).
    pub fn store(&self) -> Result<(), String> {
        let name = format!(".{}.launch", self.agent);
        replace_file(&self.hb_dir, &name, &self.render(), 0o600).map_err(|e| {
            format!(
                "cannot write launch file {}: {}",
                self.hb_dir.join(&name).display(),
                mosaic_core::why(&e)
            )
        })
    }

    /// Reads the stored configuration of `agent`; `Ok(None)` when none is stored.
    pub fn load(hb_dir: &Path, agent: &str) -> Result<Option<LaunchConfig>, String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path(hb_dir, agent);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path);
        let bad = |why: String| format!("cannot read launch file {}: {why}", path.display());
        let file = match file {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(mosaic_core::why(&e))),
        };
        let mut bytes = Vec::new();
        file.take(READ_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(mosaic_core::why(&e)))?;
        Self::parse(&bytes).map(Some).map_err(bad)
    }

    /// The launcher's arguments that start this agent again.
    pub fn to_cli(&self, json: bool) -> Cli {
        Cli {
            agent: self.agent.clone().into(),
            socket: self.socket.clone().into(),
            workdir: Some(self.workdir.clone().into()),
            runtime: None,
            command: Some(self.command.clone()),
            runtime_bin: self.runtime_bin.clone().map(Into::into),
            hb_dir: Some(self.hb_dir.clone().into()),
            hb_interval: validate::format_interval(self.hb_interval).into(),
            idle_after: validate::format_interval(self.idle_after).into(),
            no_heartbeat: false,
            // How long to wait for tmux and how long a start must live are the caller's call.
            settle: None,
            tmux_timeout: None,
            json,
            hb_bin: None,
            restart: self.restart_flag("restart"),
            limits: LimitArgs {
                delay: self.restart_flag("restart-delay"),
                max_delay: self.restart_flag("restart-max-delay"),
                stable: self.restart_flag("restart-stable"),
                burst: self.restart_flag("restart-burst"),
                window: self.restart_flag("restart-window"),
                guard: self.restart_flag("restart-guard"),
            },
            env: self.env.iter().map(|(k, v)| pair(k, v)).collect(),
            on_event: self.hook.as_ref().map(|(command, _)| command.clone()),
            hook_timeout: validate::format_interval(self.hook_timeout()).into(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| pair(k, v.as_ref()))
                .collect(),
            worktree: self.worktree.is_some(),
            base: self
                .worktree
                .as_ref()
                .and_then(|w| w.base.clone().map(Into::into)),
            setup: self.worktree.as_ref().and_then(|w| w.setup.clone()),
            teardown: self.worktree.as_ref().and_then(|w| w.teardown.clone()),
            no_log: self.log.is_none(),
            log_dir: self.log.as_ref().map(|l| l.0.clone().into()),
            log_max_size: self.log.as_ref().map(|l| l.1.to_string().into()),
            log_keep: self.log.as_ref().map(|l| l.2.to_string().into()),
            log_bin: None,
        }
    }

    /// The hook's timeout, the default without a hook.
    pub fn hook_timeout(&self) -> Duration {
        match &self.hook {
            Some((_, timeout)) => *timeout,
            None => validate::hook_timeout(validate::DEFAULT_HOOK_TIMEOUT).expect("valid"),
        }
    }

    /// A stored restart setting; absent is the default (the launch validates them again).
    fn restart_flag(&self, flag: &str) -> Option<OsString> {
        self.restart
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.into())
    }

    fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut line = |key: &str, value: &[u8]| {
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            escape(&mut out, value);
            out.push(b'\n');
        };
        line("agent", self.agent.as_bytes());
        line("socket", self.socket.as_bytes());
        line("workdir", self.workdir.as_os_str().as_bytes());
        line("command", self.command.as_bytes());
        if let Some(dir) = &self.runtime_bin {
            line("runtime_bin", dir.as_os_str().as_bytes());
        }
        line("hb_dir", self.hb_dir.as_os_str().as_bytes());
        line(
            "hb_interval",
            validate::format_interval(self.hb_interval).as_bytes(),
        );
        line(
            "idle_after",
            validate::format_interval(self.idle_after).as_bytes(),
        );
        for (flag, value) in &self.restart {
            line(flag, value.as_bytes());
        }
        if let Some((command, timeout)) = &self.hook {
            line("on_event", command.as_bytes());
            line(
                "hook_timeout",
                validate::format_interval(*timeout).as_bytes(),
            );
        }
        for (key, value) in &self.env {
            line(&format!("env.{key}"), value.as_bytes());
        }
        for (key, value) in &self.labels {
            line(&format!("label.{key}"), value.as_bytes());
        }
        if let Some(wt) = &self.worktree {
            line("worktree", wt.path.as_os_str().as_bytes());
            line("branch", wt.branch.as_bytes());
            for (key, value) in [
                ("base", wt.base.as_ref().map(|b| b.as_bytes())),
                ("setup", wt.setup.as_ref().map(|s| s.as_bytes())),
                ("teardown", wt.teardown.as_ref().map(|t| t.as_bytes())),
            ] {
                if let Some(value) = value {
                    line(key, value);
                }
            }
        }
        match &self.log {
            Some((base, size, keep)) => {
                line("log_dir", base.as_os_str().as_bytes());
                line("log_max_size", size.to_string().as_bytes());
                line("log_keep", keep.to_string().as_bytes());
            }
            None => line("log", b"off"),
        }
        out
    }

    fn parse(bytes: &[u8]) -> Result<LaunchConfig, String> {
        let (mut agent, mut socket, mut workdir, mut command) = (None, None, None, None);
        let (mut runtime_bin, mut hb_dir, mut hb_interval, mut idle_after) =
            (None, None, None, None);
        let mut restart = Vec::new();
        let (mut env, mut labels) = (Vec::new(), Vec::new());
        let (mut on_event, mut hook_timeout) = (None, None);
        let mut worktree: Option<WorktreeConfig> = None;
        let (mut log_off, mut log_dir, mut log_size, mut log_keep) = (false, None, None, None);
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let at = line
                .iter()
                .position(|&b| b == b'=')
                .ok_or("a line without '='")?;
            let (key, value) = (&line[..at], unescape(&line[at + 1..])?);
            let text = |v: Vec<u8>| {
                String::from_utf8(v).map_err(|_| "a value that is not UTF-8".to_string())
            };
            match key {
                b"agent" => agent = Some(text(value)?),
                b"socket" => socket = Some(text(value)?),
                b"workdir" => workdir = Some(PathBuf::from(OsString::from_vec(value))),
                b"command" => command = Some(OsString::from_vec(value)),
                b"runtime_bin" => runtime_bin = Some(PathBuf::from(OsString::from_vec(value))),
                b"hb_dir" => hb_dir = Some(PathBuf::from(OsString::from_vec(value))),
                b"hb_interval" => hb_interval = Some(validate::interval(&text(value)?)?),
                b"idle_after" => idle_after = Some(validate::idle_after(&text(value)?)?),
                b"on_event" => on_event = Some(OsString::from_vec(value)),
                b"hook_timeout" => hook_timeout = Some(validate::hook_timeout(&text(value)?)?),
                b"log" => log_off = value == b"off",
                b"log_dir" => log_dir = Some(PathBuf::from(OsString::from_vec(value))),
                b"log_max_size" => log_size = text(value)?.parse().ok(),
                b"log_keep" => log_keep = text(value)?.parse().ok(),
                flag if flag.starts_with(b"restart") => {
                    restart.push((text(flag.to_vec())?, text(value)?));
                }
                key if key.starts_with(b"env.") => {
                    env.push((text(key[4..].to_vec())?, OsString::from_vec(value)));
                }
                key if key.starts_with(b"label.") => {
                    labels.push((text(key[6..].to_vec())?, text(value)?));
                }
                b"worktree" => {
                    worktree.get_or_insert_with(Default::default).path =
                        PathBuf::from(OsString::from_vec(value))
                }
                b"branch" => worktree.get_or_insert_with(Default::default).branch = text(value)?,
                b"base" => worktree.get_or_insert_with(Default::default).base = Some(text(value)?),
                b"setup" => {
                    worktree.get_or_insert_with(Default::default).setup =
                        Some(OsString::from_vec(value))
                }
                b"teardown" => {
                    worktree.get_or_insert_with(Default::default).teardown =
                        Some(OsString::from_vec(value))
                }
                _ => {}
            }
        }
        let missing = |key: &str| format!("no {key}=");
        Ok(LaunchConfig {
            agent: agent.ok_or_else(|| missing("agent"))?,
            socket: socket.ok_or_else(|| missing("socket"))?,
            workdir: workdir.ok_or_else(|| missing("workdir"))?,
            command: command.ok_or_else(|| missing("command"))?,
            runtime_bin,
            hb_dir: hb_dir.ok_or_else(|| missing("hb_dir"))?,
            hb_interval: hb_interval.ok_or_else(|| missing("hb_interval"))?,
            // Optional: files written before the launcher had it take its default.
            idle_after: match idle_after {
                Some(d) => d,
                None => validate::idle_after(validate::DEFAULT_IDLE_AFTER)?,
            },
            restart,
            env,
            hook: match (on_event, hook_timeout) {
                (Some(command), Some(timeout)) => Some((command, timeout)),
                (Some(_), None) => return Err(missing("hook_timeout")),
                (None, _) => None,
            },
            labels,
            worktree: worktree.filter(|w| !w.path.as_os_str().is_empty()),
            // A file from before transcripts: logged from its next start on, the default.
            log: match (log_off, log_dir, log_size, log_keep) {
                (true, ..) => None,
                (false, Some(dir), Some(size), Some(keep)) => Some((dir, size, keep)),
                _ => mosaic_core::transcript::default_base().map(|base| {
                    let size = validate::size(mosaic_core::transcript::DEFAULT_MAX_SIZE);
                    (base, size.unwrap_or(10 << 20), 5)
                }),
            },
        })
    }
}

/// `KEY=VALUE` as the launcher's `--env` and `--label` take it.
fn pair(key: &str, value: &std::ffi::OsStr) -> OsString {
    let mut out = OsString::from(key);
    out.push("=");
    out.push(value);
    out
}

/// A label's name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn label_key(key: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if !key.is_empty() && key.len() <= 64 && key.bytes().all(ok) {
        Ok(())
    } else {
        Err(format!(
            "invalid label name {key:?}: 1 to 64 of A-Z a-z 0-9 _ . -"
        ))
    }
}

fn escape(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
}

fn unescape(value: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] != b'\\' {
            out.push(value[i]);
            i += 1;
            continue;
        }
        let hex = value
            .get(i + 1..i + 4)
            .filter(|h| h[0] == b'x')
            .and_then(|h| std::str::from_utf8(&h[1..]).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("a bad escape")?;
        out.push(hex);
        i += 4;
    }
    Ok(out)
}

/// Replaces `dir/name` with `bytes`: a temp file created `O_EXCL | O_NOFOLLOW` beside it (a
/// planted name is never written through), then a rename (a reader sees the old file or the
/// new one, never a mix; a symlink at `name` is replaced, not followed).
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Takes the sidecars' lock of `dir/AGENT.hb` (`mosaic_core::lock`), as a sidecar would.
pub fn lock_agent(dir: &Path, agent: &str) -> Result<mosaic_core::lock::Lock, String> {
    use std::os::fd::AsFd;
    let handle =
        std::fs::File::open(dir).map_err(|e| mosaic_core::dirs::cannot("open", dir, &e))?;
    let record = mosaic_core::layout::record_name(agent);
    let name = std::ffi::CString::new(record.as_str()).map_err(|e| e.to_string())?;
    mosaic_core::lock::Lock::acquire(handle.as_fd(), &name).map_err(|e| match e {
        mosaic_core::lock::LockError::Held(pid) => format!(
            "{}: kept by a sidecar{}",
            dir.join(&record).display(),
            pid.map_or(String::new(), |p| format!(" (pid {p})"))
        ),
        mosaic_core::lock::LockError::Io(e) => format!(
            "cannot lock {}: {}",
            dir.join(&record).display(),
            mosaic_core::why(&e)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_comes_back_byte_for_byte() {
        let config = LaunchConfig {
            agent: "a-1".into(),
            socket: "s".into(),
            workdir: PathBuf::from(OsString::from_vec(b"/w/\xff\n\\x41 =#".to_vec())),
            command: OsString::from_vec(b"sh -c 'echo \"$HOME\"; sleep 1'\t\x01".to_vec()),
            runtime_bin: Some("/opt/bin".into()),
            hb_dir: "/run/hb".into(),
            hb_interval: Duration::from_millis(500),
            idle_after: Duration::from_secs(60),
            restart: vec![
                ("restart".into(), "on-failure".into()),
                ("restart-delay".into(), "0.5".into()),
            ],
            env: vec![("A_1".into(), OsString::from_vec(b"x y\n'\xfe".to_vec()))],
            hook: Some(("echo \"$MOSAIC_EVENT\"\n".into(), Duration::from_secs(5))),
            labels: vec![("team".into(), "search = é".into())],
            worktree: Some(WorktreeConfig {
                path: "/w/.git/mosaic-worktrees/a-1".into(),
                branch: "mosaic/a-1".into(),
                base: Some("main".into()),
                setup: None,
                teardown: Some(OsString::from_vec(b"rm -rf 'x y'\n\xff".to_vec())),
            }),
            log: Some(("/s/\n".into(), 4096, 0)),
        };
        let bytes = config.render();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 21);
        let off = LaunchConfig {
            log: None,
            ..config.clone()
        };
        assert_eq!(LaunchConfig::parse(&off.render()), Ok(off));
        let cli = config.to_cli(false);
        assert_eq!(cli.restart.as_deref(), Some("on-failure".as_ref()));
        assert_eq!(cli.limits.delay.as_deref(), Some("0.5".as_ref()));
        assert_eq!(cli.limits.guard, None, "a default is not stored");
        assert_eq!(cli.hook_timeout, "5");
        assert_eq!(LaunchConfig::parse(&bytes), Ok(config));
    }

    #[test]
    fn a_broken_file_is_refused() {
        assert!(LaunchConfig::parse(b"agent=a\n")
            .unwrap_err()
            .contains("socket"));
        assert!(LaunchConfig::parse(b"agent=\\xZZ\n").is_err());
        assert!(LaunchConfig::parse(b"agent\n").is_err());
    }
}
