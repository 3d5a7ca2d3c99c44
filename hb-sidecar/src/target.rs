/*!
The watched process, and the three ways we tell that it is gone.

1. Its pidfd turns readable (the event loop polls it): the kernel says the process exited.
   A pidfd names one process, never a later one that reuses the number.
2. `kill(pid, 0)` fails with `ESRCH` (`EPERM` means alive but not ours). This is all we have
   where `pidfd_open` is missing (`ENOSYS`, Linux < 5.3).
3. `/proc/PID/stat` is gone, says the process is a zombie (`Z`, `X`), or shows a start time
   other than the one recorded when watching began: the number now names another process.

A `Z` is not always a dead process: a program whose main thread called `pthread_exit` while
other threads run shows its leader as a zombie, yet runs on. `/proc/PID/status` counts the
group's threads (the zombie leader included), so more than one means it lives; the pidfd turns
readable only when the whole group has exited.
*/

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use mosaic_core::proc::{read_stat, stat_path};
use mosaic_core::sys::pidfd_open;

pub struct Target {
    pid: i32,
    pidfd: Option<OwnedFd>,
    started: Option<u64>,
    stat_path: PathBuf,
}

/// Why a target counts as gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    NoProcess,
    Zombie,
    Reused,
}

impl Gone {
    pub fn describe(self) -> &'static str {
        match self {
            Gone::NoProcess => "is not running",
            Gone::Zombie => "is a zombie (exited, not yet reaped)",
            Gone::Reused => "now names a different process (start time changed)",
        }
    }
}

impl Target {
    /// Starts watching `pid`. `use_pidfd = false` forces the `kill(2)`-only fallback.
    /// `expected` is the start time the caller saw (the launcher reads it as soon as tmux names
    /// the pane): a process with another start time is a stranger that reused the PID.
    pub fn attach(
        pid: i32,
        use_pidfd: bool,
        expected: Option<u64>,
    ) -> Result<Target, (Gone, Option<u64>)> {
        let stat_path = stat_path(pid);
        let before = read_stat(&stat_path).map(|(_, started)| started);
        let mut target = Target {
            pid,
            pidfd: None,
            started: expected.or(before),
            stat_path,
        };
        if matches!((expected, before), (Some(want), Some(have)) if want != have) {
            return Err((Gone::Reused, expected));
        }
        if use_pidfd {
            match pidfd_open(pid) {
                Ok(fd) => target.pidfd = Some(fd),
                Err(e) if e.raw_os_error() == Some(Errno::ESRCH as i32) => {
                    return Err((Gone::NoProcess, target.started))
                }
                // ENOSYS (old kernel) or a seccomp filter: fall back to kill(2) and /proc.
                Err(_) => {}
            }
        }
        // The pidfd (if any) now pins one process; a start time that changed since we read it
        // means the pid was reused in between, so the pidfd pins the wrong one.
        match target.check() {
            Ok(()) => Ok(target),
            Err(gone) => Err((gone, target.started)),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn started(&self) -> Option<u64> {
        self.started
    }

    /// The pidfd to poll, when the kernel gave us one.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The check before each beat. `kill(2)` first; then, with a pidfd, a zero-timeout poll of
    /// it: a pidfd pins one process, so "not readable" proves life and identity at once, and
    /// the per-beat `/proc` read (the costliest part of a beat) is only needed without one.
    pub fn check_beat(&self) -> Result<(), Gone> {
        let Some(pidfd) = &self.pidfd else {
            return self.check();
        };
        kill_check(self.pid)?;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(1) => Err(Gone::NoProcess),
            _ => Ok(()),
        }
    }

    /// Checks, without blocking, that the target is still the process we began with, by
    /// `kill(2)` and `/proc/PID/stat` (state and start time).
    pub fn check(&self) -> Result<(), Gone> {
        kill_check(self.pid)?;
        match (read_stat(&self.stat_path), self.started) {
            // No /proc for this pid although kill found it: /proc is absent or hides it
            // (hidepid); trust kill(2).
            (None, None) => Ok(()),
            (None, Some(_)) => Err(Gone::NoProcess),
            (Some((b'X', _)), _) => Err(Gone::Zombie),
            (Some((b'Z', _)), _) if !group_lives(self.pid) => Err(Gone::Zombie),
            (Some((_, now)), Some(then)) if now != then => Err(Gone::Reused),
            (Some(_), _) => Ok(()),
        }
    }
}

/// `kill(pid, 0)`: `ESRCH` is gone; success or `EPERM` (alive, not ours) is alive.
fn kill_check(pid: i32) -> Result<(), Gone> {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => Err(Gone::NoProcess),
        _ => Ok(()),
    }
}

/// Whether the thread group of `pid`, whose leader is a zombie, still has live threads:
/// `Threads:` in `/proc/PID/status` counts them with the zombie leader, so more than one.
/// Read only when the leader shows `Z`, which is rare, so its allocation does not matter.
fn group_lives(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_to_self_and_to_nobody() {
        let Ok(me) = Target::attach(std::process::id() as i32, true, None) else {
            panic!("we are alive")
        };
        assert!(me.check().is_ok());
        let started = me.started().expect("/proc shows us");
        assert_eq!(
            mosaic_core::proc::start_time(std::process::id() as i32),
            Some(started)
        );
        let me = std::process::id() as i32;
        assert!(Target::attach(me, true, Some(started)).is_ok());
        assert!(matches!(
            Target::attach(me, true, Some(started + 1)),
            Err((Gone::Reused, _))
        ));
        // pid_max is at most 2^22, so this pid cannot exist.
        assert!(matches!(
            Target::attach(i32::MAX - 1, true, None),
            Err((Gone::NoProcess, _))
        ));
    }

    /// A C program whose main thread calls `pthread_exit` while a worker sleeps, built here
    /// with the system's `cc` (the test fails, not skips, without one).
    fn pthread_exit_program(dir: &std::path::Path) -> std::path::PathBuf {
        let src = dir.join("main-exits.c");
        // The e2e suite builds the same program.
        std::fs::write(&src, include_str!("../../tests/e2e/main-exits.c")).unwrap();
        let bin = dir.join("main-exits");
        let out = std::process::Command::new("cc")
            .args(["-pthread", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .expect("cc builds the pthread_exit program");
        assert!(out.status.success(), "{out:?}");
        bin
    }

    #[test]
    fn a_leader_that_called_pthread_exit_is_alive() {
        let dir = std::env::temp_dir().join(format!("mosaic-target-pt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new(pthread_exit_program(&dir))
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Wait until the leader shows as a zombie: only then is the case the real one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while read_stat(&stat_path(pid)).map(|s| s.0) != Some(b'Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "the leader never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let target = Target::attach(pid, true, None).expect("a live thread group is alive");
        assert_eq!(target.check(), Ok(()));
        assert_eq!(target.check_beat(), Ok(()));
        let without_pidfd = Target::attach(pid, false, None).expect("alive without a pidfd too");
        assert_eq!(without_pidfd.check(), Ok(()));
        // The worker gone, the group is a real zombie: gone.
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while group_lives(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the group never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(without_pidfd.check(), Err(Gone::Zombie));
        assert_eq!(target.check_beat(), Err(Gone::NoProcess));
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: wait until the kernel shows it as a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let stat = stat_path(pid);
        while read_stat(&stat).map(|s| s.0) != Some(b'Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(matches!(
            Target::attach(pid, true, None),
            Err((Gone::Zombie, _))
        ));
        child.wait().unwrap();
    }
}
