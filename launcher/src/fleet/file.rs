/*!
The fleet file, `mosaic.toml`: read with serde and the `toml` crate, then resolved agent by
agent into the launcher's own [`Plan`] and [`LaunchConfig`], so a file and `mosaic-launcher`
flags mean the same thing and are checked by the same code.

```toml
[fleet]                      # where the fleet lives; --socket / --hb-dir and their variables win
socket = "work"
hb_dir = "/run/user/1000/mosaic/work"

[defaults]                   # any agent key, for every agent that does not set it
runtime = "claude"
hb_interval = 30

[agents.builder]
workdir = "src/app"          # relative paths are relative to this file's directory
command = "make watch"
env = { RUST_LOG = "info" }  # the agent's own environment (its shell, not tmux's)
restart = "on-failure"
labels = { team = "build" }
worktree = true              # its own git worktree, branch mosaic/builder (see crate::worktree)
setup = "npm ci"             # run once in a new worktree; also base, teardown
```

Invariants: a file is refused whole (every agent resolved) before anything is started or
written; a syntax error or unknown key is `FILE:LINE:COL: why`, a bad agent `FILE:LINE:COL:
agent NAME: why`. Relative paths resolve against the file's own (canonical) directory, never
the caller's, so the same file resolves the same from anywhere. Nothing of the caller's
`MOSAIC_AGENT_*` variables reaches an agent: only the file says what an agent is.
*/

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use mosaic_core::supervise::LimitArgs;
use mosaic_core::validate;

use crate::cli::Cli;
use crate::config::LaunchConfig;
use crate::launch::{self, Plan};

/// The largest fleet file we read (a thousand agents take about 100 KiB).
const READ_LIMIT: u64 = 16 * 1024 * 1024;

/// The file's name when `-f` is not given.
pub const DEFAULT_FILE: &str = "mosaic.toml";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    fleet: RawFleet,
    #[serde(default)]
    defaults: Keys,
    #[serde(default)]
    agents: BTreeMap<String, Spanned<Keys>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    socket: Option<String>,
    hb_dir: Option<String>,
    log_dir: Option<String>,
}

/// An agent's keys, as `[defaults]` and `[agents.NAME]` take them: the launcher's flags,
/// `-` spelt `_`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Keys {
    command: Option<String>,
    runtime: Option<String>,
    workdir: Option<String>,
    runtime_bin: Option<String>,
    env: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    restart: Option<String>,
    restart_delay: Option<Number>,
    restart_max_delay: Option<Number>,
    restart_stable: Option<Number>,
    restart_burst: Option<Number>,
    restart_window: Option<Number>,
    restart_guard: Option<Number>,
    hb_interval: Option<Number>,
    idle_after: Option<Number>,
    settle: Option<Number>,
    on_event: Option<String>,
    hook_timeout: Option<Number>,
    worktree: Option<bool>,
    base: Option<String>,
    setup: Option<String>,
    teardown: Option<String>,
    log: Option<bool>,
    log_max_size: Option<Number>,
    log_keep: Option<Number>,
}

impl Keys {
    /// `self` over `defaults`, key by key; `env` and `labels` merge by name (the agent's win).
    fn over(mut self, defaults: &Keys) -> Keys {
        macro_rules! inherit {
            ($($key:ident),*) => {$(
                if self.$key.is_none() {
                    self.$key = defaults.$key.clone();
                }
            )*};
        }
        inherit!(
            command,
            runtime,
            workdir,
            runtime_bin,
            restart,
            restart_delay,
            restart_max_delay,
            restart_stable,
            restart_burst,
            restart_window,
            restart_guard,
            hb_interval,
            idle_after,
            settle,
            on_event,
            hook_timeout,
            worktree,
            base,
            setup,
            teardown,
            log,
            log_max_size,
            log_keep
        );
        for (mine, theirs) in [
            (&mut self.env, &defaults.env),
            (&mut self.labels, &defaults.labels),
        ] {
            if let Some(theirs) = theirs {
                let merged = mine.get_or_insert_with(BTreeMap::new);
                for (k, v) in theirs {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        self
    }

    /// The restart limits as the launcher's flags take them.
    fn limits(&self) -> LimitArgs {
        let text = |n: &Option<Number>| n.as_ref().map(|n| OsString::from(&n.0));
        LimitArgs {
            delay: text(&self.restart_delay),
            max_delay: text(&self.restart_max_delay),
            stable: text(&self.restart_stable),
            burst: text(&self.restart_burst),
            window: text(&self.restart_window),
            guard: text(&self.restart_guard),
        }
    }
}

/// A number of seconds (or a count): a TOML integer, float, or a string the launcher parses.
/// Kept as the text the launcher's flag would get, so its validation is the one that applies.
#[derive(Clone, Debug)]
struct Number(String);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                Ok(Number(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// What the caller says on the command line, over the file's `[fleet]`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub socket: Option<OsString>,
    pub hb_dir: Option<OsString>,
    pub timeout: Option<Duration>,
    /// `MOSAIC_HB_BIN`: the sidecar binary, as for the launcher.
    pub hb_bin: Option<OsString>,
}

/// One agent of the file, resolved and checked.
pub struct Agent {
    pub name: String,
    pub plan: Plan,
    /// What a launch of `plan` stores, and what a running agent's stored file is compared with.
    pub config: LaunchConfig,
}

/// A fleet file, resolved.
pub struct FleetFile {
    pub path: PathBuf,
    pub socket: String,
    pub hb_dir: PathBuf,
    /// In name order.
    pub agents: Vec<Agent>,
}

/// Why a file was refused: always bad input (exit 2).
#[derive(Debug)]
pub struct Refused(pub String);

/// Reads and resolves `path`; nothing is started or written.
pub fn load(path: &Path, over: &Overrides) -> Result<FleetFile, Refused> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        Refused(format!(
            "cannot read fleet file {}: {}",
            path.display(),
            mosaic_core::why(&e)
        ))
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(READ_LIMIT).read_to_string(&mut text))
        .map_err(cannot)?;
    // Relative paths in the file are the file's: its directory, symlinks resolved.
    let dir = std::fs::canonicalize(path)
        .map_err(cannot)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    parse(path, &text, &dir, over)
}

/// [`load`] of text already read; `dir` is the file's directory.
pub fn parse(path: &Path, text: &str, dir: &Path, over: &Overrides) -> Result<FleetFile, Refused> {
    let at = |span: Option<std::ops::Range<usize>>| match span {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{}:{line}:{col}", path.display())
        }
        None => path.display().to_string(),
    };
    let raw: Raw = toml::from_str(text)
        .map_err(|e| Refused(format!("{}: {}", at(e.span()), one_line(e.message()))))?;
    let socket = match (&over.socket, &raw.fleet.socket) {
        (Some(s), _) if !s.is_empty() => s
            .to_str()
            .ok_or_else(|| Refused(format!("invalid tmux socket name {s:?}: not UTF-8")))?
            .to_string(),
        (_, Some(s)) => s.clone(),
        _ => validate::DEFAULT_SOCKET.to_string(),
    };
    let socket = validate::socket(&socket)
        .map_err(|why| Refused(format!("{}: {why}", path.display())))?
        .to_string();
    let hb_dir = match (&over.hb_dir, &raw.fleet.hb_dir) {
        (Some(d), _) if !d.is_empty() => std::path::absolute(d).map_err(|e| {
            Refused(format!(
                "invalid heartbeat dir {}: {}",
                Path::new(d).display(),
                mosaic_core::why(&e)
            ))
        })?,
        (_, Some(d)) if !d.is_empty() => dir.join(d),
        _ => mosaic_core::dirs::default_dir(),
    };
    let log_dir = raw
        .fleet
        .log_dir
        .as_ref()
        .filter(|d| !d.is_empty())
        .map(|d| dir.join(d));
    let mut agents = Vec::with_capacity(raw.agents.len());
    for (name, keys) in raw.agents {
        let where_ = at(Some(keys.span()));
        let bad = |why: String| Refused(format!("{where_}: agent {name}: {why}"));
        validate::agent(&name).map_err(&bad)?;
        let keys = keys.into_inner().over(&raw.defaults);
        let mut cli = to_cli(&name, &keys, &socket, &hb_dir, dir, over);
        cli.log_dir = log_dir.clone().map(Into::into);
        let plan = launch::plan(cli).map_err(|f| bad(f.message))?;
        let config = LaunchConfig::of(&plan).expect("a fleet agent always has a heartbeat");
        agents.push(Agent { name, plan, config });
    }
    Ok(FleetFile {
        path: path.to_path_buf(),
        socket,
        hb_dir,
        agents,
    })
}

/// The launcher's arguments for one agent: the file's keys only (never the caller's
/// `MOSAIC_AGENT_*`), relative paths made the file's.
fn to_cli(
    name: &str,
    keys: &Keys,
    socket: &str,
    hb_dir: &Path,
    dir: &Path,
    over: &Overrides,
) -> Cli {
    let path = |p: &Option<String>| p.as_ref().map(|p| dir.join(p).into_os_string());
    let text = |n: &Option<Number>| n.as_ref().map(|n| OsString::from(&n.0));
    let pairs = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            .map(|(k, v)| OsString::from(format!("{k}={v}")))
            .collect()
    };
    Cli {
        agent: name.into(),
        socket: socket.into(),
        // The agent's workdir defaults to the file's directory, not the caller's.
        workdir: Some(path(&keys.workdir).unwrap_or_else(|| dir.as_os_str().to_owned())),
        runtime: keys.runtime.as_ref().map(OsString::from),
        command: keys.command.as_ref().map(OsString::from),
        runtime_bin: path(&keys.runtime_bin),
        hb_dir: Some(hb_dir.as_os_str().to_owned()),
        hb_interval: text(&keys.hb_interval).unwrap_or_else(|| validate::DEFAULT_INTERVAL.into()),
        idle_after: text(&keys.idle_after).unwrap_or_else(|| validate::DEFAULT_IDLE_AFTER.into()),
        no_heartbeat: false,
        json: false,
        settle: text(&keys.settle),
        tmux_timeout: over
            .timeout
            .map(|t| OsString::from(t.as_secs_f64().to_string())),
        restart: keys.restart.as_ref().map(OsString::from),
        limits: keys.limits(),
        hb_bin: over.hb_bin.clone(),
        env: pairs(&keys.env),
        on_event: keys.on_event.as_ref().map(OsString::from),
        hook_timeout: text(&keys.hook_timeout)
            .unwrap_or_else(|| validate::DEFAULT_HOOK_TIMEOUT.into()),
        labels: pairs(&keys.labels),
        worktree: keys.worktree == Some(true),
        base: keys.base.as_ref().map(OsString::from),
        setup: keys.setup.as_ref().map(OsString::from),
        teardown: keys.teardown.as_ref().map(OsString::from),
        no_log: keys.log == Some(false),
        log_dir: None,
        log_max_size: text(&keys.log_max_size),
        log_keep: text(&keys.log_keep),
        log_bin: None,
    }
}

/// The key of the launch configuration that differs, in the file's words; `None` when equal.
/// The agent's name, socket and heartbeat dir are where it is, not what it is: not compared.
pub fn changed(stored: &LaunchConfig, wanted: &LaunchConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if stored.command != wanted.command {
        keys.push("command");
    }
    if stored.workdir != wanted.workdir {
        keys.push("workdir");
    }
    if stored.runtime_bin != wanted.runtime_bin {
        keys.push("runtime_bin");
    }
    if stored.log != wanted.log {
        keys.push("log");
    }
    if stored.env != wanted.env {
        keys.push("env");
    }
    if stored.hb_interval != wanted.hb_interval {
        keys.push("hb_interval");
    }
    if stored.idle_after != wanted.idle_after {
        keys.push("idle_after");
    }
    if stored.hook.as_ref().map(|h| &h.0) != wanted.hook.as_ref().map(|h| &h.0) {
        keys.push("on_event");
    }
    if stored.hook_timeout() != wanted.hook_timeout() {
        keys.push("hook_timeout");
    }
    let setting = |c: &LaunchConfig, flag: &str| {
        c.restart
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.clone())
    };
    // The stored flag names (`supervise::settings`), and the file's.
    for (flag, key) in [
        ("restart", "restart"),
        ("restart-delay", "restart_delay"),
        ("restart-max-delay", "restart_max_delay"),
        ("restart-stable", "restart_stable"),
        ("restart-burst", "restart_burst"),
        ("restart-window", "restart_window"),
        ("restart-guard", "restart_guard"),
    ] {
        if setting(stored, flag) != setting(wanted, flag) {
            keys.push(key);
        }
    }
    if stored.labels != wanted.labels {
        keys.push("labels");
    }
    let (old, new) = (stored.worktree.as_ref(), wanted.worktree.as_ref());
    if old.map(|w| &w.path) != new.map(|w| &w.path) {
        keys.push("worktree");
    }
    if old.map(|w| &w.base) != new.map(|w| &w.base) {
        keys.push("base");
    }
    if old.map(|w| &w.setup) != new.map(|w| &w.setup) {
        keys.push("setup");
    }
    if old.map(|w| &w.teardown) != new.map(|w| &w.teardown) {
        keys.push("teardown");
    }
    keys
}

/// Whether only keys that do not change a running agent differ (labels; a worktree's base,
/// setup and teardown, used only when it is made or removed): stored anew, the agent left
/// running.
pub fn only_stored(keys: &[&str]) -> bool {
    !keys.is_empty()
        && keys
            .iter()
            .all(|k| matches!(*k, "labels" | "base" | "setup" | "teardown"))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

fn one_line(message: &str) -> String {
    message.trim().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<FleetFile, Refused> {
        let dir = std::env::temp_dir();
        parse(Path::new("m.toml"), text, &dir, &Overrides::default())
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = parse_text("[agents.a]\ncommand = \"x\"\nhb_interval = = 3\n")
            .err()
            .unwrap();
        assert!(err.0.starts_with("m.toml:3:"), "{err:?}");
        assert!(!err.0.contains('\n'), "{err:?}");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = parse_text("[agents.a]\ncommand = \"x\"\ncomand = \"y\"\n")
            .err()
            .unwrap();
        assert!(err.0.contains("comand"), "{err:?}");
        assert!(err.0.starts_with("m.toml:"), "{err:?}");
        let err = parse_text("[fleet]\nsockets = \"x\"\n").err().unwrap();
        assert!(err.0.contains("sockets"), "{err:?}");
    }

    #[test]
    fn a_bad_agent_is_named() {
        let err = parse_text("[agents.\"a.b\"]\ncommand = \"x\"\n")
            .err()
            .unwrap();
        assert!(err.0.contains("agent a.b"), "{err:?}");
        let err = parse_text("[agents.a]\ncommand = \"x\"\nhb_interval = -1\n")
            .err()
            .unwrap();
        assert!(err.0.contains("agent a:"), "{err:?}");
        assert!(err.0.starts_with("m.toml:1:"), "{err:?}");
        let err = parse_text("[agents.a]\n").err().unwrap();
        assert!(err.0.contains("no agent command"), "{err:?}");
    }

    #[test]
    fn defaults_fill_in_and_maps_merge() {
        let file = parse_text(
            "[defaults]\ncommand = \"sleep 1\"\nhb_interval = 0.5\nenv = { A = \"1\", B = \"2\" }\n\
             [agents.x]\nenv = { B = \"3\" }\n[agents.y]\ncommand = \"true\"\nhb_interval = 2\n",
        )
        .ok()
        .unwrap();
        let [x, y] = &file.agents[..] else {
            panic!("two agents")
        };
        assert_eq!(x.config.command, "sleep 1");
        assert_eq!(x.config.hb_interval, Duration::from_millis(500));
        assert_eq!(
            x.config.env,
            [("A".to_string(), "1".into()), ("B".to_string(), "3".into())]
        );
        assert_eq!(y.config.hb_interval, Duration::from_secs(2));
        assert_eq!(changed(&x.config, &x.config), Vec::<&str>::new());
        assert_eq!(
            changed(&x.config, &y.config),
            ["command", "env", "hb_interval"]
        );
    }

    #[test]
    fn only_what_a_running_agent_does_not_use_is_stored_without_a_restart() {
        assert!(only_stored(&["labels"]));
        assert!(only_stored(&["setup", "teardown", "base"]));
        assert!(!only_stored(&["setup", "worktree"]));
        assert!(!only_stored(&[]));
    }

    #[test]
    fn relative_paths_are_the_files() {
        let dir = std::env::temp_dir();
        let file = parse(
            Path::new("m.toml"),
            "[fleet]\nhb_dir = \"hb\"\n[agents.a]\ncommand = \"x\"\n",
            &dir,
            &Overrides::default(),
        )
        .ok()
        .unwrap();
        assert_eq!(file.hb_dir, dir.join("hb"));
        assert_eq!(file.agents[0].config.workdir, dir);
    }

    #[test]
    fn transcript_keys_reach_the_launch() {
        let dir = std::env::temp_dir();
        let file = parse(
            Path::new("m.toml"),
            "[fleet]\nsocket = \"s\"\nlog_dir = \"logs\"\n[defaults]\ncommand = \"x\"\nlog_keep = 2\n\
             [agents.a]\nlog_max_size = \"1M\"\n[agents.b]\nlog = false\n",
            &dir,
            &Overrides::default(),
        )
        .ok()
        .unwrap();
        let [a, b] = &file.agents[..] else {
            panic!("two agents")
        };
        assert_eq!(a.config.log, Some((dir.join("logs"), 1 << 20, 2)));
        assert_eq!(a.plan.log.as_ref().unwrap().dir, dir.join("logs/s"));
        assert_eq!(b.config.log, None);
        assert_eq!(changed(&a.config, &b.config), ["log"]);
    }
}
