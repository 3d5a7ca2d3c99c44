/*!
The renderings of a report for people and scripts: an aligned table, and JSON. Each is a pure
function of the rows. (Prometheus text, shared with the exporter, is [`super::metrics`].)
*/

use std::fmt::Write as _;

use chrono::SecondsFormat;

use super::classify::{Row, State};
use crate::json;

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
fn printable(text: &str) -> String {
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
    let mut out = format!(
        "{} agent{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    let mut sep = ": ";
    for state in State::ALL {
        let count = rows.iter().filter(|row| row.state == state).count();
        if count > 0 {
            let _ = write!(out, "{sep}{count} {}", state.as_str());
            sep = ", ";
        }
    }
    out
}

/// The table: AGENT, STATE, PID, AGE, INTERVAL (and REASON when a row is invalid), aligned,
/// then the summary line. An empty directory is just the summary, `0 agents`.
pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!("{}\n", summary(rows));
    }
    let with_reason = rows.iter().any(|row| row.reason.is_some());
    let header = ["AGENT", "STATE", "PID", "AGE", "INTERVAL", "REASON"];
    let columns = if with_reason { 6 } else { 5 };
    let mut cells: Vec<[String; 6]> = Vec::with_capacity(rows.len() + 1);
    cells.push(header.map(String::from));
    for row in rows {
        let dash = || "-".to_string();
        let record = row.record.as_ref();
        cells.push([
            printable(&row.agent),
            row.state.as_str().to_string(),
            record.map_or_else(dash, |r| r.pid.to_string()),
            row.age.map_or_else(dash, format_age),
            record
                .and_then(|r| r.interval)
                .map_or_else(dash, |secs| format!("{secs}s")),
            row.reason.as_deref().map(printable).unwrap_or_default(),
        ]);
    }
    let mut widths = [0; 6];
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &cells {
        let mut text = String::new();
        for (i, cell) in line[..columns].iter().enumerate() {
            if i + 1 == columns {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        // Rows without a reason would otherwise end in padding.
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// A JSON array, one object per agent and per line: `agent`, `state`, `pid`, `ts`, `age_s`,
/// `interval`, `reason`; a field the file does not give is `null`.
pub fn json(rows: &[Row]) -> String {
    let mut out = String::with_capacity(160 * (rows.len() + 1));
    json::array(&mut out, rows, |out, row| {
        let record = row.record.as_ref();
        let ts = record.map(|r| r.ts.to_rfc3339_opts(SecondsFormat::Millis, true));
        let mut obj = json::Object::new(out);
        obj.string("agent", row.agent.as_str())
            .string("state", row.state.as_str())
            .number("pid", record.map(|r| r.pid))
            .string("ts", ts.as_deref())
            .number("age_s", row.age)
            .number("interval", record.and_then(|r| r.interval))
            .string("reason", row.reason.as_deref());
        obj.end();
    });
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use crate::status::classify::tests::{record, row};

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

    #[test]
    fn table_escapes_control_characters_in_names() {
        let rows = [row(b"evil\x1b[2J\n", Err("empty file".into()))];
        let text = table(&rows);
        assert!(text.contains("evil\\u{1b}[2J\\n "), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn json_has_every_field_and_escapes_names() {
        let rows = [
            row(b"q\"\xff", Ok(record(Status::Ok, 1250, Some(0.5)))),
            row(b"z", Err("not UTF-8 text".into())),
        ];
        let text = json(&rows);
        let expected = "[
  {\"agent\":\"q\\\"\u{fffd}\",\"state\":\"ok\",\"pid\":42,\"ts\":\"2026-11-26T02:21:03.750Z\",\"age_s\":1.25,\"interval\":0.5,\"reason\":null},
  {\"agent\":\"z\",\"state\":\"invalid\",\"pid\":null,\"ts\":null,\"age_s\":null,\"interval\":null,\"reason\":\"not UTF-8 text\"}
]
";
        assert_eq!(text, expected);
        assert_eq!(json(&[]), "[]\n");
    }
}
