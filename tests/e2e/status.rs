/*!
`mosaic-hb status` end to end: a fleet of real sidecars in every state (alive, target killed,
sidecar killed -9, sidecar stopped) beside hostile files (garbage, empty, binary, huge, a
planted symlink, a FIFO, a directory), read back as a table, as JSON and as Prometheus text,
each parsed strictly here: the JSON by serde_json, the Prometheus text by the support's parser
written against the text exposition format 0.0.4.

Every wait polls with a deadline; nothing asserts how long anything took.
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

/// Generous: the machine running the suite may be busy; a deadline only bounds a failure.
const PATIENCE: Duration = Duration::from_secs(20);

/// The keys of each `status --json` object, in order, as README.md lists them.
const STATUS_KEYS: [&str; 14] = [
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
// Tests

// The table: aligned columns, reasons for invalid rows, the summary in its fixed order.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn table_shows_every_state() {
    e2e!();
    let sb = Sandbox::new();
    let fleet = fleet(&sb);
    let dir = fleet.dir.to_str().unwrap();
    let out = poll_until(&sb, [dir], table_states, &fleet.expected);

    let lines: Vec<&str> = out.lines().collect();
    let header = lines[0];
    // EXIT shows when a record says how its agent ended: the killed one's may (a sidecar reads
    // it from the zombie when it is quicker than the reaper).
    let columns: Vec<&str> = header.split_whitespace().filter(|&c| c != "EXIT").collect();
    assert_eq!(
        columns,
        ["AGENT", "STATE", "PID", "AGE", "INTERVAL", "REASON"],
        "{out}"
    );
    // Every column starts where its heading does (the reason, last, may hold blanks).
    let starts: Vec<usize> = words(header).iter().map(|&(at, _)| at).collect();
    for line in &lines[1..lines.len() - 1] {
        let cells: Vec<usize> = words(line).iter().map(|&(at, _)| at).collect();
        let n = cells.len().min(starts.len());
        assert_eq!(cells[..n], starts[..n], "misaligned: {line:?}\n{out}");
    }
    let line_of = |agent: &str| -> &str {
        lines[1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(agent))
            .unwrap_or_else(|| panic!("no row for {agent}: {out}"))
    };
    let row = |agent: &str| -> Vec<&str> { line_of(agent).split_whitespace().collect() };
    let alive = row("alive");
    assert_eq!(alive[2], fleet.alive_target.to_string(), "{out}");
    assert_eq!(alive[4], "1s", "{out}");
    assert!(is_age(alive[3]), "{out}");
    assert_eq!(row("hung")[4], "0.2s", "{out}");
    for (agent, reason) in REASONS {
        let line = line_of(agent);
        assert!(line.contains(reason), "{agent}: {line}");
        assert_eq!(&row(agent)[2..5], ["-", "-", "-"], "{out}");
    }
    assert_eq!(
        *lines.last().unwrap(),
        "12 agents: 1 ok, 1 stale, 1 exited, 1 stopped, 8 invalid"
    );
    // Followed, the link would have read as the live agent's healthy record.
    assert!(line_of("link").contains("symlink, not followed"), "{out}");
    assert!(
        read_record(&fleet.dir.join("link.hb")).is_some(),
        "it does point at one"
    );
}

// JSON: an array of objects with the documented fields, each of its type.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn json_is_strict_and_typed() {
    e2e!();
    let sb = Sandbox::new();
    let fleet = fleet(&sb);
    let dir = fleet.dir.to_str().unwrap();
    let out = poll_until(&sb, ["--json", dir], json_states, &fleet.expected);
    // --format json is the same report.
    let same = status(&sb, ["--format", "json", dir], 0);
    assert_eq!(json_states(&same.stdout), json_states(&out));

    let doc = json(&out);
    let items = doc
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {out}"));
    let reasons: HashMap<&str, &str> = REASONS.into_iter().collect();
    for item in items {
        let agent = item["agent"]
            .as_str()
            .expect("agent is a string")
            .to_string();
        let state = item["state"].as_str().expect("state is a string");
        // Every documented key, in the documented order (README), and no other.
        let keys: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, STATUS_KEYS, "{agent}: {out}");
        if state == "invalid" {
            for key in ["pid", "ts", "age_s", "interval"] {
                assert!(item[key].is_null(), "{agent}.{key}: {out}");
            }
            let reason = item["reason"].as_str().expect("reason is a string");
            assert!(
                reason.contains(reasons[agent.as_str()]),
                "{agent}: {reason}"
            );
            continue;
        }
        if state == "stale" {
            // Killed -9: its lock is free, so it is stale at once, whatever its age.
            let reason = item["reason"].as_str().expect("a stale row says why");
            assert_eq!(reason, "sidecar gone (its lock is free)", "{agent}: {out}");
        } else {
            assert!(item["reason"].is_null(), "{agent}: {out}");
        }
        let pid = item["pid"].as_i64().expect("pid is an integer");
        assert!(pid >= 1, "{agent}: pid {pid}");
        let ts = item["ts"].as_str().expect("ts is a string");
        assert!(is_rfc3339_millis_utc(ts), "{agent}: ts {ts:?}");
        let age = item["age_s"].as_f64().expect("age_s is a number");
        assert!(age >= 0.0, "{agent}: age_s {age}");
        let interval = item["interval"].as_f64().expect("interval is a number");
        match agent.as_str() {
            "alive" => {
                assert_eq!(pid, i64::from(fleet.alive_target));
                assert_eq!(interval, 1.0);
                assert!(age <= 3.0, "ok means within 3 intervals: {age}");
            }
            _ => assert_eq!(interval, 0.2),
        }
    }
}

// Prometheus: valid text format 0.0.4; every family with HELP and TYPE; a state set with every
// state; timestamps, not ages; the `fleet` label on every series.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn prometheus_is_valid_exposition_text() {
    e2e!();
    let sb = Sandbox::new();
    let fleet = fleet(&sb);
    let dir = fleet.dir.to_str().unwrap();
    let args = ["--format", "prometheus", dir];
    let out = poll_until(&sb, args, prometheus_states, &fleet.expected);
    let families = parse_prometheus(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, FAMILIES.map(|(name, _)| name));
    for (family, (_, kind)) in families.iter().zip(FAMILIES) {
        assert_eq!(family.kind.as_deref(), Some(kind), "{}", family.name);
        assert!(family.help.as_deref().is_some_and(|h| !h.is_empty()));
        for sample in &family.samples {
            assert!(
                sample.timestamp.is_none(),
                "the textfile collector refuses timestamps"
            );
            assert_eq!(sample.label("fleet"), dir, "{}: {out}", family.name);
        }
    }
    assert_eq!(series(fam(&families, "mosaic_fleet_up"), "fleet")[dir], 1.0);
    let up = series(fam(&families, "mosaic_agent_up"), "agent");
    let failing = series(fam(&families, "mosaic_agent_failing"), "agent");
    let ts = series(
        fam(&families, "mosaic_agent_heartbeat_timestamp_seconds"),
        "agent",
    );
    let interval = series(
        fam(&families, "mosaic_agent_heartbeat_interval_seconds"),
        "agent",
    );
    let state_set = &fam(&families, "mosaic_agent_state").samples;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (agent, state) in &fleet.expected {
        let want = if *state == "ok" { 1.0 } else { 0.0 };
        assert_eq!(up.get(*agent), Some(&want), "up {agent}: {out}");
        let want = if matches!(*state, "ok" | "stopped") {
            0.0
        } else {
            1.0
        };
        assert_eq!(failing.get(*agent), Some(&want), "failing {agent}: {out}");
        // A timestamp and an interval exactly when the file parsed.
        assert_eq!(
            ts.contains_key(*agent),
            *state != "invalid",
            "{agent}: {out}"
        );
        assert_eq!(interval.contains_key(*agent), *state != "invalid");
        // Every state, once, 1 only for the agent's own.
        let mine: Vec<(&str, f64)> = state_set
            .iter()
            .filter(|s| s.label("agent") == *agent)
            .map(|s| (s.label("state"), s.value))
            .collect();
        let all = [
            "ok",
            "stale",
            "restarting",
            "exited",
            "failed",
            "stopped",
            "invalid",
        ];
        assert_eq!(
            mine,
            all.map(|s| (s, if s == *state { 1.0 } else { 0.0 })),
            "{agent}: {out}"
        );
    }
    assert_eq!(up.len(), fleet.expected.len());
    assert!((now - 3.0..=now).contains(&ts["alive"]), "{now}: {out}");
    assert_eq!(interval["alive"], 1.0);
    assert_eq!(interval["hung"], 0.2);

    // --fleet names the fleet instead of its directory.
    let run = status(&sb, ["--format", "prometheus", "--fleet", "blue", dir], 0);
    let families = parse_prometheus(&run.stdout).unwrap();
    assert!(families
        .iter()
        .flat_map(|f| &f.samples)
        .all(|s| s.label("fleet") == "blue"));
}

/// The families, in order, with their types.
const FAMILIES: [(&str, &str); 9] = [
    ("mosaic_fleet_up", "gauge"),
    ("mosaic_agent_up", "gauge"),
    ("mosaic_agent_failing", "gauge"),
    ("mosaic_agent_state", "gauge"),
    ("mosaic_agent_heartbeat_timestamp_seconds", "gauge"),
    ("mosaic_agent_heartbeat_interval_seconds", "gauge"),
    ("mosaic_agent_restarts_total", "counter"),
    ("mosaic_agent_activity", "gauge"),
    ("mosaic_agent_activity_since_timestamp_seconds", "gauge"),
];

/// The family called `name`.
#[track_caller]
fn fam<'a>(families: &'a [Family], name: &str) -> &'a Family {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

// --check: 0 only when every agent is ok (an empty directory too); the report still prints.
// A missing directory, or a file given as one, is bad input: 2, one line on stderr.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn check_and_exit_codes() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.hb_dir();
    std::fs::create_dir_all(&hb_dir).unwrap();
    let dir = hb_dir.to_str().unwrap();

    let run = status(&sb, ["--check", dir], 0);
    assert_eq!(run.stdout, "0 agents\n");
    let run = status(&sb, ["--check", "--json", dir], 0);
    assert_eq!(json(&run.stdout), serde_json::json!([]));

    let target = sb.spawn_target();
    start_sidecar(&sb, &hb_dir, "solo", target, "1");
    let last = std::cell::RefCell::new(String::new());
    let run = wait_until(
        "--check to pass",
        PATIENCE,
        || {
            let run = finish(&sb, &mut status_cmd(&sb, ["--check", dir]));
            *last.borrow_mut() = format!("exit {}: {}{}", run.code, run.stdout, run.stderr);
            (run.code == 0).then_some(run)
        },
        || last.borrow().clone(),
    );
    assert_eq!(table_states(&run.stdout), [("solo".into(), "ok".into())]);
    assert_eq!(run.stdout.lines().last(), Some("1 agent: 1 ok"));

    sb.kill_target(target);
    wait_for_status(&hb_dir.join("solo.hb"), Status::Exited, PATIENCE);
    let run = status(&sb, ["--check", dir], 1);
    assert_eq!(
        table_states(&run.stdout),
        [("solo".into(), "exited".into())]
    );
    assert_eq!(run.stdout.lines().last(), Some("1 agent: 1 exited"));
    assert_eq!(run.stderr, "", "a failed check is not an error message");
    let run = status(&sb, ["--check", "--format", "prometheus", dir], 1);
    assert!(parse_prometheus(&run.stdout).is_ok(), "{}", run.stdout);
    // Without --check the same fleet is a report, and a report is success.
    status(&sb, [dir], 0);

    let missing = sb.path("no-such-dir");
    let run = status(&sb, [&missing], 2);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "mosaic-hb: cannot read heartbeat dir {}: no such file or directory\n",
            missing.display()
        )
    );
    let run = status(&sb, ["--check", missing.to_str().unwrap()], 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let file = hb_dir.join("solo.hb");
    let run = status(&sb, [&file], 2);
    assert_eq!(
        run.stderr,
        format!(
            "mosaic-hb: cannot read heartbeat dir {}: not a directory\n",
            file.display()
        )
    );

    for bad in [
        &["--json", "--format", "table"][..],
        &["--format", "xml"],
        &["--stale-after", "0"],
        &["--stale-after", "soon"],
    ] {
        let run = status(&sb, bad.iter().chain([&dir]), 2);
        assert!(
            run.stderr.starts_with("mosaic-hb: "),
            "{bad:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{bad:?}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
}

// --stale-after N widens or narrows the window, counted in each file's own interval.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stale_after_counts_intervals() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.hb_dir();
    std::fs::create_dir_all(&hb_dir).unwrap();
    let dir = hb_dir.to_str().unwrap();
    // Two records written a minute ago by sidecars long gone: one beat every 15 s (stale
    // after 45 s by default), one that does not say (30 s assumed: stale after 90 s).
    let minute_ago = rfc3339(SystemTime::now() - Duration::from_secs(60));
    let body = format!("ts={minute_ago}\npid=1\nstatus=ok\ninterval=15\n");
    std::fs::write(hb_dir.join("fifteen.hb"), body).unwrap();
    let body = format!("ts={minute_ago}\npid=1\nstatus=ok\n");
    std::fs::write(hb_dir.join("legacy.hb"), body).unwrap();
    let pair = |a: &str, b: &str| {
        vec![
            ("fifteen".to_string(), a.to_string()),
            ("legacy".to_string(), b.to_string()),
        ]
    };

    let run = status(&sb, ["--json", dir], 0);
    assert_eq!(json_states(&run.stdout), pair("stale", "ok"));
    let items = json(&run.stdout);
    assert_eq!(items[0]["interval"].as_f64(), Some(15.0));
    assert!(items[1]["interval"].is_null(), "legacy gives no interval");

    let run = status(&sb, ["--stale-after", "10", dir], 0);
    assert_eq!(table_states(&run.stdout), pair("ok", "ok"));
    let run = status(&sb, ["--stale-after", "2.5", dir], 0);
    assert_eq!(table_states(&run.stdout), pair("stale", "ok"));
    let run = status(&sb, ["--stale-after=1", dir], 0);
    assert_eq!(table_states(&run.stdout), pair("stale", "stale"));
    assert_eq!(run.stdout.lines().last(), Some("2 agents: 2 stale"));
}

/// The `reason` JSON gives for `agent`.
fn json_reason(out: &str, agent: &str) -> Option<String> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(out) else {
        return None;
    };
    let item = items.iter().find(|item| item["agent"] == agent)?;
    item["reason"].as_str().map(String::from)
}

// Staleness by lock (issue 16): a sidecar killed -9 at a one-day interval is stale at the next
// look, not in three days. A SIGSTOPped sidecar keeps its lock: it turns stale once its beats
// are late, and ok again when it resumes.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn stale_by_lock_at_once_and_by_late_beats() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.hb_dir();
    std::fs::create_dir_all(&hb_dir).unwrap();
    let dir = hb_dir.to_str().unwrap();
    let day = start_sidecar(&sb, &hb_dir, "day", sb.spawn_target(), "86400");
    let paused = start_sidecar(&sb, &hb_dir, "paused", sb.spawn_target(), "0.2");
    poll_until(
        &sb,
        ["--json", dir],
        json_states,
        &[("day", "ok"), ("paused", "ok")],
    );

    signal(day, libc::SIGKILL);
    signal(paused, libc::SIGSTOP);
    let out = poll_until(
        &sb,
        ["--json", dir],
        json_states,
        &[("day", "stale"), ("paused", "stale")],
    );
    assert_eq!(
        json_reason(&out, "day").as_deref(),
        Some("sidecar gone (its lock is free)"),
        "{out}"
    );
    let late = json_reason(&out, "paused").unwrap_or_default();
    assert!(
        late.starts_with("no beat for ") && late.ends_with("sidecar stopped or hung"),
        "{out}"
    );
    // Its record still says ok, and is only a moment old: the lock alone told.
    let rec = read_record(&hb_dir.join("day.hb")).unwrap();
    assert_eq!((rec.status, rec.interval), (Status::Ok, Some(86400.0)));
    status(&sb, ["--check", dir], 1);

    signal(paused, libc::SIGCONT);
    poll_until(
        &sb,
        ["--json", dir],
        json_states,
        &[("day", "stale"), ("paused", "ok")],
    );
}

// What no writer of ours could have written is invalid, with the reason (issue 16); without a
// lock file, a record whose hb_pid is gone is stale.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn records_out_of_range_are_invalid_and_a_dead_hb_pid_is_stale() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.hb_dir();
    std::fs::create_dir_all(&hb_dir).unwrap();
    let dir = hb_dir.to_str().unwrap();
    let now = rfc3339(SystemTime::now());
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let files = [
        (
            "forever",
            format!("ts={now}\npid=1\nstatus=ok\ninterval=1e308\n"),
        ),
        (
            "tiny",
            format!("ts={now}\npid=1\nstatus=ok\ninterval=0.001\n"),
        ),
        ("nohb", format!("ts={now}\npid=1\nstatus=ok\nhb_pid=0\n")),
        (
            "badname",
            format!("ts={now}\npid=1\nstatus=ok\nagent=../x\n"),
        ),
        (
            "orphan",
            format!("ts={now}\npid=1\nstatus=ok\nhb_pid={dead}\n"),
        ),
        (
            "plain",
            format!("ts={now}\npid=1\nstatus=ok\ninterval=86400\n"),
        ),
    ];
    for (name, body) in &files {
        std::fs::write(hb_dir.join(format!("{name}.hb")), body).unwrap();
    }
    let run = status(&sb, ["--json", dir], 0);
    let want = [
        ("badname", "invalid", "agent= invalid agent name"),
        (
            "forever",
            "invalid",
            "interval=1e308 is outside the writer's range",
        ),
        ("nohb", "invalid", "hb_pid=0 is not a process id"),
        ("orphan", "stale", "sidecar gone (hb_pid"),
        ("plain", "ok", ""),
        (
            "tiny",
            "invalid",
            "interval=0.001 is outside the writer's range",
        ),
    ];
    let got = json_states(&run.stdout);
    assert_eq!(
        got,
        want.map(|(a, s, _)| (a.to_string(), s.to_string())),
        "{}",
        run.stdout
    );
    for (agent, _, reason) in want {
        let got = json_reason(&run.stdout, agent).unwrap_or_default();
        assert!(got.starts_with(reason), "{agent}: {got}");
    }
}

// A deliberate stop is not a failure (issue 10): --check passes for a stopped agent and fails
// for an exited one; both helps list the exit codes, and status names the default directory.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn check_passes_a_stopped_agent_and_help_says_why() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.hb_dir();
    std::fs::create_dir_all(&hb_dir).unwrap();
    let dir = hb_dir.to_str().unwrap();
    let halted = start_sidecar(&sb, &hb_dir, "halted", sb.spawn_target(), "0.2");
    signal(halted, libc::SIGTERM);
    wait_for_status(&hb_dir.join("halted.hb"), Status::Stopped, PATIENCE);
    let run = status(&sb, ["--check", dir], 0);
    assert_eq!(run.stdout.lines().last(), Some("1 agent: 1 stopped"));

    let target = sb.spawn_target();
    start_sidecar(&sb, &hb_dir, "crashed", target, "0.2");
    sb.kill_target(target);
    wait_for_status(&hb_dir.join("crashed.hb"), Status::Exited, PATIENCE);
    let run = status(&sb, ["--check", dir], 1);
    assert_eq!(
        run.stdout.lines().last(),
        Some("2 agents: 1 exited, 1 stopped")
    );

    let help = expect_success(
        sb.hb()
            .args(["status", "--help"])
            .env("MOSAIC_HEARTBEAT_RUN_DIR", dir),
    );
    for want in [
        "Exit codes:",
        "  0  ",
        "  1  ",
        "  2  ",
        "MOSAIC_HEARTBEAT_RUN_DIR",
        "XDG_RUNTIME_DIR",
    ] {
        assert!(help.contains(want), "no {want:?} in: {help}");
    }
    assert!(
        help.contains(&format!("Here the default directory is {dir}.")),
        "{help}"
    );
    assert!(!help.contains("the launcher's default]"), "{help}");
    let help = expect_success(sb.hb().arg("--help"));
    for want in ["Exit codes:", "  0  ", "  1  ", "  2  "] {
        assert!(help.contains(want), "no {want:?} in: {help}");
    }
}

// With no DIR: $MOSAIC_HEARTBEAT_RUN_DIR, else the launcher's default under $XDG_RUNTIME_DIR.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn dir_defaults_like_the_launcher() {
    e2e!();
    let sb = Sandbox::new();
    let fresh = format!("ts={}\npid=1\nstatus=ok\n", rfc3339(SystemTime::now()));

    let dir = sb.path("from-env");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("env-agent.hb"), &fresh).unwrap();
    let mut cmd = status_cmd(&sb, ["--json"]);
    cmd.env("MOSAIC_HEARTBEAT_RUN_DIR", &dir);
    let run = finish(&sb, &mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        json_states(&run.stdout),
        [("env-agent".into(), "ok".into())]
    );

    let xdg = sb.path("xdg");
    let default = xdg.join("mosaic/heartbeat");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::write(default.join("xdg-agent.hb"), &fresh).unwrap();
    let mut cmd = status_cmd(&sb, ["--json"]);
    cmd.env("XDG_RUNTIME_DIR", &xdg);
    let run = finish(&sb, &mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        json_states(&run.stdout),
        [("xdg-agent".into(), "ok".into())]
    );

    // The default that does not exist yet is a missing directory, named in full.
    let mut cmd = status_cmd(&sb, ["--check"]);
    cmd.env("XDG_RUNTIME_DIR", sb.path("nowhere"));
    let run = finish(&sb, &mut cmd);
    assert_eq!(run.code, 2);
    let named = sb.path("nowhere/mosaic/heartbeat");
    assert!(
        run.stderr.contains(&named.display().to_string()),
        "{}",
        run.stderr
    );
}

// File names are bytes: quotes, backslashes, newlines, escape sequences and bytes that are
// not UTF-8 come out escaped in every format, and each agent stays one row.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_names_are_escaped_everywhere() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = format!(
        "ts={}\npid=1\nstatus=ok\ninterval=60\n",
        rfc3339(SystemTime::now())
    );
    let names: [&[u8]; 7] = [
        b"quote\"d",
        b"back\\slash",
        b"new\nline",
        b"caf\xe9",
        b"tab\there",
        b"esc\x1b[2J",
        "uni-\u{f1}-\u{2713}".as_bytes(),
    ];
    for name in names {
        let mut file = name.to_vec();
        file.extend_from_slice(b".hb");
        std::fs::write(dir.join(OsStr::from_bytes(&file)), &fresh).unwrap();
    }
    // The report sorts by the names' bytes.
    let mut sorted = names.to_vec();
    sorted.sort();
    let want: Vec<(String, String)> = sorted
        .iter()
        .map(|n| (String::from_utf8_lossy(n).into_owned(), "ok".to_string()))
        .collect();

    let run = status(&sb, ["--json", dir.to_str().unwrap()], 0);
    assert_eq!(json_states(&run.stdout), want, "{}", run.stdout);

    let run = status(&sb, ["--format", "prometheus", dir.to_str().unwrap()], 0);
    let families = parse_prometheus(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    assert_eq!(prometheus_states(&run.stdout), want, "{}", run.stdout);
    assert_eq!(
        series(fam(&families, "mosaic_agent_up"), "agent").len(),
        names.len()
    );

    let run = status(&sb, [&dir], 0);
    assert_eq!(
        run.stdout.lines().count(),
        names.len() + 2,
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "raw escape sequence: {:?}",
        run.stdout
    );
    assert!(run.stdout.contains("new\\nline"), "{}", run.stdout);
    assert!(run.stdout.contains("esc\\u{1b}[2J"), "{}", run.stdout);
    assert_eq!(run.stdout.lines().last(), Some("7 agents: 7 ok"));
}

// A thousand agents (and a thousand temp files beside them) in one report, in every format.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_thousand_agents() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = format!(
        "ts={}\npid=1\nstatus=ok\ninterval=60\n",
        rfc3339(SystemTime::now())
    );
    // Written in reverse, so a report that did not sort would show it.
    for i in (0..1000).rev() {
        std::fs::write(dir.join(format!("agent-{i:04}.hb")), &fresh).unwrap();
        std::fs::write(dir.join(format!(".agent-{i:04}.hb.{i}.tmp")), "1\n").unwrap();
    }
    let want: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("agent-{i:04}"), "ok".to_string()))
        .collect();

    let run = status(&sb, ["--check", "--json", dir.to_str().unwrap()], 0);
    assert_eq!(json_states(&run.stdout), want);
    let run = status(&sb, ["--format", "prometheus", dir.to_str().unwrap()], 0);
    let families = parse_prometheus(&run.stdout).unwrap_or_else(|e| panic!("{e}"));
    for family in &families {
        let per_agent = match family.name.as_str() {
            "mosaic_fleet_up" => 0,
            "mosaic_agent_state" => 7,
            // No record here says `activity=`: agents without a terminal.
            "mosaic_agent_restarts_total"
            | "mosaic_agent_activity"
            | "mosaic_agent_activity_since_timestamp_seconds" => 0,
            _ => 1,
        };
        let fleet = usize::from(family.name == "mosaic_fleet_up");
        assert_eq!(
            family.samples.len(),
            fleet + per_agent * 1000,
            "{}",
            family.name
        );
    }
    let run = status(&sb, [&dir], 0);
    assert_eq!(table_states(&run.stdout), want);
    assert_eq!(run.stdout.lines().last(), Some("1000 agents: 1000 ok"));
}

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
