/*!
Supervision: whether, when and how often a dead agent is started again.

An opt-in policy in the manner of systemd's `Restart=` and s6's run scripts, with the limits
that keep a crashing agent from becoming a respawn storm:

| policy       | exit 0 | non-zero exit | killed by a signal | death not known | deliberate stop |
|--------------|--------|---------------|--------------------|-----------------|-----------------|
| `no`         | -      | -             | -                  | -               | -               |
| `on-failure` | -      | restart       | restart            | restart         | -               |
| `always`     | restart| restart       | restart            | restart         | -               |

A death whose status cannot be learnt (the pane was already gone) counts as a failure: nothing
proves it was clean. A deliberate stop is the sidecar being told to stop (`mosaic-fleet stop`
signals it): a stopped sidecar has ended, so nothing is left that could restart the agent.

- **Backoff.** The delay before a restart grows geometrically (×2) from a floor (1 s) to a cap
  (5 min) with each consecutive *unstable* death, one that ends a run shorter than the
  stability period (10 min). A death after a stable run restarts after the floor and clears
  the count.
- **Give-up.** The burst-th unstable death within the window (5 in 15 min) is not restarted:
  the agent is `failed` until someone restarts it (`mosaic-fleet restart`).
- **Fleet-wide guard.** At most one restart per guard period (10 s) among all the agents of one
  heartbeat directory, so an outage that kills every agent brings them back one by one. The
  guard is the file `.restart-guard` in the heartbeat directory (agent names never start with
  `.`), holding the time of the last restart; each sidecar takes a non-blocking `flock` on it
  just long enough to read and replace that time.

The arithmetic ([`Backoff`], [`guard_wait`]) is pure, on times given by the caller, so it is
tested without clocks.
*/

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::death::Death;

/// When a dead agent is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Restart {
    /// Never (today's behaviour, and the default).
    #[default]
    No,
    /// After a non-zero exit status, a signal, or a death whose status is unknown.
    OnFailure,
    /// After any death, exit 0 included.
    Always,
}

impl Restart {
    pub const NAMES: [&'static str; 3] = ["no", "on-failure", "always"];

    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }

    /// Parses `no`, `on-failure` or `always` (the spelling of systemd's `Restart=`).
    pub fn parse(text: &str) -> Result<Restart, String> {
        match text {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(format!(
                "invalid restart policy {text:?}: one of no, on-failure, always"
            )),
        }
    }

    /// Whether this policy restarts after `end`. A deliberate stop never restarts.
    pub fn restarts_after(self, end: End) -> bool {
        match (self, end) {
            (_, End::Stopped) | (Restart::No, _) => false,
            (Restart::Always, End::Died(_)) => true,
            (Restart::OnFailure, End::Died(death)) => death.is_failure(),
        }
    }
}

/// How a watch ended, for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The agent died on its own.
    Died(Death),
    /// The sidecar was told to stop.
    Stopped,
}

/// The backoff and give-up limits, and the fleet-wide guard period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The first delay, and the delay after a stable run.
    pub floor: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// A run at least this long was stable: its death resets the backoff.
    pub stable: Duration,
    /// This many unstable deaths within `window` give up.
    pub burst: u32,
    pub window: Duration,
    /// At most one restart per this period in one heartbeat directory.
    pub guard: Duration,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        floor: Duration::from_secs(1),
        cap: Duration::from_secs(300),
        stable: Duration::from_secs(600),
        burst: 5,
        window: Duration::from_secs(900),
        guard: Duration::from_secs(10),
    };

    /// Checks the limits fit together: a floor of at least 10 ms and no longer than the cap,
    /// a burst of at least 1.
    pub fn check(&self) -> Result<(), String> {
        if self.floor < Duration::from_millis(10) {
            return Err(format!(
                "invalid restart delay {}s: at least 0.01",
                self.floor.as_secs_f64()
            ));
        }
        if self.floor > self.cap {
            return Err(format!(
                "invalid restart delays: floor {}s is longer than cap {}s",
                self.floor.as_secs_f64(),
                self.cap.as_secs_f64()
            ));
        }
        if self.burst == 0 {
            return Err("invalid restart burst 0: at least 1".into());
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What to do about a death.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The policy does not restart after this end: record it and leave.
    Leave,
    /// Restart after this delay (then also wait for the fleet-wide guard).
    Restart(Duration),
    /// Too many unstable deaths: record `status=failed` and leave.
    GiveUp,
}

/// The backoff state of one agent. Times are the caller's monotonic clock, as durations since
/// any fixed origin.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: Restart,
    limits: Limits,
    /// Consecutive unstable deaths.
    streak: u32,
    /// When the unstable deaths still inside the window happened, oldest first.
    recent: VecDeque<Duration>,
}

impl Backoff {
    pub fn new(policy: Restart, limits: Limits) -> Backoff {
        Backoff {
            policy,
            limits,
            streak: 0,
            recent: VecDeque::with_capacity(limits.burst.min(64) as usize),
        }
    }

    pub fn policy(&self) -> Restart {
        self.policy
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decides about a watch that ended at `now` (`end`) after a run of `ran`.
    pub fn on_end(&mut self, end: End, ran: Duration, now: Duration) -> Verdict {
        if !self.policy.restarts_after(end) {
            return Verdict::Leave;
        }
        if ran >= self.limits.stable {
            self.streak = 0;
            self.recent.clear();
            return Verdict::Restart(self.limits.floor);
        }
        self.streak = self.streak.saturating_add(1);
        let horizon = now.saturating_sub(self.limits.window);
        while self.recent.front().is_some_and(|&t| t < horizon) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() >= self.limits.burst as usize {
            return Verdict::GiveUp;
        }
        // Bounded like the window itself: older deaths are gone, so the deque never outgrows
        // `burst`.
        Verdict::Restart(delay(&self.limits, self.streak))
    }
}

/// The delay before the restart that follows the `streak`-th consecutive unstable death
/// (1 = the first): `floor × 2^(streak-1)`, at most `cap`.
pub fn delay(limits: &Limits, streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1);
    let mut delay = limits.floor;
    for _ in 0..doublings {
        if delay >= limits.cap {
            break;
        }
        delay = delay.saturating_mul(2);
    }
    delay.min(limits.cap)
}

/// The fleet-wide guard's rule: with the last restart in this directory at `last`, a restart
/// at `now` may go ahead (`None`) or must wait this long. A `last` in the future (a reboot
/// reset the clock, or a bad file: the clock is read under the guard's lock, so no sidecar
/// wrote a later time) does not hold anyone back.
pub fn guard_wait(last: Option<Duration>, now: Duration, period: Duration) -> Option<Duration> {
    let last = last?;
    if last > now {
        return None;
    }
    let free = last.saturating_add(period);
    (free > now).then(|| free - now)
}

/// The outcome of one try at the fleet-wide guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// This restart may go ahead; the guard now holds its time.
    Taken,
    /// Another restart was too recent: try again after this long.
    Wait(Duration),
    /// Another sidecar is reading the guard this instant: try again very soon.
    Busy,
}

/// Tries to take the fleet-wide restart slot of the heartbeat directory `dir`. `clock` is read
/// only once the guard is locked (in the sidecar [`boot_clock`], the same for every process
/// on the machine), so the time it holds is never later than ours.
pub fn take_slot(
    dir: BorrowedFd,
    period: Duration,
    clock: impl FnOnce() -> Duration,
) -> io::Result<Slot> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        dir,
        crate::layout::GUARD_NAME,
        flags,
        Mode::from_bits_truncate(0o644),
    )?;
    // Closing the file drops the lock: it is held only for this read and write.
    let file = match Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) {
        Ok(file) => file,
        Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => return Ok(Slot::Busy),
        Err((_, e)) => return Err(e.into()),
    };
    let now = clock();
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0)?;
    let last = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    if let Some(wait) = guard_wait(last, now, period) {
        return Ok(Slot::Wait(wait));
    }
    let text = format!("{}\n", now.as_millis());
    file.set_len(0)?;
    file.write_all_at(text.as_bytes(), 0)?;
    Ok(Slot::Taken)
}

/// One line from the respawn helper to the sidecar (the helper's stdout). The sidecar answers
/// with [`GO`] on the helper's stdin, or closes it to cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The agent's pane is dead: how its process ended (`dead status 3`, `dead signal 9`,
    /// `dead unknown`).
    Dead(Death),
    /// The pane lives again, someone else restarted it: its pid and start time
    /// (`live PID STARTED`).
    Live(i32, Option<u64>),
    /// There is no pane to restart: the session is gone (`gone`).
    Gone,
    /// The pane was restarted: its new pid and start time (`started PID STARTED`).
    Started(i32, Option<u64>),
}

/// The sidecar's word to go ahead with the restart.
pub const GO: &[u8] = b"go\n";

impl Answer {
    /// The line, newline included.
    pub fn line(self) -> String {
        let pid_line = |verb: &str, pid: i32, started: Option<u64>| match started {
            Some(started) => format!("{verb} {pid} {started}\n"),
            None => format!("{verb} {pid}\n"),
        };
        match self {
            Answer::Dead(Death::Status(code)) => format!("dead status {code}\n"),
            Answer::Dead(Death::Signal(sig)) => format!("dead signal {sig}\n"),
            Answer::Dead(Death::Unknown) => "dead unknown\n".into(),
            Answer::Live(pid, started) => pid_line("live", pid, started),
            Answer::Gone => "gone\n".into(),
            Answer::Started(pid, started) => pid_line("started", pid, started),
        }
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<Answer, String> {
        let bad = || format!("unexpected answer from the respawn helper: {line:?}");
        let mut words = line.split(' ');
        let number = |word: Option<&str>| word.and_then(|w| w.parse::<i32>().ok()).ok_or_else(bad);
        let answer = match words.next() {
            Some("dead") => match words.next() {
                Some("status") => Answer::Dead(Death::Status(number(words.next())?)),
                Some("signal") => Answer::Dead(Death::Signal(number(words.next())?)),
                Some("unknown") => Answer::Dead(Death::Unknown),
                _ => return Err(bad()),
            },
            Some(verb @ ("live" | "started")) => {
                let pid =
                    crate::validate::pid(words.next().unwrap_or_default()).map_err(|_| bad())?;
                let started = match words.next() {
                    Some(word) => Some(word.parse().map_err(|_| bad())?),
                    None => None,
                };
                if verb == "live" {
                    Answer::Live(pid, started)
                } else {
                    Answer::Started(pid, started)
                }
            }
            Some("gone") => Answer::Gone,
            _ => return Err(bad()),
        };
        match words.next() {
            Some(_) => Err(bad()),
            None => Ok(answer),
        }
    }
}

/// The restart limits' flags as both binaries take them, in the order `--help` lists them:
/// flag (without `--`), value name, default (as [`Limits::DEFAULT`] has it).
pub const LIMIT_FLAGS: [(&str, &str, &str); 6] = [
    ("restart-delay", "SECS", "1"),
    ("restart-max-delay", "SECS", "300"),
    ("restart-stable", "SECS", "600"),
    ("restart-burst", "N", "5"),
    ("restart-window", "SECS", "900"),
    ("restart-guard", "SECS", "10"),
];

/// The restart flags as text, as both binaries take them (`None` or empty: the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags<'a> {
    pub policy: Option<&'a str>,
    /// The limits, in the order of [`LIMIT_FLAGS`].
    pub limits: [Option<&'a str>; 6],
    /// Name the `MOSAIC_RESTART*` variables in errors too (the launcher reads them).
    pub env: bool,
}

/// `--restart-delay`, or with `env` `--restart-delay (MOSAIC_RESTART_DELAY)`: a flag as an
/// error names it.
pub fn flag_name(flag: &str, env: bool) -> String {
    let flag = flag.trim_start_matches("--");
    if env {
        let var = flag.replace('-', "_").to_uppercase();
        format!("--{flag} (MOSAIC_{var})")
    } else {
        format!("--{flag}")
    }
}

fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

impl Flags<'_> {
    /// The policy and its limits, checked together.
    pub fn parse(&self) -> Result<(Restart, Limits), String> {
        let name = |flag: &str| flag_name(flag, self.env);
        let [delay, max_delay, stable, burst, window, guard] = self.limits;
        let policy = match given(self.policy) {
            Some(text) => {
                Restart::parse(text).map_err(|e| format!("{e} ({})", name("--restart")))?
            }
            None => Restart::No,
        };
        let d = Limits::DEFAULT;
        let secs = |value: Option<&str>, flag: &str, default: Duration| match given(value) {
            Some(text) => crate::validate::seconds(text, 0.0..=WEEK)
                .map_err(|why| crate::validate::invalid(&name(flag), text, &why)),
            None => Ok(default),
        };
        let burst = match given(burst) {
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "invalid {} {text:?}: a count from 1 to 1000",
                        name("--restart-burst")
                    ))
                }
            },
            None => d.burst,
        };
        let limits = Limits {
            floor: secs(delay, "--restart-delay", d.floor)?,
            cap: secs(max_delay, "--restart-max-delay", d.cap)?,
            stable: secs(stable, "--restart-stable", d.stable)?,
            burst,
            window: secs(window, "--restart-window", d.window)?,
            guard: secs(guard, "--restart-guard", d.guard)?,
        };
        limits.check()?;
        Ok((policy, limits))
    }
}

/// A restart policy and its limits as flag names (without `--`) and values: the policy, then
/// each limit that is not the default; nothing for `no`. What the launcher hands the sidecar
/// and stores with the agent for `mosaic-fleet restart`.
pub fn settings(policy: Restart, limits: &Limits) -> Vec<(&'static str, String)> {
    if policy == Restart::No {
        return Vec::new();
    }
    let mut out = vec![("restart", policy.as_str().to_string())];
    let d = Limits::DEFAULT;
    let secs = |v: Duration| format!("{}", v.as_secs_f64());
    for (flag, value, default) in [
        ("restart-delay", limits.floor, d.floor),
        ("restart-max-delay", limits.cap, d.cap),
        ("restart-stable", limits.stable, d.stable),
        ("restart-window", limits.window, d.window),
        ("restart-guard", limits.guard, d.guard),
    ] {
        if value != default {
            out.push((flag, secs(value)));
        }
    }
    if limits.burst != d.burst {
        out.push(("restart-burst", limits.burst.to_string()));
    }
    out
}

/// The sidecar's arguments that carry a restart policy (none for `no`): the policy, the tmux
/// socket, and each limit that is not the default. The policy lives in the sidecar's argv, so
/// it outlives the shell that launched the agent.
pub fn sidecar_args(policy: Restart, limits: &Limits, socket: &str) -> Vec<String> {
    let settings = settings(policy, limits);
    if settings.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["--socket".to_string(), socket.to_string()];
    for (flag, value) in settings {
        args.extend([format!("--{flag}"), value]);
    }
    args
}

/// The longest delay, period or window supervision accepts, in seconds.
const WEEK: f64 = 604_800.0;

/// `CLOCK_BOOTTIME`: monotonic, shared by every process on the machine, and it keeps counting
/// while the machine is suspended (a restart an hour ago stays an hour ago).
pub fn boot_clock() -> Duration {
    // CLOCK_BOOTTIME exists since Linux 2.6.39: a failure is impossible here.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map_or(Duration::ZERO, Duration::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_limit_flags_defaults_are_the_limits_defaults() {
        let flags = Flags {
            policy: Some("always"),
            limits: LIMIT_FLAGS.map(|(_, _, default)| Some(default)),
            env: false,
        };
        assert_eq!(flags.parse().unwrap(), (Restart::Always, Limits::DEFAULT));
        let names = LIMIT_FLAGS.map(|(flag, _, _)| flag);
        assert!(settings(Restart::Always, &Limits::DEFAULT)
            .iter()
            .all(|(flag, _)| *flag == "restart" || names.contains(flag)));
    }

    #[test]
    fn the_policy_table() {
        use Death::*;
        let ends = [
            End::Died(Status(0)),
            End::Died(Status(1)),
            End::Died(Signal(9)),
            End::Died(Unknown),
            End::Stopped,
        ];
        let table = [
            (Restart::No, [false, false, false, false, false]),
            (Restart::OnFailure, [false, true, true, true, false]),
            (Restart::Always, [true, true, true, true, false]),
        ];
        for (policy, want) in table {
            for (end, want) in ends.iter().zip(want) {
                assert_eq!(
                    policy.restarts_after(*end),
                    want,
                    "{policy:?} after {end:?}"
                );
            }
        }
    }

    #[test]
    fn policies_parse_and_print() {
        for name in Restart::NAMES {
            assert_eq!(Restart::parse(name).unwrap().as_str(), name);
        }
        for bad in ["", "yes", "On-Failure", "on_failure", " no"] {
            assert!(Restart::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Restart::default(), Restart::No);
    }

    #[test]
    fn answers_round_trip_and_strangers_are_refused() {
        let answers = [
            Answer::Dead(Death::Status(3)),
            Answer::Dead(Death::Signal(9)),
            Answer::Dead(Death::Unknown),
            Answer::Live(42, Some(7)),
            Answer::Started(43, None),
            Answer::Gone,
        ];
        for answer in answers {
            let line = answer.line();
            assert_eq!(Answer::parse(line.trim_end()), Ok(answer), "{line}");
        }
        for bad in [
            "",
            "dead",
            "dead status x",
            "started 0",
            "started -1",
            "gone now",
            "go",
        ] {
            assert!(Answer::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_parse_and_travel_to_the_sidecar() {
        let flags = Flags {
            policy: Some("on-failure"),
            limits: [Some("0.5"), None, None, Some("3"), None, Some("")],
            ..Flags::default()
        };
        let (policy, limits) = flags.parse().unwrap();
        assert_eq!(policy, Restart::OnFailure);
        assert_eq!(limits.floor, Duration::from_millis(500));
        assert_eq!(limits.guard, Limits::DEFAULT.guard, "empty is unset");
        let args = sidecar_args(policy, &limits, "sock");
        assert_eq!(
            args.join(" "),
            "--socket sock --restart on-failure --restart-delay 0.5 --restart-burst 3"
        );
        assert!(sidecar_args(Restart::No, &limits, "sock").is_empty());
        // What the launcher passes, the sidecar reads back the same.
        let back = Flags {
            policy: Some("on-failure"),
            limits: [Some("0.5"), None, None, Some("3"), None, None],
            ..Flags::default()
        };
        assert_eq!(back.parse().unwrap(), (policy, limits));
        let env = Flags {
            limits: [None, Some("x"), None, None, None, None],
            env: true,
            ..Flags::default()
        };
        let err = env.parse().unwrap_err();
        assert!(
            err.contains("--restart-max-delay (MOSAIC_RESTART_MAX_DELAY)"),
            "{err}"
        );
        assert_eq!(
            Flags::default().parse().unwrap(),
            (Restart::No, Limits::DEFAULT)
        );
    }

    #[test]
    fn the_delay_floor_is_checked() {
        let err = Flags {
            limits: [None, None, None, None, None, Some("604801")],
            ..Flags::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(
            err,
            "invalid --restart-guard \"604801\": must be a number of seconds from 0 to 604800"
        );
        let floor = |secs| Limits {
            floor: Duration::from_secs_f64(secs),
            ..Limits::DEFAULT
        };
        assert!(floor(0.0).check().is_err());
        assert!(floor(301.0).check().is_err());
        assert!(floor(300.0).check().is_ok());
    }

    #[test]
    fn delays_double_from_the_floor_to_the_cap() {
        let limits = Limits::DEFAULT;
        let delays: Vec<u64> = (1..=11).map(|n| delay(&limits, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(&limits, 0), S(1));
        assert_eq!(delay(&limits, u32::MAX), S(300));
    }

    #[test]
    fn a_crash_loop_backs_off_then_gives_up() {
        let mut b = Backoff::new(Restart::OnFailure, Limits::DEFAULT);
        let mut now = S(100);
        let mut verdicts = Vec::new();
        for _ in 0..5 {
            let v = b.on_end(End::Died(Death::Status(1)), Duration::ZERO, now);
            verdicts.push(v);
            if let Verdict::Restart(d) = v {
                now += d;
            }
        }
        let restart = |secs| Verdict::Restart(S(secs));
        let want = [
            restart(1),
            restart(2),
            restart(4),
            restart(8),
            Verdict::GiveUp,
        ];
        assert_eq!(verdicts, want);
    }

    #[test]
    fn a_stable_run_resets_the_backoff() {
        let mut b = Backoff::new(Restart::Always, Limits::DEFAULT);
        let crash = End::Died(Death::Signal(11));
        assert_eq!(b.on_end(crash, S(1), S(10)), Verdict::Restart(S(1)));
        assert_eq!(b.on_end(crash, S(1), S(20)), Verdict::Restart(S(2)));
        assert_eq!(b.on_end(crash, S(600), S(700)), Verdict::Restart(S(1)));
        assert_eq!(b.on_end(crash, S(1), S(710)), Verdict::Restart(S(1)));
        assert_eq!(
            b.on_end(End::Died(Death::Status(0)), S(1), S(720)),
            Verdict::Restart(S(2))
        );
        assert_eq!(b.on_end(End::Stopped, S(1), S(730)), Verdict::Leave);
    }

    #[test]
    fn deaths_outside_the_window_do_not_count() {
        let limits = Limits {
            burst: 2,
            window: S(60),
            ..Limits::DEFAULT
        };
        let mut b = Backoff::new(Restart::OnFailure, limits);
        let crash = End::Died(Death::Status(2));
        assert!(matches!(b.on_end(crash, S(1), S(0)), Verdict::Restart(_)));
        assert!(matches!(b.on_end(crash, S(1), S(61)), Verdict::Restart(_)));
        assert_eq!(b.on_end(crash, S(1), S(62)), Verdict::GiveUp);
    }

    #[test]
    fn the_guard_spaces_restarts() {
        assert_eq!(guard_wait(None, S(5), S(10)), None);
        assert_eq!(guard_wait(Some(S(5)), S(5), S(10)), Some(S(10)));
        assert_eq!(guard_wait(Some(S(5)), S(12), S(10)), Some(S(3)));
        assert_eq!(guard_wait(Some(S(5)), S(15), S(10)), None);
        assert_eq!(guard_wait(Some(S(50)), S(15), S(10)), None, "future");
    }

    #[test]
    fn the_guard_file_admits_one_restart_per_period() {
        let dir = std::env::temp_dir().join(format!("mosaic-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fd = std::fs::File::open(&dir).unwrap();
        use std::os::fd::AsFd;
        let period = S(10);
        assert_eq!(
            take_slot(fd.as_fd(), period, || S(100)).unwrap(),
            Slot::Taken
        );
        assert_eq!(
            take_slot(fd.as_fd(), period, || S(104)).unwrap(),
            Slot::Wait(S(6))
        );
        assert_eq!(
            take_slot(fd.as_fd(), period, || S(110)).unwrap(),
            Slot::Taken
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".restart-guard")).unwrap(),
            "110000\n"
        );
        // A planted symlink is not followed.
        std::fs::remove_file(dir.join(".restart-guard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(".restart-guard")).unwrap();
        assert!(take_slot(fd.as_fd(), period, || S(200)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (
            1u64..5_000,
            0u64..400_000,
            1u64..1_000_000,
            1u32..8,
            1u64..2_000_000,
        )
            .prop_map(|(floor, extra, stable, burst, window)| Limits {
                floor: ms(floor),
                cap: ms(floor + extra),
                stable: ms(stable),
                burst,
                window: ms(window),
                guard: ms(10_000),
            })
    }

    fn end() -> impl Strategy<Value = End> {
        prop_oneof![
            (-1i32..256).prop_map(|c| End::Died(Death::Status(c))),
            (1i32..65).prop_map(|s| End::Died(Death::Signal(s))),
            Just(End::Died(Death::Unknown)),
            Just(End::Stopped),
        ]
    }

    fn policy() -> impl Strategy<Value = Restart> {
        prop_oneof![
            Just(Restart::No),
            Just(Restart::OnFailure),
            Just(Restart::Always)
        ]
    }

    proptest! {
        #[test]
        fn delays_grow_by_doubling_within_floor_and_cap(limits in limits(), n in 1u32..80) {
            let d = delay(&limits, n);
            prop_assert!(limits.floor <= d && d <= limits.cap);
            let next = delay(&limits, n + 1);
            prop_assert_eq!(next, (d * 2).min(limits.cap));
            prop_assert_eq!(delay(&limits, 1), limits.floor);
        }

        /// Against an oracle that keeps every death: restart unless the policy says no, give up
        /// exactly when `burst` unstable deaths since the last stable run fall in one window,
        /// and wait floor × 2^(unstable deaths in a row - 1), capped.
        #[test]
        fn backoff_matches_a_full_history(
            policy in policy(),
            limits in limits(),
            deaths in proptest::collection::vec((end(), 0u64..2_000_000, 0u64..600_000), 1..40),
        ) {
            let mut backoff = Backoff::new(policy, limits);
            let mut now = ms(1_000);
            let mut unstable: Vec<Duration> = Vec::new();
            let mut streak = 0u32;
            for (end, ran, gap) in deaths {
                now += ms(gap);
                let ran = ms(ran);
                let verdict = backoff.on_end(end, ran, now);
                if !policy.restarts_after(end) {
                    prop_assert_eq!(verdict, Verdict::Leave);
                    prop_assert!(policy == Restart::No || end == End::Stopped
                        || end == End::Died(Death::Status(0)));
                    continue;
                }
                if ran >= limits.stable {
                    unstable.clear();
                    streak = 0;
                    prop_assert_eq!(verdict, Verdict::Restart(limits.floor));
                    continue;
                }
                unstable.push(now);
                streak += 1;
                let in_window = unstable
                    .iter()
                    .filter(|&&t| t >= now.saturating_sub(limits.window))
                    .count();
                if in_window >= limits.burst as usize {
                    prop_assert_eq!(verdict, Verdict::GiveUp);
                    // The sidecar leaves on a give-up; nothing follows it.
                    break;
                }
                let mut want = limits.floor;
                for _ in 1..streak {
                    want = (want * 2).min(limits.cap);
                }
                prop_assert_eq!(verdict, Verdict::Restart(want));
            }
        }

        #[test]
        fn the_guard_waits_exactly_until_the_period_is_over(
            last in proptest::option::of(0u64..1_000_000),
            now in 0u64..1_000_000,
            period in 0u64..100_000,
        ) {
            let wait = guard_wait(last.map(ms), ms(now), ms(period));
            match (last, wait) {
                (None, w) => prop_assert_eq!(w, None),
                (Some(last), None) => prop_assert!(last > now || last + period <= now),
                (Some(last), Some(w)) => {
                    prop_assert!(last <= now && !w.is_zero() && w <= ms(period));
                    prop_assert_eq!(ms(now) + w, ms(last + period));
                }
            }
        }
    }
}
