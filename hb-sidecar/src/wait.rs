/*!
The sidecar's one wait point: a `ppoll` on the target's pidfd, the stop signals' signalfd and
a third descriptor (the activity watch while the target lives, the respawn helper's stdout
while a restart is under way), with a timeout. Every wait of the sidecar, in the event loop
([`crate::watch`]), a restart ([`crate::restart`]) or a teardown's grace, is this one.
*/

use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;

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

/// Waits up to `timeout` for the target's death (`pidfd`), a stop signal, or `third`.
/// The target's death comes first when several are ready, then a stop.
pub fn wait(
    pidfd: Option<BorrowedFd>,
    signals: &Signals,
    third: Option<BorrowedFd>,
    timeout: Duration,
) -> Event {
    // Only the descriptors there are: without a pidfd (old kernels) the beat checks the target;
    // without a terminal, or while the activity watch rests, it is left out.
    let mut fds: [PollFd; 3] =
        std::array::from_fn(|_| PollFd::new(signals.fd(), PollFlags::POLLIN));
    let (mut n, mut target_at, mut third_at) = (1, None, None);
    for (fd, at) in [(pidfd, &mut target_at), (third, &mut third_at)] {
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
    if ready(target_at) {
        Event::TargetExited
    } else if ready(Some(0)) {
        signals.take().map_or(Event::Interrupted, Event::Stop)
    } else if ready(third_at) {
        Event::Readable
    } else {
        Event::Timeout
    }
}
