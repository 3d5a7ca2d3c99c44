/*!
Property tests for everything that reads bytes someone else controls: the validators
(`validate`), the heartbeat parser (`record::parse`), `/proc/PID/stat` (`proc::parse_stat`,
where the process picks its own name), heartbeat paths (`layout::split`) and the reports' JSON
layout (`json::lines`).

Each validator is checked against an oracle written here independently, in a different style
(chars instead of bytes, integers instead of floats where possible), so one shared mistake
does not pass as agreement. Cases default to 1024; `PROPTEST_CASES` overrides (`cargo xtask
fuzz` runs hundreds of thousands). Failures are not persisted: the shrunk input is printed.
*/

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::activity::Activity;
use crate::record::{parse, render, Beat, Record, Status};
use crate::{json, layout, proc, validate};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`, by characters.
fn agent_oracle(name: &str) -> bool {
    let alnum = |c: char| matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9');
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if alnum(first) => {}
        _ => return false,
    }
    let mut count = 1;
    for c in chars {
        if !(alnum(c) || c == '_' || c == '-') {
            return false;
        }
        count += 1;
    }
    count <= 64
}

/// A decimal pid from 1 to 2^31-1, after trimming whitespace, with an optional `+`; by digits,
/// without a float or a wider integer doing the range check.
fn pid_oracle(text: &str) -> Option<i32> {
    let t = text.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    const MAX: &str = "2147483647";
    let fits =
        significant.len() < MAX.len() || (significant.len() == MAX.len() && significant <= MAX);
    if significant.is_empty() || !fits {
        return None;
    }
    Some(
        significant
            .bytes()
            .fold(0i32, |n, b| n * 10 + i32::from(b - b'0')),
    )
}

/// Strings that land near the agent rule's edges: the right alphabet plus a few wrong
/// characters, lengths around 64.
fn near_agent() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,70}",
        "[A-Za-z0-9_.:/= -]{0,66}",
        "[a-z0-9][a-z0-9_-]{60,66}",
        "[A-Za-z0-9\u{e9}\u{130}\u{212a}\u{ff21}\n\t]{1,8}",
        any::<String>(),
    ]
}

fn valid_agent() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
}

/// Timestamps from 1970 to 9999 (render writes a 4-digit year) with nanoseconds, and leap
/// seconds (chrono's nanosecond >= 1e9 on a :59 second).
fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    prop_oneof![
        (0..=LAST, 0u32..1_000_000_000)
            .prop_map(|(s, ns)| Utc.timestamp_opt(s, ns).single().expect("in range")),
        (0..LAST / 60, 1_000_000_000u32..2_000_000_000).prop_map(|(m, ns)| {
            Utc.timestamp_opt(m * 60 + 59, ns)
                .single()
                .expect("a leap second on :59")
        }),
    ]
}

fn interval() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (10_000_000u64..=86_400_000_000_000).prop_map(Duration::from_nanos),
        (1u64..=86_400).prop_map(Duration::from_secs),
        (10u64..=86_400_000).prop_map(Duration::from_millis),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Ok),
        Just(Status::Exited),
        Just(Status::Stopped),
        Just(Status::Restarting),
        Just(Status::Failed)
    ]
}

/// The fields of a beat, owned (a `Beat` borrows its agent name).
type BeatParts = (
    i32,
    Status,
    Option<String>,
    Duration,
    u64,
    i32,
    Option<u64>,
    Option<(Activity, DateTime<Utc>)>,
);

fn activity() -> impl Strategy<Value = (Activity, DateTime<Utc>)> {
    (0..Activity::ALL.len(), 0..4_102_444_800_000i64).prop_map(|(i, ms)| {
        let since = Utc.timestamp_millis_opt(ms).single().expect("in range");
        (Activity::ALL[i], since)
    })
}

fn beat_parts() -> impl Strategy<Value = BeatParts> {
    (
        1..=i32::MAX,
        status(),
        proptest::option::of(valid_agent()),
        interval(),
        any::<u64>(),
        1..=i32::MAX,
        proptest::option::of(any::<u64>()),
        proptest::option::of(activity()),
    )
}

fn rendered(now: DateTime<Utc>, parts: &BeatParts) -> Vec<u8> {
    let (pid, status, agent, interval, seq, hb_pid, started, activity) = parts;
    let beat = Beat {
        pid: *pid,
        status: *status,
        agent: agent.as_deref(),
        interval: *interval,
        seq: *seq,
        hb_pid: *hb_pid,
        started: *started,
        lifecycle: Default::default(),
        activity: *activity,
    };
    let mut buf = Vec::new();
    render(&mut buf, now, &beat);
    buf
}

/// What a reader must get back from a rendered beat: every field, and `ts` cut to the
/// millisecond (a leap second's extra second reads back as :59.999).
fn expected(now: DateTime<Utc>, parts: &BeatParts) -> Record {
    let (pid, status, agent, interval, seq, hb_pid, started, activity) = parts.clone();
    let millis = (now.timestamp_subsec_millis()).min(999);
    let ts = Utc
        .timestamp_opt(now.timestamp(), millis * 1_000_000)
        .single()
        .expect("in range");
    Record {
        ts,
        pid,
        status,
        agent,
        interval: Some(interval.as_secs_f64()),
        seq: Some(seq),
        hb_pid: Some(hb_pid),
        started,
        lifecycle: Default::default(),
        activity: activity.map(|(a, _)| a),
        activity_since: activity.map(|(_, since)| since),
    }
}

/// Lines a future writer might add: keys the parser does not know, any value without a line
/// break.
fn unknown_line() -> impl Strategy<Value = String> {
    ("[a-z_]{1,12}", "[^\n\r]{0,40}")
        .prop_filter("not a known key", |(k, _)| {
            !matches!(
                k.as_str(),
                "ts" | "pid"
                    | "status"
                    | "agent"
                    | "interval"
                    | "seq"
                    | "hb_pid"
                    | "started"
                    | "activity"
            )
        })
        .prop_map(|(k, v)| format!("{k}={v}"))
}

/// Soup of heartbeat-shaped lines with hostile values, to get past the first error often.
fn record_soup() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("ts"),
        Just("pid"),
        Just("status"),
        Just("agent"),
        Just("interval"),
        Just("seq"),
        Just("hb_pid"),
        Just("started"),
        Just("x"),
        Just(""),
    ];
    let value = prop_oneof![
        Just("2026-11-26T02:21:05.123Z".to_string()),
        Just("2026-11-26T02:21:60Z".to_string()),
        Just("9999-12-31T23:59:59.999999999+23:59".to_string()),
        Just("0000-01-01T00:00:00-23:59".to_string()),
        Just("ok".to_string()),
        Just("exited".to_string()),
        Just("-1".to_string()),
        Just("1e309".to_string()),
        Just("NaN".to_string()),
        Just("-0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("2147483648".to_string()),
        "[0-9+.eE-]{0,24}",
        "[^\n]{0,24}",
    ];
    prop::collection::vec(
        (key, value, prop_oneof![Just("\n"), Just("\r\n"), Just("")])
            .prop_map(|(k, v, end)| format!("{k}={v}{end}")),
        0..12,
    )
    .prop_map(|lines| lines.concat().into_bytes())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn agent_names_match_the_rule_exactly(name in near_agent()) {
        let got = validate::agent(&name);
        prop_assert_eq!(got.is_ok(), agent_oracle(&name), "{:?} -> {:?}", name, got);
        match got {
            Ok(back) => prop_assert_eq!(back, name.as_str()),
            // One line: a hostile name cannot break the error onto a second line.
            Err(e) => prop_assert!(
                e.starts_with("invalid agent name ") && !e.contains('\n') && !e.contains('\r'),
                "{:?}", e
            ),
        }
    }

    #[test]
    fn every_name_the_rule_allows_is_accepted(name in valid_agent()) {
        prop_assert!(validate::agent(&name).is_ok(), "{:?}", name);
    }

    /// Any number, written the ways a person or a script would: accepted iff finite and in
    /// [0.01, 86400], and then as a duration within a nanosecond of it.
    #[test]
    fn intervals_accepted_iff_finite_and_in_range(
        secs in prop_oneof![
            any::<f64>(),
            0.0f64..0.02,
            86_399.0f64..86_401.0,
            -1.0f64..100.0,
            Just(0.01f64),
            Just(86_400.0f64),
            Just(f64::MIN_POSITIVE),
            Just(-0.0f64),
        ],
        style in 0..4usize,
    ) {
        let text = match style {
            0 => format!("{secs}"),
            1 => format!("{secs:e}"),
            2 => format!(" {secs}\t"),
            _ => format!("{secs:.3}"),
        };
        let shown: f64 = text.trim().parse().expect("Rust reads back what it formats");
        let want = shown.is_finite() && (0.01..=86_400.0).contains(&shown);
        let got = validate::interval(&text);
        prop_assert_eq!(got.is_ok(), want, "{:?} -> {:?}", text, got);
        if let Ok(d) = got {
            prop_assert!((d.as_secs_f64() - shown).abs() <= 1e-9 * shown.max(1.0), "{:?} -> {:?}", text, d);
        }
    }

    /// What the launcher forwards (`format_interval`) is accepted again by the sidecar, as
    /// the same duration: the two binaries never disagree about an interval.
    #[test]
    fn formatted_intervals_validate_again(d in interval()) {
        let text = validate::format_interval(d);
        let again = validate::interval(&text);
        prop_assert!(again.is_ok(), "{:?} -> {:?} refused: {:?}", d, text, again);
        let again = again.unwrap();
        let diff = distance(again, d);
        prop_assert!(diff <= Duration::from_nanos(1), "{:?} -> {:?} -> {:?}", d, text, again);
    }

    #[test]
    fn interval_text_never_panics(text in prop_oneof![any::<String>(), "[0-9eE+.-]{0,30}", "(?i)[ ]*[+-]?(inf|infinity|nan)[ ]*"]) {
        match validate::interval(&text) {
            Ok(d) => prop_assert!(
                (Duration::from_millis(10)..=Duration::from_secs(86_400)).contains(&d)
                    || distance(d, Duration::from_millis(10)) <= Duration::from_nanos(1),
                "{:?} -> {:?}", text, d
            ),
            Err(e) => prop_assert!(e.starts_with("invalid interval ") && !e.contains('\n'), "{:?}", e),
        }
    }

    #[test]
    fn pids_match_the_rule(
        text in prop_oneof![
            any::<String>(),
            "[ ]?[+-]?0{0,3}[0-9]{1,11}[ \n]?",
            any::<i64>().prop_map(|n| n.to_string()),
            (1..=i32::MAX).prop_map(|n| n.to_string()),
        ],
    ) {
        let got = validate::pid(&text);
        prop_assert_eq!(got.as_ref().ok().copied(), pid_oracle(&text), "{:?} -> {:?}", text, got);
        if let Err(e) = got {
            prop_assert!(e.starts_with("invalid pid ") && !e.contains('\n'), "{:?}", e);
        }
    }

    #[test]
    fn socket_names_match_the_rule(name in prop_oneof![any::<String>(), "[A-Za-z0-9_.-]{0,102}", "[a-z./ ]{0,3}"]) {
        let want = !name.is_empty()
            && name.chars().count() <= 100
            && name != "."
            && name != ".."
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        let got = validate::socket(&name);
        prop_assert_eq!(got.is_ok(), want, "{:?} -> {:?}", name, got);
        if let Err(e) = got {
            prop_assert!(!e.contains('\n'), "{:?}", e);
        }
    }

    #[test]
    fn one_line_is_one_line(text in any::<String>()) {
        let line = validate::one_line(&text);
        prop_assert!(!line.contains('\n'), "{:?} -> {:?}", text, line);
    }

    /// The parser reads anything without panicking: bytes, and heartbeat-shaped soup.
    #[test]
    fn parse_never_panics(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        record_soup(),
    ]) {
        if let Ok(rec) = parse(&bytes) {
            // What it accepts obeys the contract's types.
            prop_assert!(rec.pid > 0);
            prop_assert!(rec.interval.is_none_or(|i| i.is_finite() && i > 0.0));
        }
    }

    /// Whatever the sidecar renders, a reader parses back to the same facts.
    #[test]
    fn render_then_parse_round_trips(now in timestamp(), parts in beat_parts()) {
        let bytes = rendered(now, &parts);
        let text = String::from_utf8(bytes.clone()).expect("render writes UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        // The bash contract: ts, pid, status first, in that order.
        prop_assert!(lines[0].starts_with("ts=") && lines[1].starts_with("pid=") && lines[2].starts_with("status="), "{}", text);
        prop_assert!(text.ends_with('\n'));
        let rec = parse(&bytes);
        prop_assert_eq!(rec, Ok(expected(now, &parts)), "{}", text);
    }

    /// Readers ignore keys they do not know and blank lines, wherever they appear.
    #[test]
    fn unknown_keys_are_ignored(
        now in timestamp(),
        parts in beat_parts(),
        extra in prop::collection::vec((unknown_line(), any::<prop::sample::Index>()), 0..6),
        blank in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
    ) {
        let text = String::from_utf8(rendered(now, &parts)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for (line, at) in extra {
            let at = at.index(lines.len() + 1);
            lines.insert(at, line);
        }
        for at in blank {
            let at = at.index(lines.len() + 1);
            lines.insert(at, String::new());
        }
        let with_extra = lines.join("\n");
        prop_assert_eq!(parse(with_extra.as_bytes()), Ok(expected(now, &parts)), "{}", with_extra);
    }

    /// A cut-off record (a torn read, were rename not atomic) is refused or read without
    /// panicking; when it is refused the reason is one line.
    #[test]
    fn truncated_records_are_handled(now in timestamp(), parts in beat_parts(), cut in any::<prop::sample::Index>()) {
        let bytes = rendered(now, &parts);
        let short = &bytes[..cut.index(bytes.len())];
        if let Err(e) = parse(short) {
            prop_assert!(!e.contains('\n'), "{:?}", e);
        }
    }

    /// `/proc/PID/stat` with a process name of the process's own choosing (any bytes,
    /// parentheses and fake fields included) still yields the kernel's state and start time.
    #[test]
    fn stat_lines_survive_hostile_process_names(
        pid in 1..=i32::MAX,
        comm in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..16),
            "[() Z0-9]{0,15}".prop_map(String::into_bytes),
        ],
        state in prop::sample::select(b"RSDZTtXxKWPI".to_vec()),
        started in any::<u64>(),
        fields in prop::collection::vec(any::<u32>(), 30),
    ) {
        let mut line = format!("{pid} (").into_bytes();
        line.extend_from_slice(&comm);
        line.extend_from_slice(format!(") {} ", state as char).as_bytes());
        // Fields 4..=21, then starttime (22), then the rest.
        for f in &fields[..18] {
            line.extend_from_slice(format!("{f} ").as_bytes());
        }
        line.extend_from_slice(format!("{started}").as_bytes());
        for f in &fields[18..] {
            line.extend_from_slice(format!(" {f}").as_bytes());
        }
        line.push(b'\n');
        prop_assert_eq!(proc::parse_stat(&line), Some((state, started)), "{:?}", String::from_utf8_lossy(&line));
    }

    #[test]
    fn parse_stat_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = proc::parse_stat(&bytes);
    }

    /// A heartbeat path splits into a directory and one file name that stays in it.
    #[test]
    fn split_names_one_file_in_one_dir(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        let path = std::path::PathBuf::from(std::ffi::OsString::from_vec(bytes.clone()));
        if let Ok((dir, name)) = layout::split(&path) {
            let name = name.to_bytes();
            prop_assert!(!name.is_empty() && !name.contains(&b'/'), "{:?}", name);
            prop_assert!(name != b"." && name != b"..", "{:?}", name);
            // (A NUL in the directory part is refused later, by `HbFile::open`; argv and the
            // environment cannot carry one anyway.)
            let rejoined = dir.join(std::ffi::OsStr::from_bytes(name));
            prop_assert_eq!(rejoined.file_name(), path.file_name());
        }
    }

    /// A report of any names is one JSON document, one element per line: no name breaks a
    /// line or the document.
    #[test]
    fn json_lines_hold_any_strings(names in proptest::collection::vec(any::<String>(), 0..5)) {
        let out = json::lines(&names);
        prop_assert_eq!(out.lines().count(), if names.is_empty() { 1 } else { names.len() + 2 });
        let back: Vec<String> = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, names);
    }
}

fn distance(a: Duration, b: Duration) -> Duration {
    a.max(b) - a.min(b)
}

/// Replays `corpus/record/`: inputs that once mattered (found by hand or by `cargo xtask
/// fuzz`). `ok-*` must parse, `bad-*` must be refused with a reason; none may panic.
#[test]
fn record_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/record");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is checked in") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = parse(&std::fs::read(&path).unwrap());
        match (name.split('-').next(), parsed) {
            (Some("ok"), Ok(_)) => {}
            (Some("bad"), Err(reason)) => assert!(!reason.is_empty(), "{name}"),
            (_, outcome) => panic!("{name}: unexpected {outcome:?}"),
        }
        seen += 1;
    }
    assert!(seen >= 10, "the corpus at {} lost files", dir.display());
}
