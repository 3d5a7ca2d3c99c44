/*!
The renderings of a report for people and scripts: an aligned table, and JSON. Each is a pure
function of the rows. (Prometheus text, shared with the exporter, is [`super::metrics`].)
*/

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::classify::{Row, State};
use crate::activity::Activity;
use crate::death::{signal_name, Death};
use crate::json;
use crate::record::Lifecycle;

/// An age for people: whole seconds, minutes, hours or days, rounded down (`2s`, `4m`, `3h`,
/// `2d`). Negative ages (a `ts` in the future) keep their sign.
pub fn format_age(secs: f64) -> String {
    let sign = if secs <= -1.0 { "-" } else { "" };
    // `as` saturates, and NaN becomes 0: neither can come from a parsed `ts`.
    let s = secs.abs().floor() as u64;
    let (n, unit) = match s {
        0..60 => (s, "s"),
        60..3600 => (s / 60, "m"),
        3600..86400 => (s / 3600, "h"),
        _ => (s / 86400, "d"),
    };
    format!("{sign}{n}{unit}")
}

/// A name for a terminal: control characters (a newline, an escape sequence planted in a file
/// name) are shown escaped, never sent to the terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The summary line: `5 agents: 3 ok, 1 stale, 1 exited` (states with no agent left out).
pub fn summary(rows: &[Row]) -> String {
    summary_line(
        rows.len(),
        State::ALL.map(|state| {
            let count = rows.iter().filter(|row| row.state == state).count();
            (state.as_str(), count)
        }),
    )
}

/// `5 agents: 3 ok, 1 stale`: the number of agents, then how many are in each state (a state
/// with none is left out). The one summary line of `mosaic-hb status` and `mosaic-fleet ls`.
pub fn summary_line<'a>(
    agents: usize,
    counts: impl IntoIterator<Item = (&'a str, usize)>,
) -> String {
    let mut out = format!("{agents} agent{}", if agents == 1 { "" } else { "s" });
    let mut sep = ": ";
    for (state, count) in counts.into_iter().filter(|&(_, count)| count > 0) {
        let _ = write!(out, "{sep}{count} {state}");
        sep = ", ";
    }
    out
}

/// Writes `lines` (the header first) as an aligned table: each cell padded to the widest of its
/// column, columns two spaces apart, only the columns `shown` keeps, no trailing blanks. The one
/// table writer of `mosaic-hb status` and `mosaic-fleet ls`.
pub fn columns<const N: usize>(
    out: &mut String,
    lines: &[[String; N]],
    shown: impl Fn(usize) -> bool,
) {
    let mut widths = [0; N];
    for line in lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for line in lines {
        let start = out.len();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if shown(i) {
                let _ = write!(out, "{cell:<width$}  ");
            }
        }
        // Rows ending in short or empty cells would otherwise end in padding.
        let end = start + out[start..].trim_end().len();
        out.truncate(end);
        out.push('\n');
    }
}

/// `busy 12s`: the activity and how long it has lasted.
pub fn format_activity((activity, secs): (Activity, f64)) -> String {
    format!("{} {}", activity.as_str(), format_age(secs))
}

/// The table: AGENT, STATE, ACTIVITY (when an agent reports one), PID, AGE, INTERVAL,
/// RESTARTS (when an agent has a restart policy), EXIT (when a record says how the last run
/// ended) and REASON (when a row has one), aligned, then the summary line. An empty directory
/// is just the summary, `0 agents`.
pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!("{}\n", summary(rows));
    }
    let header = [
        "AGENT", "STATE", "ACTIVITY", "PID", "AGE", "INTERVAL", "RESTARTS", "EXIT", "REASON",
    ];
    let life = |row: &Row| row.record.as_ref().map(|r| r.lifecycle).unwrap_or_default();
    let with_activity = rows.iter().any(|row| row.activity.is_some());
    let with_restarts = rows.iter().any(|row| life(row).restarts.is_some());
    let with_exit = rows.iter().any(|row| exit(&life(row)).is_some());
    let with_reason = rows.iter().any(|row| row.reason.is_some());
    let mut cells: Vec<[String; 9]> = Vec::with_capacity(rows.len() + 1);
    cells.push(header.map(String::from));
    for row in rows {
        let dash = || "-".to_string();
        let record = row.record.as_ref();
        cells.push([
            printable(&row.agent),
            row.state.as_str().to_string(),
            row.activity.map_or_else(dash, format_activity),
            record.map_or_else(dash, |r| r.pid.to_string()),
            row.age.map_or_else(dash, format_age),
            record
                .and_then(|r| r.interval)
                .map_or_else(dash, |secs| format!("{secs}s")),
            life(row).restarts.map_or_else(dash, |n| n.to_string()),
            exit(&life(row)).unwrap_or_else(dash),
            row.reason.as_deref().map(printable).unwrap_or_default(),
        ]);
    }
    let mut out = String::new();
    columns(&mut out, &cells, |i| match i {
        2 => with_activity,
        6 => with_restarts,
        7 => with_exit,
        8 => with_reason,
        _ => true,
    });
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// How the last run ended, for people and `awk`: its exit status, or the signal's name.
fn exit(life: &Lifecycle) -> Option<String> {
    // One word, so the table stays a table for `awk`: `3`, `SIGKILL`, `SIG40`.
    match Death::from_pane(life.exit_status, life.exit_signal) {
        Death::Status(code) => Some(code.to_string()),
        Death::Signal(sig) => Some(match signal_name(sig) {
            Some(name) => format!("SIG{name}"),
            None => format!("SIG{sig}"),
        }),
        Death::Unknown => None,
    }
}

/// A JSON array, one object per agent and per line: `agent`, `state`, `pid`, `ts`, `age_s`,
/// `interval`, `reason`, `activity`, `activity_since`, `activity_s`, `restarts`,
/// `exit_status`, `exit_signal`, `restart_at`, `hook_failures`, `hook_dropped`; a field the file does not give is `null` (the
/// activity fields also while the agent is not `ok`).
pub fn json(rows: &[Row]) -> String {
    let rows: Vec<JsonRow> = rows.iter().map(JsonRow::new).collect();
    let mut out = json::lines(&rows);
    out.push('\n');
    out
}

/// One agent of `status --json`, its fields in the documented order.
#[derive(Serialize)]
struct JsonRow<'a> {
    agent: &'a str,
    state: &'static str,
    pid: Option<i32>,
    ts: Option<String>,
    age_s: Option<f64>,
    interval: Option<f64>,
    reason: Option<&'a str>,
    activity: Option<&'static str>,
    activity_since: Option<String>,
    activity_s: Option<f64>,
    restarts: Option<u32>,
    exit_status: Option<i32>,
    exit_signal: Option<i32>,
    restart_at: Option<String>,
    hook_failures: Option<u32>,
    hook_dropped: Option<u32>,
}

impl<'a> JsonRow<'a> {
    fn new(row: &'a Row) -> JsonRow<'a> {
        let record = row.record.as_ref();
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let life = record.map(|r| r.lifecycle).unwrap_or_default();
        JsonRow {
            agent: &row.agent,
            state: row.state.as_str(),
            pid: record.map(|r| r.pid),
            ts: record.map(|r| time(r.ts)),
            age_s: row.age,
            interval: record.and_then(|r| r.interval),
            reason: row.reason.as_deref(),
            activity: row.activity.map(|(a, _)| a.as_str()),
            activity_since: row
                .activity
                .and(record.and_then(|r| r.activity_since))
                .map(time),
            activity_s: row.activity.map(|(_, secs)| secs),
            restarts: life.restarts,
            exit_status: life.exit_status,
            exit_signal: life.exit_signal,
            restart_at: life.restart_at.map(time),
            hook_failures: life.hook_failures,
            hook_dropped: life.hook_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use crate::status::classify::tests::{record, row, with_activity};

    #[test]
    fn one_table_writer_aligns_shown_columns_without_trailing_blanks() {
        let lines = [
            ["NAME", "HIDDEN", "N", "NOTE"],
            ["a", "xxxxxxxx", "10", ""],
            ["ünïcode", "-", "2", "why"],
        ]
        .map(|line| line.map(String::from));
        let mut out = String::from("head\n");
        columns(&mut out, &lines, |i| i != 1);
        assert_eq!(
            out, "head\nNAME     N   NOTE\na        10\nünïcode  2   why\n",
            "widths count characters, not bytes"
        );
    }

    #[test]
    fn summary_lines_leave_out_empty_states() {
        assert_eq!(summary_line(0, [("ok", 0)]), "0 agents");
        assert_eq!(
            summary_line(1, [("ok", 0), ("stale", 1)]),
            "1 agent: 1 stale"
        );
        assert_eq!(
            summary_line(5, [("ok", 3), ("stale", 0), ("exited", 2)]),
            "5 agents: 3 ok, 2 exited"
        );
    }

    #[test]
    fn ages_read_like_people_say_them() {
        let cases = [
            (0.0, "0s"),
            (0.85, "0s"),
            (2.9, "2s"),
            (59.99, "59s"),
            (60.0, "1m"),
            (3599.0, "59m"),
            (3600.0, "1h"),
            (86_399.0, "23h"),
            (86_400.0, "1d"),
            (2.0 * 86_400.0 + 5.0, "2d"),
            (-0.5, "0s"),
            (-5.0, "-5s"),
            (-7200.0, "-2h"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_age(secs), text, "{secs}");
        }
    }

    #[test]
    fn table_aligns_and_summarizes() {
        let rows = [
            row(b"alpha", Ok(record(Status::Ok, 2500, Some(0.2)))),
            row(b"b", Err("empty file".into())),
            row(b"gamma-long", Ok(record(Status::Exited, 300_000, None))),
        ];
        let text = table(&rows);
        let expected = "\
AGENT       STATE    PID  AGE  INTERVAL  REASON
alpha       stale    42   2s   0.2s      no beat for 2.5s (over 3 × 0.2s): sidecar gone or stuck
b           invalid  -    -    -         empty file
gamma-long  exited   42   5m   -
3 agents: 1 stale, 1 exited, 1 invalid
";
        assert_eq!(text, expected);
        assert_eq!(table(&[]), "0 agents\n");
        assert_eq!(summary(&rows[..1]), "1 agent: 1 stale");
    }

    // The ACTIVITY column shows for ok agents that report one; a stale agent's last activity
    // is not shown, and without any activity the column is left out (above).
    #[test]
    fn table_shows_activity_and_for_how_long() {
        let ok = |activity, secs| {
            Ok(with_activity(
                record(Status::Ok, 500, Some(1.0)),
                activity,
                secs,
            ))
        };
        let stale = with_activity(record(Status::Ok, 9000, Some(1.0)), Activity::Busy, 20);
        let rows = [
            row(b"a", ok(Activity::Busy, 12)),
            row(b"b", ok(Activity::Idle, 14 * 60 + 5)),
            row(b"c", ok(Activity::Waiting, 185)),
            row(b"d", Ok(record(Status::Ok, 500, Some(1.0)))),
            row(b"e", Ok(stale)),
        ];
        let text = table(&rows);
        let expected = "\
AGENT  STATE  ACTIVITY    PID  AGE  INTERVAL  REASON
a      ok     busy 12s    42   0s   1s
b      ok     idle 14m    42   0s   1s
c      ok     waiting 3m  42   0s   1s
d      ok     -           42   0s   1s
e      stale  -           42   9s   1s        no beat for 9s (over 3 × 1s): sidecar gone or stuck
5 agents: 4 ok, 1 stale
";
        assert_eq!(text, expected);
    }

    #[test]
    fn table_escapes_control_characters_in_names() {
        let rows = [row(b"evil\x1b[2J\n", Err("empty file".into()))];
        let text = table(&rows);
        assert!(text.contains("evil\\u{1b}[2J\\n "), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    // RESTARTS and EXIT show once an agent is supervised or a record says how a run ended.
    #[test]
    fn table_shows_restarts_and_how_the_last_run_ended() {
        let mut failed = record(Status::Failed, 2000, Some(1.0));
        failed.lifecycle.restarts = Some(4);
        failed.lifecycle.exit_signal = Some(9);
        let rows = [
            row(b"a", Ok(record(Status::Ok, 1000, Some(1.0)))),
            row(b"b", Ok(failed)),
        ];
        let expected = "\
AGENT  STATE   PID  AGE  INTERVAL  RESTARTS  EXIT
a      ok      42   1s   1s        -         -
b      failed  42   2s   1s        4         SIGKILL
2 agents: 1 ok, 1 failed
";
        assert_eq!(table(&rows), expected);
        let json = json(&rows[1..]);
        assert!(
            json.contains("\"restarts\":4,\"exit_status\":null,\"exit_signal\":9"),
            "{json}"
        );
    }

    #[test]
    fn json_has_every_field_and_escapes_names() {
        let busy = with_activity(record(Status::Ok, 1250, Some(1.0)), Activity::Busy, 12);
        let rows = [
            row(b"q\"\xff", Ok(record(Status::Ok, 1250, Some(0.5)))),
            row(b"z", Err("not UTF-8 text".into())),
            row(b"w", Ok(busy)),
        ];
        let text = json(&rows);
        let expected = "[
  {\"agent\":\"q\\\"\u{fffd}\",\"state\":\"ok\",\"pid\":42,\"ts\":\"2026-11-26T02:21:03.750Z\",\"age_s\":1.25,\"interval\":0.5,\"reason\":null,\"activity\":null,\"activity_since\":null,\"activity_s\":null,\"restarts\":null,\"exit_status\":null,\"exit_signal\":null,\"restart_at\":null,\"hook_failures\":null,\"hook_dropped\":null},
  {\"agent\":\"z\",\"state\":\"invalid\",\"pid\":null,\"ts\":null,\"age_s\":null,\"interval\":null,\"reason\":\"not UTF-8 text\",\"activity\":null,\"activity_since\":null,\"activity_s\":null,\"restarts\":null,\"exit_status\":null,\"exit_signal\":null,\"restart_at\":null,\"hook_failures\":null,\"hook_dropped\":null},
  {\"agent\":\"w\",\"state\":\"ok\",\"pid\":42,\"ts\":\"2026-11-26T02:21:03.750Z\",\"age_s\":1.25,\"interval\":1.0,\"reason\":null,\"activity\":\"busy\",\"activity_since\":\"2026-11-26T02:20:53.000Z\",\"activity_s\":12.0,\"restarts\":null,\"exit_status\":null,\"exit_signal\":null,\"restart_at\":null,\"hook_failures\":null,\"hook_dropped\":null}
]
";
        assert_eq!(text, expected);
        assert_eq!(json(&[]), "[]\n");
    }
}
