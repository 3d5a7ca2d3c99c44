/*!
The sidecar's event loop: one thread, one `ppoll`, no child processes.

```text
            +-------- timeout: target still ours? --yes--> write status=ok --+
            |                                   \--no---> write exited, end
  ppoll(pidfd, signalfd; until next beat) ------ pidfd readable ----------> write exited, end
            |
            +-------- signalfd readable (TERM, INT, HUP) --> write stopped, end
```

Beats are scheduled on a fixed grid (`next += interval`), so the rate does not drift with the
cost of a write; after a stall (a suspended machine) the grid restarts from now rather than
bursting to catch up. A write error never ends the loop: the last good file stays in place,
the error is logged once, and the next beat tries again.
*/

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::hbfile::HbFile;
use crate::record::{render, Beat, Status};
use crate::sys::cvt;
use crate::target::{Gone, Target};

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(Gone),
    Stopped(i32),
}

/// Keeps the heartbeat file: renders and replaces one record per call.
pub struct Writer<'a> {
    file: HbFile,
    pid: i32,
    started: Option<u64>,
    agent: Option<&'a str>,
    interval: Duration,
    seq: u64,
    /// Our own pid, read once: create the writer after daemonizing.
    hb_pid: u32,
    buf: Vec<u8>,
    failing: bool,
}

impl<'a> Writer<'a> {
    pub fn new(
        file: HbFile,
        pid: i32,
        started: Option<u64>,
        agent: Option<&'a str>,
        interval: Duration,
    ) -> Self {
        Writer {
            file,
            pid,
            started,
            agent,
            interval,
            seq: 0,
            hb_pid: std::process::id(),
            buf: Vec::with_capacity(256),
            failing: false,
        }
    }

    /// Writes one record. Errors are logged when they start and when they end, not per beat;
    /// `seq` counts records attempted, so a gap shows in it.
    pub fn write(&mut self, status: Status) -> bool {
        self.seq += 1;
        let beat = Beat {
            pid: self.pid,
            status,
            agent: self.agent,
            interval: self.interval,
            seq: self.seq,
            hb_pid: self.hb_pid,
            started: self.started,
            lifecycle: Default::default(),
        };
        render(&mut self.buf, Utc::now(), &beat);
        match self.file.replace(&self.buf) {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    crate::log(format_args!(
                        "heartbeat file {} written again",
                        self.file.path().display()
                    ));
                }
                true
            }
            Err(e) => {
                if !self.failing {
                    crate::log(format_args!(
                        "cannot write heartbeat file {}: {} (will retry every beat)",
                        self.file.path().display(),
                        crate::why(&e)
                    ));
                }
                self.failing = true;
                false
            }
        }
    }
}

/// A target and its heartbeat file, driven by [`Sidecar::run`].
pub struct Sidecar<'a> {
    target: Target,
    writer: Writer<'a>,
    interval: Duration,
}

impl<'a> Sidecar<'a> {
    pub fn new(target: Target, file: HbFile, agent: Option<&'a str>, interval: Duration) -> Self {
        let writer = Writer::new(file, target.pid(), target.started(), agent, interval);
        Sidecar {
            target,
            writer,
            interval,
        }
    }

    /// Beats until the target is gone or a stop signal arrives, then writes the final record.
    /// Returns how it ended, the final status, and whether that record was written.
    pub fn run(&mut self, signals: &Signals) -> (End, Status, bool) {
        let end = self.beat_until_end(signals);
        let status = match end {
            End::Exited(_) => Status::Exited,
            End::Stopped(_) => Status::Stopped,
        };
        (end, status, self.writer.write(status))
    }

    fn beat_until_end(&mut self, signals: &Signals) -> End {
        let mut next = Instant::now();
        loop {
            if let Err(gone) = self.target.check_beat() {
                return End::Exited(gone);
            }
            self.writer.write(Status::Ok);
            next += self.interval;
            let now = Instant::now();
            if next <= now {
                next = now + self.interval;
            }
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match wait(self.target.pidfd(), signals.fd(), left) {
                    Event::Timeout => break,
                    Event::Interrupted => continue,
                    Event::TargetExited => return End::Exited(Gone::NoProcess),
                    Event::Signal => {
                        if let Some(sig) = signals.take() {
                            // A stop that races the target's death reports the death.
                            return match self.target.check_beat() {
                                Ok(()) => End::Stopped(sig),
                                Err(gone) => End::Exited(gone),
                            };
                        }
                    }
                }
            }
        }
    }
}

enum Event {
    Timeout,
    Interrupted,
    TargetExited,
    Signal,
}

fn wait(pidfd: Option<BorrowedFd>, signals: BorrowedFd, timeout: Duration) -> Event {
    let mut fds = [
        libc::pollfd {
            fd: signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pidfd.map_or(-1, |fd| fd.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: fds and ts are live for the call; a negative fd is ignored by the kernel.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if n < 0 {
        return Event::Interrupted;
    }
    if fds[1].revents != 0 {
        Event::TargetExited
    } else if fds[0].revents != 0 {
        Event::Signal
    } else {
        Event::Timeout
    }
}

/// SIGTERM, SIGINT and SIGHUP, blocked and delivered through a signalfd, so that a stop is
/// seen by the one `ppoll` and never interrupts a write half-way.
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the calls
        // only block signals for this (single) thread and open a descriptor we own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
            cvt(libc::sigprocmask(
                libc::SIG_BLOCK,
                &set,
                std::ptr::null_mut(),
            ))?;
            let fd = cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?;
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending stop signal, if any.
    fn take(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            );
            (n == size as isize).then_some(info.ssi_signo as i32)
        }
    }
}
