/*!
Classification: what a heartbeat file says about its agent, as one [`State`] per [`Row`].

| state     | the file says   | and                                                        |
|-----------|-----------------|------------------------------------------------------------|
| `ok`      | `status=ok`     | `ts` is within N intervals of now (N = `--stale-after`)    |
| `stale`   | `status=ok`     | it is not: the sidecar is gone or stuck                    |
|           | `status=restarting` | likewise: the sidecar beats while a restart is due     |
| `restarting` | `status=restarting` | fresh: dead, its restart policy restarts it at `restart_at` |
| `exited`  | `status=exited` |                                                            |
| `failed`  | `status=failed` | dead too often: supervision gave up (see `supervise`)      |
| `stopped` | `status=stopped`|                                                            |
| `invalid` | anything else   | with the reason: unreadable, too large, does not parse     |

The interval is the file's own `interval=`, else [`DEFAULT_INTERVAL`].
*/

use chrono::{DateTime, Utc};

use super::scan::Reading;
use crate::record::{Record, Status};

/// Seconds between beats assumed for a record without `interval=` (the bash original wrote
/// none, and beat every 30 seconds, as the sidecar does by default).
pub const DEFAULT_INTERVAL: f64 = 30.0;

/// An agent's state. The order is the summary line's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Ok,
    Stale,
    /// Dead, and its restart policy starts it again soon (the sidecar still beats).
    Restarting,
    Exited,
    /// Dead too often: supervision gave up until someone restarts it.
    Failed,
    Stopped,
    Invalid,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Ok,
        State::Stale,
        State::Restarting,
        State::Exited,
        State::Failed,
        State::Stopped,
        State::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Stale => "stale",
            State::Exited => "exited",
            State::Stopped => "stopped",
            State::Restarting => "restarting",
            State::Failed => "failed",
            State::Invalid => "invalid",
        }
    }
}

/// One agent: one heartbeat file.
#[derive(Clone, Debug)]
pub struct Row {
    /// The file name without `.hb`, as the directory holds it: the sort key, and lossless.
    pub name: Vec<u8>,
    /// The name for display; bytes that are not UTF-8 become U+FFFD.
    pub agent: String,
    pub state: State,
    /// The record, when the file parses.
    pub record: Option<Record>,
    /// Seconds from the record's `ts` to now; negative when `ts` is in the future.
    pub age: Option<f64>,
    /// Why the file is invalid.
    pub reason: Option<String>,
}

impl Row {
    /// The row for heartbeat file `name` (without `.hb`) as read at `now`.
    pub fn new(name: Vec<u8>, read: Reading, now: DateTime<Utc>, stale_after: f64) -> Row {
        let agent = String::from_utf8_lossy(&name).into_owned();
        match read {
            Ok(record) => Row {
                name,
                agent,
                state: classify(&record, now, stale_after),
                age: Some(age(record.ts, now)),
                record: Some(record),
                reason: None,
            },
            Err(reason) => Row {
                name,
                agent,
                state: State::Invalid,
                record: None,
                age: None,
                reason: Some(reason),
            },
        }
    }
}

/// Seconds from `ts` to `now`, to the millisecond.
fn age(ts: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    now.signed_duration_since(ts).num_milliseconds() as f64 / 1000.0
}

/// The state of a record that parses, read at `now`.
pub fn classify(record: &Record, now: DateTime<Utc>, stale_after: f64) -> State {
    match record.status {
        Status::Exited => State::Exited,
        Status::Stopped => State::Stopped,
        Status::Failed => State::Failed,
        // Both are kept fresh by a live sidecar: an old one means the sidecar is gone.
        Status::Ok | Status::Restarting => {
            let window = stale_after * record.interval.unwrap_or(DEFAULT_INTERVAL);
            // A beat from further in the future than the window cannot be vouched for either:
            // a live sidecar (its timer is monotonic) would have replaced it within one
            // interval, so the clock was stepped back or no sidecar wrote it.
            if age(record.ts, now).abs() > window {
                State::Stale
            } else if record.status == Status::Restarting {
                State::Restarting
            } else {
                State::Ok
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 2, 21, 5).unwrap()
    }

    pub fn record(status: Status, age_ms: i64, interval: Option<f64>) -> Record {
        Record {
            ts: now() - chrono::Duration::milliseconds(age_ms),
            pid: 42,
            status,
            agent: None,
            interval,
            seq: None,
            hb_pid: None,
            started: None,
            lifecycle: Default::default(),
        }
    }

    pub fn row(name: &[u8], read: Reading) -> Row {
        Row::new(name.to_vec(), read, now(), 3.0)
    }

    #[test]
    fn ok_until_n_intervals_then_stale() {
        let state = |age_ms, interval, n| classify(&record(Status::Ok, age_ms, interval), now(), n);
        assert_eq!(state(0, Some(1.0), 3.0), State::Ok);
        assert_eq!(state(3000, Some(1.0), 3.0), State::Ok, "the boundary is ok");
        assert_eq!(state(3001, Some(1.0), 3.0), State::Stale);
        assert_eq!(
            state(3001, Some(1.0), 4.0),
            State::Ok,
            "--stale-after counts"
        );
        assert_eq!(state(600, Some(0.2), 3.0), State::Ok);
        assert_eq!(state(601, Some(0.2), 3.0), State::Stale);
    }

    #[test]
    fn records_without_an_interval_get_thirty_seconds() {
        let state = |age_ms| classify(&record(Status::Ok, age_ms, None), now(), 3.0);
        assert_eq!(state(90_000), State::Ok);
        assert_eq!(state(90_001), State::Stale);
    }

    #[test]
    fn a_beat_far_in_the_future_is_stale() {
        let state = |age_ms| classify(&record(Status::Ok, age_ms, Some(1.0)), now(), 3.0);
        assert_eq!(state(-2000), State::Ok);
        assert_eq!(state(-3_600_000), State::Stale);
    }

    #[test]
    fn exited_and_stopped_are_final_whatever_their_age() {
        for age_ms in [0, 10_000_000] {
            let rec = record(Status::Exited, age_ms, Some(1.0));
            assert_eq!(classify(&rec, now(), 3.0), State::Exited);
            let rec = record(Status::Stopped, age_ms, Some(1.0));
            assert_eq!(classify(&rec, now(), 3.0), State::Stopped);
            let rec = record(Status::Failed, age_ms, Some(1.0));
            assert_eq!(classify(&rec, now(), 3.0), State::Failed);
        }
    }

    #[test]
    fn restarting_is_kept_fresh_like_ok() {
        let state = |age_ms| classify(&record(Status::Restarting, age_ms, Some(1.0)), now(), 3.0);
        assert_eq!(state(3000), State::Restarting);
        assert_eq!(state(3001), State::Stale, "its sidecar is gone");
    }
}
