/*!
The sidecar's one wait point: a `ppoll` on the target's pidfd, the stop signals' signalfd and
a third descriptor (the activity watch while the target lives, the respawn helper's stdout
while a restart is under way), with a timeout. Every wait of the sidecar, in the event loop
([`crate::watch`]), a restart ([`crate::restart`]), a teardown's grace or the last hooks, is
this one.

It also keeps the event hooks going ([`crate::hooks`]): before it sleeps it starts the next
queued hook, the running one's pidfd is a fourth descriptor and its timeout bounds the sleep,
and when that woke it, it reaps or kills the hook and starts the next; the caller sees
[`Event::Interrupted`], nothing to act on.
*/

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;

use crate::hooks::Hooks;
use crate::signals::{Signals, Stop};

/// What woke the one `ppoll`.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Timeout,
    /// Nothing to act on: `EINTR`, or a signalfd whose signal was taken already.
    Interrupted,
    /// `ppoll` itself failed.
    Failed(Errno),
    /// The pidfd is readable: the target exited.
    TargetExited,
    /// A stop signal, read off the signalfd.
    Stop(Stop),
    /// The third descriptor is readable.
    Readable,
}

/// Waits up to `timeout` for the target's death (`pidfd`), a stop signal, or `third`, and
/// keeps `hooks` going meanwhile. The target's death comes first when several are ready, then
/// a stop.
pub fn wait(
    pidfd: Option<BorrowedFd>,
    signals: &Signals,
    third: Option<BorrowedFd>,
    mut hooks: Option<&mut Hooks>,
    timeout: Duration,
) -> Event {
    let mut timeout = timeout;
    if let Some(hooks) = hooks.as_deref_mut() {
        let busy = hooks.busy();
        hooks.service();
        if busy && !hooks.busy() {
            // The last hook ended since the caller looked: it looks again now, rather than
            // sleep the whole timeout with nothing to wake it (after the final record, an hour).
            return Event::Interrupted;
        }
        if let Some(at) = hooks.deadline() {
            timeout = timeout.min(at.saturating_duration_since(Instant::now()));
        }
    }
    let hook = hooks.as_deref().and_then(Hooks::fd);
    // Only the descriptors there are: without a pidfd (old kernels) the beat checks the target;
    // without a terminal, or while the activity watch rests, it is left out.
    let mut fds: [PollFd; 4] =
        std::array::from_fn(|_| PollFd::new(signals.fd(), PollFlags::POLLIN));
    let (mut n, mut target_at, mut third_at, mut hook_at) = (1, None, None, None);
    for (fd, at) in [
        (pidfd, &mut target_at),
        (third, &mut third_at),
        (hook, &mut hook_at),
    ] {
        if let Some(fd) = fd {
            fds[n] = PollFd::new(fd, PollFlags::POLLIN);
            *at = Some(n);
            n += 1;
        }
    }
    let fds = &mut fds[..n];
    match ppoll(fds, Some(TimeSpec::from(timeout)), None) {
        Ok(_) => {}
        Err(Errno::EINTR) => return Event::Interrupted,
        Err(e) => return Event::Failed(e),
    }
    let ready =
        |at: Option<usize>| at.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
    let (target, stop, third, hook) = (
        ready(target_at),
        ready(Some(0)),
        ready(third_at),
        ready(hook_at),
    );
    let hook = hook || {
        let due = hooks.as_deref().and_then(Hooks::deadline);
        due.is_some_and(|at| at <= Instant::now())
    };
    if hook {
        if let Some(hooks) = hooks {
            hooks.service();
        }
    }
    if target {
        Event::TargetExited
    } else if stop {
        signals.take().map_or(Event::Interrupted, Event::Stop)
    } else if third {
        Event::Readable
    } else if hook {
        Event::Interrupted
    } else {
        Event::Timeout
    }
}
