/*!
The stop signals: SIGTERM, SIGINT and SIGHUP, blocked and delivered through a signalfd, so a
stop is seen by the one `ppoll` ([`crate::wait`]) and never interrupts a write half-way. A
signal becomes a [`Stop`] the moment it is read: past this module, nothing handles a number.
*/

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// A stop signal, as read: each one ends the sidecar with `status=stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: `mosaic-fleet stop`, `kill`, a service manager.
    Terminate,
    /// SIGINT: Ctrl-C, for a sidecar run in the foreground.
    Interrupt,
    /// SIGHUP: the terminal it was started from went away.
    Hangup,
}

impl Stop {
    const ALL: [Stop; 3] = [Stop::Terminate, Stop::Interrupt, Stop::Hangup];

    /// The signal this stop is.
    pub fn signal(self) -> Signal {
        match self {
            Stop::Terminate => Signal::SIGTERM,
            Stop::Interrupt => Signal::SIGINT,
            Stop::Hangup => Signal::SIGHUP,
        }
    }

    /// The stop a signal number is, if it is one of ours.
    fn from_number(number: u32) -> Option<Stop> {
        let signal = Signal::try_from(i32::try_from(number).ok()?).ok()?;
        Stop::ALL.into_iter().find(|stop| stop.signal() == signal)
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.signal().as_str())
    }
}

/// The signalfd the stop signals arrive on.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the stop signals for this (single) thread, so they arrive only through the
    /// descriptor.
    pub fn install() -> io::Result<Signals> {
        let mut set = SigSet::empty();
        for stop in Stop::ALL {
            set.add(stop.signal());
        }
        set.thread_block()?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Signals { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending stop, if any (a readable descriptor may have had it taken already).
    pub fn take(&self) -> Option<Stop> {
        let info = self.fd.read_signal().ok()??;
        Stop::from_number(info.ssi_signo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stop_is_read_back_as_itself_and_nothing_else_is_a_stop() {
        for stop in Stop::ALL {
            assert_eq!(Stop::from_number(stop.signal() as u32), Some(stop));
        }
        assert_eq!(Stop::from_number(Signal::SIGKILL as u32), None);
        assert_eq!(Stop::from_number(0), None);
        assert_eq!(Stop::from_number(u32::MAX), None);
        assert_eq!(Stop::Terminate.to_string(), "SIGTERM");
    }
}
