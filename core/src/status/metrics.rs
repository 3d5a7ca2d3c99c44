/*!
The fleet as Prometheus metrics (text format 0.0.4): what `mosaic-hb status --format
prometheus` prints and what `mosaic-hb exporter` serves, byte for byte the same families.

Every series carries `fleet` (the heartbeat directory, or a name given with `--fleet`) and
`agent`, so two fleets on one host never collide, even with the same agent names.

| family | type | value |
|---|---|---|
| `mosaic_fleet_up{fleet}` | gauge | 1 when the heartbeat directory was read |
| `mosaic_agent_up` | gauge | 1 when the agent is `ok` |
| `mosaic_agent_failing` | gauge | 1 when `status --check` fails for it: `stale`, `exited` (not with status 0), `failed`, `invalid` (never `stopped`) |
| `mosaic_agent_state{state}` | gauge | a state set: one series per state, 1 for the agent's, 0 for the rest |
| `mosaic_agent_heartbeat_timestamp_seconds` | gauge | when the last record was written (Unix time) |
| `mosaic_agent_heartbeat_interval_seconds` | gauge | seconds between beats (30 when the record does not say) |
| `mosaic_agent_restarts_total` | counter | restarts by the sidecar's restart policy (when it has one) |
| `mosaic_agent_hook_failures_total` | counter | event hooks that failed or were killed at their timeout (with `--on-event`) |
| `mosaic_agent_hook_dropped_total` | counter | events no hook ran for, the queue being full (with `--on-event`) |
| `mosaic_agent_activity{activity}` | gauge | while `ok` and on a terminal: a state set over busy, idle, waiting |
| `mosaic_agent_activity_since_timestamp_seconds` | gauge | when that activity began (Unix time) |

Timestamps, not ages: Prometheus computes `time() - timestamp` itself, so a stale rule keeps
working when nothing refreshes the numbers (a frozen textfile, a hung cron). No sample carries
a timestamp of its own (node_exporter's textfile collector refuses them).
*/

use std::collections::HashSet;
use std::fmt::Write as _;

use super::classify::{Row, State, DEFAULT_INTERVAL};
use crate::activity::Activity;

/// One heartbeat directory's report, as metrics see it.
pub struct Fleet<'a> {
    /// The `fleet` label: the directory, or the name given for it.
    pub label: &'a str,
    /// The rows, or `None` when the directory could not be read (`mosaic_fleet_up` 0).
    pub rows: Option<&'a [Row]>,
}

/// Appends `text` as a Prometheus label value, quotes included: backslash, double quote and
/// line feed escaped, as the text format (0.0.4) requires.
pub fn label_value(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Every family, each with its HELP and TYPE and all its samples together.
pub fn prometheus(fleets: &[Fleet]) -> String {
    // Two file names that differ only in bytes that are not UTF-8 share a label value, and
    // two fleets given the same name share a label: a repeated series makes a scraper reject
    // the whole exposition, so only the first is kept.
    let mut seen = HashSet::new();
    let mut agents: Vec<(&str, &Row)> = Vec::new();
    for fleet in fleets {
        for row in fleet.rows.unwrap_or_default() {
            if seen.insert((fleet.label, row.agent.as_str())) {
                agents.push((fleet.label, row));
            }
        }
    }
    let mut out = String::with_capacity(256 + 1200 * agents.len());
    header(
        &mut out,
        "mosaic_fleet_up",
        "gauge",
        "1 when the heartbeat directory was read, else 0.",
    );
    let mut fleets_seen = HashSet::new();
    for fleet in fleets {
        if fleets_seen.insert(fleet.label) {
            out.push_str("mosaic_fleet_up{fleet=");
            label_value(&mut out, fleet.label);
            let _ = writeln!(out, "}} {}", u8::from(fleet.rows.is_some()));
        }
    }
    family(
        &mut out,
        ("mosaic_agent_up", "gauge"),
        "1 when the agent is running and its heartbeat is current (state ok), else 0.",
        &agents,
        |row, emit| emit(None, f64::from(u8::from(row.state == State::Ok))),
    );
    family(
        &mut out,
        ("mosaic_agent_failing", "gauge"),
        "1 when the agent is stale, exited (not with status 0), failed or invalid (what status \
         --check fails on); 0 when ok, restarting or deliberately stopped.",
        &agents,
        |row, emit| emit(None, f64::from(u8::from(row.is_failing()))),
    );
    family(
        &mut out,
        ("mosaic_agent_state", "gauge"),
        "The agent's state as a state set: 1 for the state it is in, 0 for every other.",
        &agents,
        |row, emit| {
            for state in State::ALL {
                emit(
                    Some(("state", state.as_str())),
                    f64::from(u8::from(row.state == state)),
                );
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_heartbeat_timestamp_seconds", "gauge"),
        "When the agent's last heartbeat record was written, in seconds since the Unix epoch.",
        &agents,
        |row, emit| {
            if let Some(record) = &row.record {
                emit(None, record.ts.timestamp_millis() as f64 / 1000.0);
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_heartbeat_interval_seconds", "gauge"),
        "Seconds between the agent's heartbeats (30 when its record does not say).",
        &agents,
        |row, emit| {
            if let Some(record) = &row.record {
                emit(None, record.interval.unwrap_or(DEFAULT_INTERVAL));
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_restarts_total", "counter"),
        "Restarts of the agent by its sidecar's restart policy.",
        &agents,
        |row, emit| {
            if let Some(n) = row.record.as_ref().and_then(|r| r.lifecycle.restarts) {
                emit(None, f64::from(n));
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_hook_failures_total", "counter"),
        "Event hooks of the agent that exited non-zero or were killed at their timeout.",
        &agents,
        |row, emit| {
            if let Some(n) = row.record.as_ref().and_then(|r| r.lifecycle.hook_failures) {
                emit(None, f64::from(n));
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_hook_dropped_total", "counter"),
        "Events of the agent no hook ran for: its queue of hooks was full.",
        &agents,
        |row, emit| {
            if let Some(n) = row.record.as_ref().and_then(|r| r.lifecycle.hook_dropped) {
                emit(None, f64::from(n));
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_activity", "gauge"),
        "While the agent is ok and on a terminal, its activity as a state set: busy (output \
         within the idle threshold), idle, or waiting (it rang the bell since its last output).",
        &agents,
        |row, emit| {
            if let Some((now, _)) = row.activity {
                for activity in Activity::ALL {
                    emit(
                        Some(("activity", activity.as_str())),
                        f64::from(u8::from(now == activity)),
                    );
                }
            }
        },
    );
    family(
        &mut out,
        ("mosaic_agent_activity_since_timestamp_seconds", "gauge"),
        "When the agent's current activity began, in seconds since the Unix epoch.",
        &agents,
        |row, emit| {
            let since = row
                .activity
                .and(row.record.as_ref().and_then(|r| r.activity_since));
            if let Some(since) = since {
                emit(None, since.timestamp_millis() as f64 / 1000.0);
            }
        },
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// One family: HELP, TYPE, then the samples `samples` emits for each agent, each with an
/// optional label of its own (`state`, `activity`).
fn family(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    agents: &[(&str, &Row)],
    samples: impl Fn(&Row, &mut dyn FnMut(Option<(&str, &str)>, f64)),
) {
    header(out, name, kind, help);
    for (fleet, row) in agents {
        samples(row, &mut |label, value| {
            out.push_str(name);
            out.push_str("{fleet=");
            label_value(out, fleet);
            out.push_str(",agent=");
            label_value(out, &row.agent);
            if let Some((key, value)) = label {
                let _ = write!(out, ",{key}=\"{value}\"");
            }
            let _ = writeln!(out, "}} {value}");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use crate::status::classify::tests::{record, row, with_activity};

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        label_value(&mut out, "a\\b\"c\nd\té");
        assert_eq!(out, "\"a\\\\b\\\"c\\nd\té\"");
    }

    #[test]
    fn every_family_with_fleet_and_agent_labels() {
        let mut restarted = record(Status::Restarting, 1500, Some(1.0));
        restarted.lifecycle.restarts = Some(2);
        restarted.lifecycle.hook_failures = Some(1);
        restarted.lifecycle.hook_dropped = Some(0);
        let waiting = with_activity(record(Status::Ok, 1500, Some(1.0)), Activity::Waiting, 180);
        // A stopped agent's last activity is history: no activity series.
        let stopped = with_activity(record(Status::Stopped, 2000, None), Activity::Busy, 5);
        let rows = [
            row(b"a\"b", Ok(waiting)),
            row(b"c", Ok(stopped)),
            row(b"d", Err("empty file".into())),
            row(b"r", Ok(restarted)),
        ];
        let text = prometheus(&[
            Fleet {
                label: "/run/x",
                rows: Some(&rows[..2]),
            },
            Fleet {
                label: "two",
                rows: Some(&rows[2..]),
            },
            Fleet {
                label: "gone",
                rows: None,
            },
        ]);
        let state_set = |fleet: &str, agent: &str, on: &str| -> String {
            State::ALL
                .iter()
                .map(|s| {
                    let v = u8::from(s.as_str() == on);
                    format!(
                        "mosaic_agent_state{{fleet=\"{fleet}\",agent=\"{agent}\",state=\"{}\"}} {v}\n",
                        s.as_str()
                    )
                })
                .collect()
        };
        // 2026-11-26T02:21:05Z is 1795659665 s after the epoch.
        let expected = format!(
            "\
# HELP mosaic_fleet_up 1 when the heartbeat directory was read, else 0.
# TYPE mosaic_fleet_up gauge
mosaic_fleet_up{{fleet=\"/run/x\"}} 1
mosaic_fleet_up{{fleet=\"two\"}} 1
mosaic_fleet_up{{fleet=\"gone\"}} 0
# HELP mosaic_agent_up 1 when the agent is running and its heartbeat is current (state ok), else 0.
# TYPE mosaic_agent_up gauge
mosaic_agent_up{{fleet=\"/run/x\",agent=\"a\\\"b\"}} 1
mosaic_agent_up{{fleet=\"/run/x\",agent=\"c\"}} 0
mosaic_agent_up{{fleet=\"two\",agent=\"d\"}} 0
mosaic_agent_up{{fleet=\"two\",agent=\"r\"}} 0
# HELP mosaic_agent_failing 1 when the agent is stale, exited (not with status 0), failed or invalid (what status --check fails on); 0 when ok, restarting or deliberately stopped.
# TYPE mosaic_agent_failing gauge
mosaic_agent_failing{{fleet=\"/run/x\",agent=\"a\\\"b\"}} 0
mosaic_agent_failing{{fleet=\"/run/x\",agent=\"c\"}} 0
mosaic_agent_failing{{fleet=\"two\",agent=\"d\"}} 1
mosaic_agent_failing{{fleet=\"two\",agent=\"r\"}} 0
# HELP mosaic_agent_state The agent's state as a state set: 1 for the state it is in, 0 for every other.
# TYPE mosaic_agent_state gauge
{}{}{}{}\
# HELP mosaic_agent_heartbeat_timestamp_seconds When the agent's last heartbeat record was written, in seconds since the Unix epoch.
# TYPE mosaic_agent_heartbeat_timestamp_seconds gauge
mosaic_agent_heartbeat_timestamp_seconds{{fleet=\"/run/x\",agent=\"a\\\"b\"}} 1795659663.5
mosaic_agent_heartbeat_timestamp_seconds{{fleet=\"/run/x\",agent=\"c\"}} 1795659663
mosaic_agent_heartbeat_timestamp_seconds{{fleet=\"two\",agent=\"r\"}} 1795659663.5
# HELP mosaic_agent_heartbeat_interval_seconds Seconds between the agent's heartbeats (30 when its record does not say).
# TYPE mosaic_agent_heartbeat_interval_seconds gauge
mosaic_agent_heartbeat_interval_seconds{{fleet=\"/run/x\",agent=\"a\\\"b\"}} 1
mosaic_agent_heartbeat_interval_seconds{{fleet=\"/run/x\",agent=\"c\"}} 30
mosaic_agent_heartbeat_interval_seconds{{fleet=\"two\",agent=\"r\"}} 1
# HELP mosaic_agent_restarts_total Restarts of the agent by its sidecar's restart policy.
# TYPE mosaic_agent_restarts_total counter
mosaic_agent_restarts_total{{fleet=\"two\",agent=\"r\"}} 2
# HELP mosaic_agent_hook_failures_total Event hooks of the agent that exited non-zero or were killed at their timeout.
# TYPE mosaic_agent_hook_failures_total counter
mosaic_agent_hook_failures_total{{fleet=\"two\",agent=\"r\"}} 1
# HELP mosaic_agent_hook_dropped_total Events of the agent no hook ran for: its queue of hooks was full.
# TYPE mosaic_agent_hook_dropped_total counter
mosaic_agent_hook_dropped_total{{fleet=\"two\",agent=\"r\"}} 0
# HELP mosaic_agent_activity While the agent is ok and on a terminal, its activity as a state set: busy (output within the idle threshold), idle, or waiting (it rang the bell since its last output).
# TYPE mosaic_agent_activity gauge
mosaic_agent_activity{{fleet=\"/run/x\",agent=\"a\\\"b\",activity=\"busy\"}} 0
mosaic_agent_activity{{fleet=\"/run/x\",agent=\"a\\\"b\",activity=\"idle\"}} 0
mosaic_agent_activity{{fleet=\"/run/x\",agent=\"a\\\"b\",activity=\"waiting\"}} 1
# HELP mosaic_agent_activity_since_timestamp_seconds When the agent's current activity began, in seconds since the Unix epoch.
# TYPE mosaic_agent_activity_since_timestamp_seconds gauge
mosaic_agent_activity_since_timestamp_seconds{{fleet=\"/run/x\",agent=\"a\\\"b\"}} 1795659485
",
            state_set("/run/x", "a\\\"b", "ok"),
            state_set("/run/x", "c", "stopped"),
            state_set("two", "d", "invalid"),
            state_set("two", "r", "restarting"),
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn never_repeats_a_series() {
        let rows = [
            row(b"x\xfe", Ok(record(Status::Ok, 0, None))),
            row(b"x\xff", Err("empty file".into())),
        ];
        let fleet = |label| Fleet {
            label,
            rows: Some(&rows),
        };
        let text = prometheus(&[fleet("f"), fleet("f"), fleet("g")]);
        assert_eq!(text.matches("mosaic_agent_up{").count(), 2, "{text}");
        assert_eq!(text.matches("mosaic_fleet_up{").count(), 2, "{text}");
    }
}
