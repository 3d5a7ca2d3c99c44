/*!
The restart policy and its arithmetic: whether a death is restarted ([`Restart`], [`End`]),
after how long, and when to give up ([`Limits`], [`Backoff`], [`Verdict`]). Pure: times are
the caller's, so every rule is tested (and property-tested) without clocks.
*/

use std::collections::VecDeque;
use std::time::Duration;

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
        // A window of 0 would count no death but the last, and so never give up, silently.
        if self.window < Duration::from_millis(10) {
            return Err(format!(
                "invalid restart window {}s: at least 0.01 (to give up later, raise \
                 --restart-burst or the window)",
                self.window.as_secs_f64()
            ));
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

    /// The delay [`Backoff::on_end`] gives a restart after a run of `ran`, if it restarts and
    /// does not give up: what a death's first record can already say is due.
    pub fn next_delay(&self, ran: Duration) -> Duration {
        if ran >= self.limits.stable {
            self.limits.floor
        } else {
            delay(&self.limits, self.streak.saturating_add(1))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_next_delay_is_what_the_verdict_gives() {
        let mut backoff = Backoff::new(Restart::OnFailure, Limits::DEFAULT);
        let died = End::Died(Death::Status(1));
        for (i, ran) in [S(0), S(1), S(0), S(700), S(2)].into_iter().enumerate() {
            let said = backoff.next_delay(ran);
            let now = S(10 * i as u64);
            assert_eq!(
                backoff.on_end(died, ran, now),
                Verdict::Restart(said),
                "death {i}"
            );
        }
    }

    #[test]
    fn a_window_of_0_is_refused() {
        let zero = Limits {
            window: Duration::ZERO,
            ..Limits::DEFAULT
        };
        assert!(zero.check().unwrap_err().contains("restart window"));
        assert_eq!(Limits::DEFAULT.check(), Ok(()));
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
    fn the_floor_is_checked_against_the_cap() {
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
    }
}
