/*!
The heartbeat file format: how a beat is rendered and how a file is read back.

```text
ts=2026-11-26T02:21:05.123Z   UTC, RFC 3339 with milliseconds, when this record was written
pid=4242                      the watched process
status=ok                     ok | exited | stopped | restarting | failed
agent=builder-1               the agent's name (when given)
interval=30                   seconds between beats
seq=17                        records written so far by this sidecar
hb_pid=4243                   the sidecar's own pid
started=123456                the target's start time (clock ticks since boot; /proc/PID/stat)
restarts=2                    restarts so far (only under a restart policy)
exit_status=1                 how the agent's last process ended, when known: its exit status
exit_signal=9                 ... or the signal that killed it
restart_at=2026-11-26T02:21:09.123Z  when the next restart is due (status=restarting)
reaped=2                      processes the dead agent left in its session that the sidecar
                              ended (`--reap`; see `teardown`)
hook_failures=1               event hooks that failed or were killed at their timeout
hook_dropped=0                events no hook ran for: the queue was full (`--on-event`)
activity=busy                 busy | idle | waiting, with status=ok when the target has a terminal
activity_since=2026-11-26T02:20:51.000Z   when that activity began (see `activity`)
```

`restarting` and `failed` come from supervision ([`crate::supervise`]): the agent died and a
restart is due at `restart_at`, or it died too often and was given up.

The first three lines are the bash original's contract and keep their order; readers must
ignore keys they do not know. Rendering reuses one buffer and never allocates once it is warm.
*/

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::activity::Activity;

/// What a record says about its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The target was alive when the record was written.
    Ok,
    /// The target is gone (exited, became a zombie, or its PID now names another process).
    Exited,
    /// The sidecar was told to stop (SIGTERM, SIGINT or SIGHUP) while the target lived.
    Stopped,
    /// The target died and its restart policy starts it again at `restart_at`.
    Restarting,
    /// The target died too often in too short a time: supervision gave up.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Exited => "exited",
            Status::Stopped => "stopped",
            Status::Restarting => "restarting",
            Status::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "ok" => Some(Status::Ok),
            "exited" => Some(Status::Exited),
            "stopped" => Some(Status::Stopped),
            "restarting" => Some(Status::Restarting),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// The keys a restart policy and a known death add; all absent by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// `restarts=`: how many times the agent was restarted by its sidecar.
    pub restarts: Option<u32>,
    /// `exit_status=`: the last process's exit status, when it exited and tmux said so.
    pub exit_status: Option<i32>,
    /// `exit_signal=`: the signal that killed the last process.
    pub exit_signal: Option<i32>,
    /// `restart_at=`: when the pending restart is due.
    pub restart_at: Option<DateTime<Utc>>,
    /// `reaped=`: how many processes the agent's last death left in its session that the
    /// sidecar ended (`--reap`; see `teardown`).
    pub reaped: Option<u32>,
    /// `hook_failures=`: event hooks that exited non-zero or were killed at their timeout
    /// (only with `--on-event`).
    pub hook_failures: Option<u32>,
    /// `hook_dropped=`: events whose hook never ran, the queue being full.
    pub hook_dropped: Option<u32>,
}

/// The fields of one record, as the sidecar knows them.
#[derive(Clone, Debug)]
pub struct Beat<'a> {
    pub pid: i32,
    pub status: Status,
    pub agent: Option<&'a str>,
    pub interval: Duration,
    pub seq: u64,
    pub hb_pid: i32,
    pub started: Option<u64>,
    pub lifecycle: Lifecycle,
    /// The activity and when it began: only for a target with a terminal.
    pub activity: Option<(Activity, DateTime<Utc>)>,
}

/// Renders `beat`, stamped `now`, into `buf` (cleared first).
pub fn render(buf: &mut Vec<u8>, now: DateTime<Utc>, beat: &Beat) {
    buf.clear();
    buf.extend_from_slice(b"ts=");
    rfc3339_millis(buf, now);
    // Writing to a Vec cannot fail.
    let _ = write!(buf, "\npid={}\nstatus={}\n", beat.pid, beat.status.as_str(),);
    if let Some(agent) = beat.agent {
        let _ = writeln!(buf, "agent={agent}");
    }
    let _ = write!(
        buf,
        "interval={}\nseq={}\nhb_pid={}\n",
        beat.interval.as_secs_f64(),
        beat.seq,
        beat.hb_pid
    );
    if let Some(started) = beat.started {
        let _ = writeln!(buf, "started={started}");
    }
    let life = &beat.lifecycle;
    if let Some(restarts) = life.restarts {
        let _ = writeln!(buf, "restarts={restarts}");
    }
    if let Some(code) = life.exit_status {
        let _ = writeln!(buf, "exit_status={code}");
    }
    if let Some(sig) = life.exit_signal {
        let _ = writeln!(buf, "exit_signal={sig}");
    }
    if let Some(at) = life.restart_at {
        buf.extend_from_slice(b"restart_at=");
        rfc3339_millis(buf, at);
        buf.push(b'\n');
    }
    if let Some(n) = life.reaped {
        let _ = writeln!(buf, "reaped={n}");
    }
    if let Some(n) = life.hook_failures {
        let _ = writeln!(buf, "hook_failures={n}");
    }
    if let Some(n) = life.hook_dropped {
        let _ = writeln!(buf, "hook_dropped={n}");
    }
    if let Some((activity, since)) = beat.activity {
        let _ = write!(buf, "activity={}\nactivity_since=", activity.as_str());
        rfc3339_millis(buf, since);
        buf.push(b'\n');
    }
}

/// `2026-11-26T02:21:05.123Z`, written without allocating.
fn rfc3339_millis(buf: &mut Vec<u8>, at: DateTime<Utc>) {
    // The leap-second representation can push nanoseconds past 1e9; clamp to .999.
    let millis = (at.nanosecond() / 1_000_000).min(999);
    let _ = write!(
        buf,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        millis,
    );
}

/// A heartbeat file as read back by a reader.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub ts: DateTime<Utc>,
    pub pid: i32,
    pub status: Status,
    pub agent: Option<String>,
    /// Seconds, when the file says.
    pub interval: Option<f64>,
    pub seq: Option<u64>,
    pub hb_pid: Option<i32>,
    pub started: Option<u64>,
    pub lifecycle: Lifecycle,
    /// `activity=`; a value this reader does not know counts as absent.
    pub activity: Option<Activity>,
    pub activity_since: Option<DateTime<Utc>>,
}

/// The record in heartbeat file `path`, if it holds a valid one (for a quick look; `status`
/// reads a directory through its own descriptors).
pub fn read(path: &std::path::Path) -> Option<Record> {
    parse(&std::fs::read(path).ok()?).ok()
}

/// Parses a heartbeat file. Unknown keys are ignored; a missing or malformed `ts`, `pid` or
/// `status`, or bytes that are not UTF-8, make the file invalid, with the reason.
pub fn parse(bytes: &[u8]) -> Result<Record, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let (mut ts, mut pid, mut status) = (None, None, None);
    let (mut agent, mut interval, mut seq, mut hb_pid, mut started) =
        (None, None, None, None, None);
    let mut lifecycle = Lifecycle::default();
    let (mut activity, mut activity_since) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(format!("line without '=': {:?}", clip(line)));
        };
        let bad = |what: &str| format!("malformed {key}: {:?} ({what})", clip(value));
        match key {
            "ts" => {
                let parsed =
                    DateTime::parse_from_rfc3339(value).map_err(|_| bad("not RFC 3339"))?;
                ts = Some(parsed.with_timezone(&Utc));
            }
            "pid" => {
                pid = Some(crate::validate::pid(value).map_err(|_| bad("not a pid"))?);
            }
            "status" => {
                status = Some(Status::parse(value).ok_or_else(|| bad("unknown status"))?);
            }
            "agent" => agent = Some(value.to_string()),
            "interval" => {
                let secs: f64 = value.parse().map_err(|_| bad("not a number"))?;
                if !secs.is_finite() || secs <= 0.0 {
                    return Err(bad("not a positive number"));
                }
                interval = Some(secs);
            }
            "seq" => seq = Some(value.parse().map_err(|_| bad("not a count"))?),
            "hb_pid" => hb_pid = Some(value.parse().map_err(|_| bad("not a pid"))?),
            "started" => started = Some(value.parse().map_err(|_| bad("not a number"))?),
            "restarts" => lifecycle.restarts = Some(value.parse().map_err(|_| bad("not a count"))?),
            "reaped" => lifecycle.reaped = Some(value.parse().map_err(|_| bad("not a count"))?),
            "hook_failures" => {
                lifecycle.hook_failures = Some(value.parse().map_err(|_| bad("not a count"))?)
            }
            "hook_dropped" => {
                lifecycle.hook_dropped = Some(value.parse().map_err(|_| bad("not a count"))?)
            }
            "exit_status" => {
                lifecycle.exit_status = Some(value.parse().map_err(|_| bad("not a number"))?)
            }
            "exit_signal" => {
                lifecycle.exit_signal = Some(value.parse().map_err(|_| bad("not a number"))?)
            }
            "restart_at" => {
                let parsed =
                    DateTime::parse_from_rfc3339(value).map_err(|_| bad("not RFC 3339"))?;
                lifecycle.restart_at = Some(parsed.with_timezone(&Utc));
            }
            "activity" => activity = Activity::parse(value),
            "activity_since" => {
                let parsed =
                    DateTime::parse_from_rfc3339(value).map_err(|_| bad("not RFC 3339"))?;
                activity_since = Some(parsed.with_timezone(&Utc));
            }
            _ => {}
        }
    }
    Ok(Record {
        ts: ts.ok_or("missing ts")?,
        pid: pid.ok_or("missing pid")?,
        status: status.ok_or("missing status")?,
        agent,
        interval,
        seq,
        hb_pid,
        started,
        lifecycle,
        activity,
        activity_since,
    })
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn beat(status: Status) -> Beat<'static> {
        Beat {
            pid: 42,
            status,
            agent: Some("a-1"),
            interval: Duration::from_millis(500),
            seq: 7,
            hb_pid: 43,
            started: Some(99),
            lifecycle: Lifecycle::default(),
            activity: None,
        }
    }

    #[test]
    fn render_matches_the_contract() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 2, 21, 5).unwrap()
            + chrono::Duration::milliseconds(123);
        let mut buf = Vec::new();
        render(&mut buf, now, &beat(Status::Ok));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "ts=2026-11-26T02:21:05.123Z\npid=42\nstatus=ok\nagent=a-1\ninterval=0.5\nseq=7\nhb_pid=43\nstarted=99\n"
        );
    }

    #[test]
    fn parse_reads_what_render_writes() {
        let mut buf = Vec::new();
        for status in [
            Status::Ok,
            Status::Exited,
            Status::Stopped,
            Status::Restarting,
            Status::Failed,
        ] {
            let now = Utc::now();
            render(&mut buf, now, &beat(status));
            let rec = parse(&buf).unwrap();
            assert_eq!(rec.status, status);
            assert_eq!(rec.pid, 42);
            assert_eq!(rec.interval, Some(0.5));
            assert_eq!(rec.seq, Some(7));
            assert_eq!(rec.agent.as_deref(), Some("a-1"));
            assert_eq!(rec.ts.timestamp_millis(), now.timestamp_millis());
        }
    }

    #[test]
    fn lifecycle_keys_round_trip() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 2, 21, 9).unwrap()
            + chrono::Duration::milliseconds(7);
        let mut b = beat(Status::Restarting);
        b.lifecycle = Lifecycle {
            restarts: Some(3),
            exit_status: None,
            exit_signal: Some(9),
            restart_at: Some(at),
            reaped: Some(2),
            hook_failures: Some(4),
            hook_dropped: Some(0),
        };
        let mut buf = Vec::new();
        render(&mut buf, at, &b);
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.ends_with(
                "started=99\nrestarts=3\nexit_signal=9\nrestart_at=2026-11-26T02:21:09.007Z\nreaped=2\nhook_failures=4\nhook_dropped=0\n"
            ),
            "{text}"
        );
        assert_eq!(parse(&buf).unwrap().lifecycle, b.lifecycle);
        let bad = b"ts=2026-11-26T02:21:05Z\npid=1\nstatus=failed\nrestarts=-1\n";
        assert!(parse(bad).unwrap_err().contains("malformed restarts"));
    }

    #[test]
    fn parse_reads_the_bash_original() {
        let rec = parse(b"ts=2026-11-26T02:21:05Z\npid=5\nstatus=ok\n").unwrap();
        assert_eq!((rec.pid, rec.status, rec.interval), (5, Status::Ok, None));
    }

    #[test]
    fn parse_gives_reasons() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "empty"),
            (b"\xff\xfe", "UTF-8"),
            (b"pid=1\nstatus=ok\n", "missing ts"),
            (b"ts=yesterday\npid=1\nstatus=ok\n", "RFC 3339"),
            (b"ts=2026-11-26T02:21:05Z\nstatus=ok\n", "missing pid"),
            (
                b"ts=2026-11-26T02:21:05Z\npid=1\nstatus=fine\n",
                "unknown status",
            ),
            (
                b"ts=2026-11-26T02:21:05Z\npid=1\nstatus=ok\ngarbage\n",
                "without '='",
            ),
        ];
        for (input, reason) in cases {
            let err = parse(input).unwrap_err();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }
}
