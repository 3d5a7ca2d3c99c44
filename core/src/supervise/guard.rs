/*!
The fleet-wide restart guard: at most one restart per guard period among the agents of one
heartbeat directory, so that an outage that kills twenty agents at once (a shared login token
refreshed in the same second) does not bring them back in the same second either. The guard
is the file `.restart-guard` there ([`crate::layout::GUARD_NAME`]), holding the time of the
last restart on [`boot_clock`] and the agent it was (`MILLIS AGENT`); a sidecar takes a
non-blocking `flock` on it just long enough to read and replace them ([`take_slot`]). The
rule itself ([`guard_wait`]) is pure.

It spaces restarts of *different* agents only: an agent's own restarts are spaced by its
backoff (1, 2, 4, 8 s by default), which the guard would otherwise stretch to one a period
(measured before: +1, +11, +21, +31 s, given up at 31 s instead of about 16 s).
*/

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

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

/// Tries to take the fleet-wide restart slot of the heartbeat directory `dir` for `agent`.
/// `clock` is read only once the guard is locked (in the sidecar [`boot_clock`], the same for
/// every process on the machine), so the time it holds is never later than ours. When the
/// last restart was `agent`'s own, it does not hold this one back.
pub fn take_slot(
    dir: BorrowedFd,
    period: Duration,
    agent: &str,
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
    // `MILLIS AGENT`; an agent name is at most 64 bytes. A file of an older sidecar has no
    // agent: it holds everyone back, as it did.
    let mut buf = [0u8; 96];
    let n = file.read_at(&mut buf, 0)?;
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let mut words = text.split_whitespace();
    let last = words
        .next()
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    let own = words.next() == Some(agent);
    if let Some(wait) = guard_wait(last, now, period).filter(|_| !own) {
        return Ok(Slot::Wait(wait));
    }
    let text = format!("{} {agent}\n", now.as_millis());
    file.set_len(0)?;
    file.write_all_at(text.as_bytes(), 0)?;
    Ok(Slot::Taken)
}

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
            take_slot(fd.as_fd(), period, "a", || S(100)).unwrap(),
            Slot::Taken
        );
        assert_eq!(
            take_slot(fd.as_fd(), period, "b", || S(104)).unwrap(),
            Slot::Wait(S(6))
        );
        // An agent's own next restart is its backoff's business, not the guard's.
        assert_eq!(
            take_slot(fd.as_fd(), period, "a", || S(102)).unwrap(),
            Slot::Taken
        );
        assert_eq!(
            take_slot(fd.as_fd(), period, "b", || S(110)).unwrap(),
            Slot::Wait(S(2))
        );
        assert_eq!(
            take_slot(fd.as_fd(), period, "b", || S(112)).unwrap(),
            Slot::Taken
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".restart-guard")).unwrap(),
            "112000 b\n"
        );
        // An older sidecar's file, a time alone, holds everyone back.
        std::fs::write(dir.join(".restart-guard"), "120000\n").unwrap();
        assert_eq!(
            take_slot(fd.as_fd(), period, "b", || S(125)).unwrap(),
            Slot::Wait(S(5))
        );
        // A planted symlink is not followed.
        std::fs::remove_file(dir.join(".restart-guard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(".restart-guard")).unwrap();
        assert!(take_slot(fd.as_fd(), period, "a", || S(200)).is_err());
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

    proptest! {
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
