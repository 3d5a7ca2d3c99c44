/*!
Classification: what a heartbeat file says about its agent, as one [`State`] per [`Row`].

| state        | the file says        | and                                                         |
|--------------|----------------------|-------------------------------------------------------------|
| `ok`         | `status=ok`          | a sidecar keeps it, and `ts` is within N intervals of now     |
| `stale`      | `status=ok`          | the sidecar is gone (its lock is free), or its beats are late |
|              | `status=restarting`  | likewise: the sidecar beats while a restart is due            |
| `restarting` | `status=restarting`  | fresh: dead, its restart policy restarts it at `restart_at`   |
| `exited`     | `status=exited`      |                                                             |
| `failed`     | `status=failed`      | dead too often: supervision gave up (see `supervise`)         |
| `stopped`    | `status=stopped`     |                                                             |
| `invalid`    | anything else        | with the reason: unreadable, too large, does not parse, a     |
|              |                      | value outside what the writer itself accepts (`interval=1e308`) |

N is `--stale-after` (3). The interval is the file's own `interval=`, else
[`DEFAULT_INTERVAL`].

# Stale: by the lock here, by age everywhere

A reader on the sidecar's host knows at once when the sidecar is gone: the kernel drops its
lock ([`Keeper`], probed by the scanner). So a `status=ok` record whose lock is free is stale
the moment it is read, at any interval. A sidecar that is there but does not beat (stopped by
`SIGSTOP`, hung, its machine suspended) still holds its lock; its beats are late, and late
beats (`ts` more than N intervals ago) are stale too. That is also the only rule a remote
reader has (Prometheus computes it from the timestamp and interval), so both agree on every
sidecar that is stopped or hung, and the local reader is merely faster for one that is gone.

`exited` and `stopped` are final: what the sidecar wrote last, whatever became of it since.
*/

use chrono::{DateTime, Utc};

use super::scan::{Keeper, Reading};
use crate::activity::Activity;
use crate::record::{Record, Status};
use crate::validate;

/// Seconds between beats assumed for a record without `interval=` (the bash original wrote
/// none, and beat every 30 seconds, as the sidecar does by default).
pub const DEFAULT_INTERVAL: f64 = 30.0;

/// How many of its intervals a beat may be old before its record is stale: `--stale-after`'s
/// default, and the rule `ls` and the launcher's keeper apply.
pub const STALE_AFTER: f64 = 3.0;

/// The one staleness rule: the age in seconds of the beat of `record` at `now`, when that is
/// more than `stale_after` of its intervals (either way: a beat from the future cannot be
/// vouched for either, as a live sidecar's timer is monotonic). `None`: on time.
pub fn late(record: &Record, now: DateTime<Utc>, stale_after: f64) -> Option<f64> {
    let interval = record.interval.unwrap_or(DEFAULT_INTERVAL);
    let age = age(record.ts, now);
    (age.abs() > stale_after * interval).then_some(age)
}

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

    /// Whether `--check` fails for an agent in this state, and an alert should fire: it is
    /// `stale`, `exited`, `failed` or `invalid`, something nobody asked for. A `stopped` agent
    /// was stopped on purpose; a `restarting` one is in its restart policy's hands.
    pub fn is_failing(self) -> bool {
        match self {
            State::Ok | State::Restarting | State::Stopped => false,
            State::Stale | State::Exited | State::Failed | State::Invalid => true,
        }
    }

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
    /// Why the file is invalid, or why the agent is stale.
    pub reason: Option<String>,
    /// What this host could tell about the file's sidecar when it was read.
    pub keeper: Keeper,
    /// The agent's activity and the seconds since it began, while the agent is `ok` (the
    /// last activity of a stale or dead agent says nothing about now).
    pub activity: Option<(Activity, f64)>,
}

impl Row {
    /// Whether `--check` fails for this agent, and an alert should fire: its state is failing
    /// ([`State::is_failing`]), unless it is `exited` with exit status 0. A run that ended by
    /// itself with success finished its work (systemd's `inactive`, not `failed`); a run that
    /// ended with another status or a signal, or whose ending nobody saw, did not.
    pub fn is_failing(&self) -> bool {
        let succeeded = self.state == State::Exited
            && self
                .record
                .as_ref()
                .is_some_and(|r| r.lifecycle.exit_status == Some(0));
        self.state.is_failing() && !succeeded
    }

    /// The row for heartbeat file `name` (without `.hb`) as read at `now`, its sidecar as
    /// `keeper` says.
    pub fn new(
        name: Vec<u8>,
        read: Reading,
        keeper: Keeper,
        now: DateTime<Utc>,
        stale_after: f64,
    ) -> Row {
        let agent = String::from_utf8_lossy(&name).into_owned();
        match read {
            Ok(record) => {
                let (state, reason) = classify(&record, keeper, now, stale_after);
                let activity = match (state, record.activity, record.activity_since) {
                    (State::Ok, Some(activity), Some(since)) => Some((activity, age(since, now))),
                    _ => None,
                };
                Row {
                    name,
                    agent,
                    state,
                    age: Some(age(record.ts, now)),
                    record: Some(record),
                    reason,
                    keeper,
                    activity,
                }
            }
            Err(reason) => Row {
                name,
                agent,
                state: State::Invalid,
                record: None,
                age: None,
                reason: Some(reason),
                keeper,
                activity: None,
            },
        }
    }
}

/// Seconds from `ts` to `now`, to the millisecond.
fn age(ts: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    now.signed_duration_since(ts).num_milliseconds() as f64 / 1000.0
}

/// The state of a record that parses, read at `now` with its sidecar as `keeper` says, and
/// the reason when it is `stale` or `invalid`.
pub fn classify(
    record: &Record,
    keeper: Keeper,
    now: DateTime<Utc>,
    stale_after: f64,
) -> (State, Option<String>) {
    if let Err(reason) = in_range(record) {
        return (State::Invalid, Some(reason));
    }
    match record.status {
        Status::Exited => return (State::Exited, None),
        Status::Stopped => return (State::Stopped, None),
        Status::Failed => return (State::Failed, None),
        // Both are kept fresh by a live sidecar: a free lock or an old beat means it is gone.
        Status::Ok | Status::Restarting => {}
    }
    match keeper {
        Keeper::LockFree => return (State::Stale, Some("sidecar gone (its lock is free)".into())),
        Keeper::PidGone(pid) => {
            return (
                State::Stale,
                Some(format!("sidecar gone (hb_pid {pid} is not running)")),
            )
        }
        Keeper::Held | Keeper::Unknown => {}
    }
    let interval = record.interval.unwrap_or(DEFAULT_INTERVAL);
    let Some(age) = late(record, now, stale_after) else {
        return match record.status {
            Status::Restarting => (State::Restarting, None),
            _ => (State::Ok, None),
        };
    };
    if age < 0.0 {
        let ahead = -age;
        (
            State::Stale,
            Some(format!("last beat is {ahead}s in the future")),
        )
    } else {
        let why = match keeper {
            Keeper::Held => "sidecar stopped or hung",
            _ => "sidecar gone or stuck",
        };
        (
            State::Stale,
            Some(format!(
                "no beat for {age}s (over {stale_after} × {interval}s): {why}"
            )),
        )
    }
}

/// Whether every value in `record` is one its writer could have written: what the sidecar
/// refuses to take as an argument, a reader refuses to believe from a file (an interval of
/// 1e308 seconds would keep a dead agent `ok` forever).
fn in_range(record: &Record) -> Result<(), String> {
    if let Some(secs) = record.interval {
        if !(validate::INTERVAL_MIN..=validate::INTERVAL_MAX).contains(&secs) {
            // `{:e}` for the absurd: 1e308 written out is 309 digits.
            let shown = if (1e-3..1e9).contains(&secs) {
                format!("{secs}")
            } else {
                format!("{secs:e}")
            };
            return Err(format!(
                "interval={shown} is outside the writer's range ({} to {} seconds)",
                validate::INTERVAL_MIN,
                validate::INTERVAL_MAX
            ));
        }
    }
    if let Some(pid) = record.hb_pid {
        if pid <= 0 {
            return Err(format!("hb_pid={pid} is not a process id"));
        }
    }
    if let Some(agent) = &record.agent {
        validate::agent(agent).map_err(|e| format!("agent= {e}"))?;
    }
    Ok(())
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
            activity: None,
            activity_since: None,
        }
    }

    /// `record`, reporting `activity` since `secs` before [`now`].
    pub fn with_activity(mut record: Record, activity: Activity, secs: i64) -> Record {
        record.activity = Some(activity);
        record.activity_since = Some(now() - chrono::Duration::seconds(secs));
        record
    }

    pub fn row(name: &[u8], read: Reading) -> Row {
        Row::new(name.to_vec(), read, Keeper::Unknown, now(), 3.0)
    }

    fn state(record: &Record, keeper: Keeper) -> State {
        classify(record, keeper, now(), 3.0).0
    }

    #[test]
    fn ok_until_n_intervals_then_stale() {
        let state = |age_ms, interval, n| {
            classify(
                &record(Status::Ok, age_ms, interval),
                Keeper::Held,
                now(),
                n,
            )
            .0
        };
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
        let state = |age_ms| state(&record(Status::Ok, age_ms, None), Keeper::Unknown);
        assert_eq!(state(90_000), State::Ok);
        assert_eq!(state(90_001), State::Stale);
    }

    #[test]
    fn a_beat_far_in_the_future_is_stale() {
        let state = |age_ms| state(&record(Status::Ok, age_ms, Some(1.0)), Keeper::Held);
        assert_eq!(state(-2000), State::Ok);
        assert_eq!(state(-3_600_000), State::Stale);
    }

    #[test]
    fn an_exit_with_status_0_is_not_failing() {
        let row_of = |status: i32| {
            let mut rec = record(Status::Exited, 0, Some(1.0));
            rec.lifecycle.exit_status = Some(status);
            Row::new(b"a".to_vec(), Ok(rec), Keeper::Unknown, now(), STALE_AFTER)
        };
        assert_eq!(row_of(0).state, State::Exited);
        assert!(!row_of(0).is_failing());
        assert!(row_of(1).is_failing());
        let unknown = Row::new(
            b"a".to_vec(),
            Ok(record(Status::Exited, 0, Some(1.0))),
            Keeper::Unknown,
            now(),
            STALE_AFTER,
        );
        assert!(unknown.is_failing());
    }

    #[test]
    fn exited_and_stopped_are_final_whatever_their_age() {
        for age_ms in [0, 10_000_000] {
            for keeper in [Keeper::Held, Keeper::LockFree, Keeper::Unknown] {
                let rec = record(Status::Exited, age_ms, Some(1.0));
                assert_eq!(state(&rec, keeper), State::Exited);
                let rec = record(Status::Stopped, age_ms, Some(1.0));
                assert_eq!(state(&rec, keeper), State::Stopped);
                let rec = record(Status::Failed, age_ms, Some(1.0));
                assert_eq!(state(&rec, keeper), State::Failed);
            }
        }
    }

    #[test]
    fn restarting_is_kept_fresh_like_ok() {
        let state = |age_ms| state(&record(Status::Restarting, age_ms, Some(1.0)), Keeper::Held);
        assert_eq!(state(3000), State::Restarting);
        assert_eq!(state(3001), State::Stale, "its sidecar is gone");
        let fresh = record(Status::Restarting, 0, Some(86_400.0));
        assert_eq!(
            super::classify(&fresh, Keeper::LockFree, now(), 3.0).0,
            State::Stale
        );
    }

    #[test]
    fn a_free_lock_is_stale_at_once_whatever_the_interval() {
        let fresh = record(Status::Ok, 0, Some(86_400.0));
        assert_eq!(state(&fresh, Keeper::Held), State::Ok);
        assert_eq!(state(&fresh, Keeper::Unknown), State::Ok);
        let (got, why) = classify(&fresh, Keeper::LockFree, now(), 3.0);
        assert_eq!(
            (got, why.as_deref()),
            (State::Stale, Some("sidecar gone (its lock is free)"))
        );
        let (got, why) = classify(&fresh, Keeper::PidGone(77), now(), 3.0);
        assert_eq!(
            (got, why.as_deref()),
            (
                State::Stale,
                Some("sidecar gone (hb_pid 77 is not running)")
            )
        );
    }

    #[test]
    fn a_held_lock_with_late_beats_is_stale() {
        // A SIGSTOPped sidecar keeps its lock: its beats being late is what gives it away.
        let late = record(Status::Ok, 3001, Some(1.0));
        let (got, why) = classify(&late, Keeper::Held, now(), 3.0);
        assert_eq!(got, State::Stale);
        assert_eq!(
            why.as_deref(),
            Some("no beat for 3.001s (over 3 × 1s): sidecar stopped or hung")
        );
    }

    #[test]
    fn values_the_writer_refuses_are_invalid() {
        let with = |interval: Option<f64>, hb_pid: Option<i32>, agent: Option<&str>| {
            let mut rec = record(Status::Ok, 0, interval);
            rec.hb_pid = hb_pid;
            rec.agent = agent.map(String::from);
            classify(&rec, Keeper::Held, now(), 3.0)
        };
        assert_eq!(with(Some(0.01), Some(1), Some("a-1")).0, State::Ok);
        assert_eq!(with(Some(86_400.0), None, None).0, State::Ok);
        for (interval, shown) in [(1e308, "1e308"), (86_400.5, "86400.5"), (0.001, "0.001")] {
            let (got, why) = with(Some(interval), None, None);
            assert_eq!(got, State::Invalid, "{interval}");
            assert_eq!(
                why.unwrap(),
                format!("interval={shown} is outside the writer's range (0.01 to 86400 seconds)")
            );
        }
        let (got, why) = with(None, Some(0), None);
        assert_eq!(
            (got, why.as_deref()),
            (State::Invalid, Some("hb_pid=0 is not a process id"))
        );
        assert_eq!(with(None, Some(-1), None).0, State::Invalid);
        let (got, why) = with(None, None, Some("../x"));
        assert_eq!(got, State::Invalid);
        assert!(why.unwrap().starts_with("agent= invalid agent name"));
        // Even a final status: a record nobody could have written says nothing true.
        let mut rec = record(Status::Exited, 0, Some(1e308));
        rec.hb_pid = None;
        assert_eq!(state(&rec, Keeper::Held), State::Invalid);
    }
}
