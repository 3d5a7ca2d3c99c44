/*!
`mosaic-hb status` end to end: a fleet of real sidecars in every state (alive, target killed,
sidecar killed -9, sidecar stopped) beside hostile files (garbage, empty, binary, huge, a
planted symlink, a FIFO, a directory), read back as a table, as JSON and as Prometheus text,
each parsed strictly here: the JSON by serde_json, the Prometheus text by the support's parser
written against the text exposition format 0.0.4.

Every wait polls with a deadline; nothing asserts how long anything took. The tests, by topic:
`formats.rs` (each format strict and complete) and `states.rs` (the states and the exit
code); the fleet and the readers of the reports they share are here.
*/

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::e2e;
use crate::support::*;

mod formats;
mod states;

/// Generous: the machine running the suite may be busy; a deadline only bounds a failure.
const PATIENCE: Duration = Duration::from_secs(20);

/// The keys of each `status --json` object, in order, as README.md lists them.
const STATUS_KEYS: [&str; 16] = [
    "agent",
    "state",
    "pid",
    "ts",
    "age_s",
    "interval",
    "reason",
    "activity",
    "activity_since",
    "activity_s",
    "restarts",
    "exit_status",
    "exit_signal",
    "restart_at",
    "hook_failures",
    "hook_dropped",
];

// ---------------------------------------------------------------------------------------------
// Running `mosaic-hb status`

/// One finished `mosaic-hb status`.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `mosaic-hb status ARGS...`.
fn status_cmd<I, S>(sb: &Sandbox, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = sb.hb();
    cmd.arg("status").args(args);
    cmd
}

/// Runs `cmd` to the end, with a deadline: a report that blocks (on a planted FIFO, say) fails
/// the test instead of hanging it. Output goes to files, so no pipe can fill and stall it.
#[track_caller]
fn finish(sb: &Sandbox, cmd: &mut Command) -> Run {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let out_path = sb.path(&format!("status-{n}.out"));
    let err_path = sb.path(&format!("status-{n}.err"));
    let out = std::fs::File::create(&out_path).unwrap();
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = cmd
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {PATIENCE:?}; stdout so far: {:?}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(std::fs::read(&out_path).unwrap()).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    };
    assert!(
        status.code().is_some(),
        "{cmd:?} died by a signal: {status}; stderr: {}",
        run.stderr
    );
    run
}

/// Runs `mosaic-hb status ARGS...` and asserts its exit code.
#[track_caller]
fn status<I, S>(sb: &Sandbox, args: I, code: i32) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = status_cmd(sb, args);
    let run = finish(sb, &mut cmd);
    assert_eq!(
        run.code, code,
        "{cmd:?}: exit {}\nstdout: {}\nstderr: {}",
        run.code, run.stdout, run.stderr
    );
    run
}

/// Polls `mosaic-hb status ARGS...` until `states` (read from its stdout) equals `want`;
/// returns that stdout. Polling absorbs a sidecar that is briefly late on a busy machine.
#[track_caller]
fn poll_until<I, S>(
    sb: &Sandbox,
    args: I,
    states: fn(&str) -> Vec<(String, String)>,
    want: &[(&str, &str)],
) -> String
where
    I: IntoIterator<Item = S> + Clone,
    S: AsRef<OsStr>,
{
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect();
    let last = std::cell::RefCell::new(String::new());
    wait_until(
        &format!("the report to say {want:?}"),
        PATIENCE,
        || {
            let run = finish(sb, &mut status_cmd(sb, args.clone()));
            *last.borrow_mut() = format!("exit {}: {}{}", run.code, run.stdout, run.stderr);
            (states(&run.stdout) == want).then_some(run.stdout)
        },
        || last.borrow().clone(),
    )
}

// ---------------------------------------------------------------------------------------------
// A fleet

/// Starts a daemonized sidecar for `target` that writes `DIR/NAME.hb`; returns its pid once
/// its first beat is on disk (it is killed when the sandbox drops).
fn start_sidecar(sb: &Sandbox, dir: &Path, name: &str, target: i32, interval: &str) -> i32 {
    sb.start_sidecar(
        target,
        &dir.join(format!("{name}.hb")),
        interval,
        ["--agent", name],
    )
}

fn mkfifo(path: &Path) {
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    nix::unistd::mkfifo(path, mode).expect("mkfifo");
}

/// The fleet every report test reads, and what each agent's state must become.
struct Fleet {
    dir: PathBuf,
    alive_target: i32,
    expected: Vec<(&'static str, &'static str)>,
}

fn fleet(sb: &Sandbox) -> Fleet {
    let dir = sb.hb_dir();
    std::fs::create_dir_all(&dir).unwrap();

    // A one-second interval gives the live agent a three-second window on a busy machine;
    // the sidecar that dies beats every 0.2 s, so it turns stale after 0.6 s.
    let alive_target = sb.spawn_target();
    start_sidecar(sb, &dir, "alive", alive_target, "1");

    let gone_target = sb.spawn_target();
    start_sidecar(sb, &dir, "gone", gone_target, "0.2");
    sb.kill_target(gone_target);
    wait_for_status(&dir.join("gone.hb"), Status::Exited, PATIENCE);

    let halted_target = sb.spawn_target();
    let halted = start_sidecar(sb, &dir, "halted", halted_target, "0.2");
    signal(halted, libc::SIGTERM);
    wait_for_status(&dir.join("halted.hb"), Status::Stopped, PATIENCE);

    let hung_target = sb.spawn_target();
    let hung = start_sidecar(sb, &dir, "hung", hung_target, "0.2");
    signal(hung, libc::SIGKILL);

    std::fs::write(dir.join("empty.hb"), b"").unwrap();
    std::fs::write(dir.join("garbage.hb"), b"hello world\n").unwrap();
    std::fs::write(dir.join("binary.hb"), b"\x00\xff\xfe\x80").unwrap();
    std::fs::write(dir.join("nots.hb"), b"pid=1\nstatus=ok\n").unwrap();
    std::fs::write(dir.join("huge.hb"), "x=1\n".repeat(32 * 1024)).unwrap();
    // Followed, it would read as a healthy agent: the live one's record.
    std::os::unix::fs::symlink(dir.join("alive.hb"), dir.join("link.hb")).unwrap();
    // Opened for reading without O_NONBLOCK, it would block the report for ever.
    mkfifo(&dir.join("pipe.hb"));
    std::fs::create_dir(dir.join("subdir.hb")).unwrap();
    // Not agents: a stray temp file, and names that do not end in `.hb`.
    std::fs::write(dir.join(".ghost.hb.999.tmp"), b"garbage").unwrap();
    std::fs::write(dir.join("notes.txt"), b"garbage").unwrap();

    Fleet {
        dir,
        alive_target,
        expected: vec![
            ("alive", "ok"),
            ("binary", "invalid"),
            ("empty", "invalid"),
            ("garbage", "invalid"),
            ("gone", "exited"),
            ("halted", "stopped"),
            ("huge", "invalid"),
            ("hung", "stale"),
            ("link", "invalid"),
            ("nots", "invalid"),
            ("pipe", "invalid"),
            ("subdir", "invalid"),
        ],
    }
}

/// The reason each invalid file must give (a part of it).
const REASONS: [(&str, &str); 8] = [
    ("binary", "not UTF-8"),
    ("empty", "empty file"),
    ("garbage", "line without '='"),
    ("huge", "too large"),
    ("link", "not a regular file"),
    ("nots", "missing ts"),
    ("pipe", "not a regular file"),
    ("subdir", "not a regular file"),
];

// ---------------------------------------------------------------------------------------------
// The Prometheus families

/// The families, in order, with their types.
const FAMILIES: [(&str, &str); 11] = [
    ("mosaic_fleet_up", "gauge"),
    ("mosaic_agent_up", "gauge"),
    ("mosaic_agent_failing", "gauge"),
    ("mosaic_agent_state", "gauge"),
    ("mosaic_agent_heartbeat_timestamp_seconds", "gauge"),
    ("mosaic_agent_heartbeat_interval_seconds", "gauge"),
    ("mosaic_agent_restarts_total", "counter"),
    ("mosaic_agent_hook_failures_total", "counter"),
    ("mosaic_agent_hook_dropped_total", "counter"),
    ("mosaic_agent_activity", "gauge"),
    ("mosaic_agent_activity_since_timestamp_seconds", "gauge"),
];

// ---------------------------------------------------------------------------------------------
// Reading the reports

/// (agent, state) for each table row.
fn table_states(out: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() < 3 {
        return Vec::new();
    }
    lines[1..lines.len() - 1]
        .iter()
        .map(|line| {
            let mut cells = line.split_whitespace();
            let agent = cells.next().unwrap_or_default().to_string();
            (agent, cells.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// (agent, state) for each JSON object; empty when the text is not the expected JSON.
fn json_states(out: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(out) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let text = |key: &str| item[key].as_str().unwrap_or_default().to_string();
            (text("agent"), text("state"))
        })
        .collect()
}

/// (agent, state) for each `mosaic_agent_state` sample; empty when the text does not parse.
fn prometheus_states(out: &str) -> Vec<(String, String)> {
    let Ok(families) = parse_prometheus(out) else {
        return Vec::new();
    };
    let Some(family) = families.iter().find(|f| f.name == "mosaic_agent_state") else {
        return Vec::new();
    };
    family
        .samples
        .iter()
        .filter(|s| s.value == 1.0)
        .map(|s| (s.label("agent").to_string(), s.label("state").to_string()))
        .collect()
}

/// agent → value for a family whose samples have one label, `agent`.
fn series(family: &Family, key: &str) -> HashMap<String, f64> {
    let mut map = HashMap::new();
    for sample in &family.samples {
        let names: Vec<&str> = sample.labels.iter().map(|(n, _)| n.as_str()).collect();
        let want: &[&str] = if key == "fleet" {
            &["fleet"]
        } else {
            &["fleet", "agent"]
        };
        assert_eq!(names, want, "{}", family.name);
        let fresh = map.insert(sample.label(key).to_string(), sample.value);
        assert!(fresh.is_none(), "{}: a repeated series", family.name);
    }
    map
}

/// The blank-separated words of `line`, each with the byte offset where it starts.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        match (c == ' ', start) {
            (false, None) => start = Some(i),
            (true, Some(at)) => {
                out.push((at, &line[at..i]));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// `2s`, `4m`, `3h`, `2d`.
fn is_age(text: &str) -> bool {
    let digits = text.trim_end_matches(['s', 'm', 'h', 'd']);
    text.len() == digits.len() + 1
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_rfc3339_millis_utc(ts: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    ts.len() == shape.len()
        && ts.bytes().zip(shape.bytes()).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            s => c == s,
        })
}

/// `t` as RFC 3339 in UTC with milliseconds, as the sidecar writes it.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
