/*!
Ending an agent's whole process tree: every process in the pane's session or process group.

tmux starts each pane's process with `setsid`, so the agent is a session leader and everything
it starts (shells, `sleep 1000 &`, `nohup` children, MCP servers, node workers) carries its pid
as session id (`/proc/PID/stat` field 6) or process group (field 5), also after the agent
itself is gone. A [`Teardown`] finds them by a walk of `/proc`, sends SIGTERM, waits a grace,
then sends SIGKILL to whatever is left, walking again each time so that a child forked
meanwhile is not missed, and counts the processes it ended.

It is used twice: by `mosaic-fleet stop` (a deliberate stop, which blocks in [`Teardown::run`])
and by the sidecar when its agent dies on its own, which drives the same steps from its one
`ppoll` loop ([`Teardown::step`], [`Teardown::wait`]), so it never sleeps where a stop signal
cannot reach it and never runs longer than the grace plus [`KILL_WAIT`].

# What it cannot reach

A process that calls `setsid` itself (a daemon that double-forks, `setsid prog`) starts a
session of its own and is no longer found; so is one moved to another process group of its
own session by `setpgid` only when it also left the session (within the session it is still
found by field 6). Containing those needs a cgroup per agent (systemd-run --scope, or a cgroup
v2 directory whose `cgroup.kill` ends everything), the next step if it matters.

# PID reuse

Each process is signalled through a pidfd opened *before* its membership is checked again, so
a pid that was reused between the walk and the signal is never signalled. A session id cannot
name a stranger while any member of the session lives (the kernel does not reuse a pid still
in use as a session or group id); the one gap is a pid reused as a new session leader after
every member has gone, which the caller closes by checking that the leader's pid is not now a
different process ([`leader_reused`]).
*/

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::sys;

/// How long the SIGKILL phase keeps walking for stragglers (children forked at the last
/// moment, processes in uninterruptible sleep) before the count is reported as it stands.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

/// The grace between SIGTERM and SIGKILL when none is given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How often the processes are walked again while waiting for them to leave.
const POLL: Duration = Duration::from_millis(20);

/// A process found in the leader's session or group: its pid and start time (identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    pid: i32,
    started: u64,
}

/// One teardown under way.
#[derive(Debug)]
pub struct Teardown {
    leader: i32,
    grace_end: Instant,
    killing: Option<Instant>,
    /// Every process signalled so far.
    signalled: Vec<Member>,
    /// Signalled processes still alive at the last walk.
    left: usize,
    done: bool,
}

/// Where a teardown stands after a [`Teardown::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Processes are left; call `step` again after [`Teardown::wait`].
    Waiting,
    /// Nothing is left (or the SIGKILL phase gave up): [`Teardown::ended`] is final.
    Done,
}

impl Teardown {
    /// Sends SIGTERM to every process in `leader`'s session and process group (except the
    /// caller) and starts the grace.
    pub fn begin(leader: i32, grace: Duration) -> Teardown {
        let mut teardown = Teardown {
            leader,
            grace_end: Instant::now() + grace,
            killing: None,
            signalled: Vec::new(),
            left: 0,
            done: false,
        };
        teardown.signal_all(Signal::SIGTERM);
        teardown
    }

    /// Walks again: signals newcomers, and once the grace is over sends SIGKILL to everything
    /// left. Cheap to call early (a stop signal may wake the caller): nothing happens before
    /// its time.
    pub fn step(&mut self) -> Step {
        if self.done {
            return Step::Done;
        }
        let now = Instant::now();
        let kill = self.killing.is_some() || now >= self.grace_end;
        self.signal_all(if kill {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        });
        if kill && self.left > 0 {
            self.killing.get_or_insert(now);
        }
        self.done = self.left == 0
            || self
                .killing
                .is_some_and(|since| now.duration_since(since) >= KILL_WAIT);
        if self.done {
            Step::Done
        } else {
            Step::Waiting
        }
    }

    /// Skips the rest of the grace: the next `step` sends SIGKILL.
    pub fn hurry(&mut self) {
        self.grace_end = Instant::now();
    }

    /// How long to wait before the next `step`.
    pub fn wait(&self) -> Duration {
        match self.killing {
            Some(_) => POLL,
            None => POLL.min(self.grace_end.saturating_duration_since(Instant::now())),
        }
    }

    /// How many processes were signalled and are gone.
    pub fn ended(&self) -> usize {
        self.signalled.len() - self.left
    }

    /// Whether SIGKILL was needed.
    pub fn killed(&self) -> bool {
        self.killing.is_some()
    }

    /// The whole teardown, blocking: SIGTERM, up to `grace` for the processes to leave,
    /// SIGKILL. Returns the teardown, finished.
    pub fn run(leader: i32, grace: Duration) -> Teardown {
        let mut teardown = Teardown::begin(leader, grace);
        while teardown.step() == Step::Waiting {
            std::thread::sleep(teardown.wait());
        }
        teardown
    }

    /// Signals every current member with `sig` (newcomers are remembered); counts those of
    /// ours still alive. Every member is pinned (a pidfd) before the first signal goes out:
    /// one signal can end others (the leader's death hangs up its terminal, and the kernel's
    /// SIGHUP ends the foreground group), and those are ours to count.
    fn signal_all(&mut self, sig: Signal) {
        let me = std::process::id() as i32;
        let pinned: Vec<(Member, OwnedFd)> = members(self.leader)
            .into_iter()
            .filter(|m| m.pid != me)
            .filter_map(|m| pin(self.leader, m).ok().map(|fd| (m, fd)))
            .collect();
        self.left = pinned.len();
        for (member, pidfd) in pinned {
            let known = self.signalled.contains(&member);
            if sig == Signal::SIGTERM && known {
                continue;
            }
            // It may be gone already (ESRCH): ended all the same.
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), sig);
            if !known {
                self.signalled.push(member);
            }
        }
    }
}

/// Whether `leader` now names a process other than the one started at `started` (then its
/// old session has no member left, and the id may belong to a stranger's new session).
pub fn leader_reused(leader: i32, started: Option<u64>) -> bool {
    match (read_stat(leader), started) {
        (Some(stat), Some(started)) => stat.started != started,
        _ => false,
    }
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    read_stat(pid).is_some_and(|s| !matches!(s.state, b'Z' | b'X'))
}

/// The live processes (not zombies) whose session id or process group is `leader`.
fn members(leader: i32) -> Vec<Member> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            if stat.is_member_of(leader) {
                found.push(Member {
                    pid,
                    started: stat.started,
                });
            }
        }
    }
    found
}

/// A pidfd for `member`, opened before its membership is checked again, so the pidfd names
/// the process that was found (same start time, still in `leader`'s session or group) and no
/// other that reused its pid.
fn pin(leader: i32, member: Member) -> io::Result<OwnedFd> {
    let pidfd = sys::pidfd_open(member.pid)?;
    match read_stat(member.pid) {
        Some(stat) if stat.started == member.started && stat.is_member_of(leader) => Ok(pidfd),
        _ => Err(io::Error::from(nix::errno::Errno::ESRCH)),
    }
}

/// A pidfd for `pid` (`pidfd_open(2)`): signals through it reach that process or none.
pub fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    sys::pidfd_open(pid)
}

/// Sends SIGTERM to the process `pidfd` names and waits up to `wait` for it to exit; whether
/// it did. (`mosaic-fleet stop` ends the sidecar this way before the agent's tree.)
pub fn terminate(pidfd: &OwnedFd, wait: Duration) -> io::Result<bool> {
    send_term(pidfd)?;
    wait_exit(pidfd, Instant::now() + wait)
}

/// Sends SIGTERM to the process `pidfd` names.
pub fn send_term(pidfd: &OwnedFd) -> io::Result<()> {
    send(pidfd, Signal::SIGTERM)
}

/// Sends `sig` to the process `pidfd` names.
pub fn send(pidfd: &OwnedFd, sig: Signal) -> io::Result<()> {
    sys::pidfd_send_signal(pidfd.as_fd(), sig)
}

/// Waits until the process `pidfd` names has exited, or `deadline`; whether it did.
pub fn wait_exit(pidfd: &OwnedFd, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        // A pidfd is readable once its process has exited.
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) => return Ok(false),
            Err(nix::errno::Errno::EINTR) if !left.is_zero() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The fields of `/proc/PID/stat` a teardown needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    state: u8,
    pgrp: i32,
    session: i32,
    started: u64,
}

impl Stat {
    fn is_member_of(&self, leader: i32) -> bool {
        !matches!(self.state, b'Z' | b'X') && (self.session == leader || self.pgrp == leader)
    }
}

fn read_stat(pid: i32) -> Option<Stat> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&bytes)
}

/// Parses `/proc/PID/stat`, counting fields after the last `)` (the command name may hold
/// anything): state (3), pgrp (5), session (6), starttime (22).
fn parse_stat(stat: &[u8]) -> Option<Stat> {
    let fields: Vec<&str> = crate::proc::stat_fields(stat)?.collect();
    // fields[0] is field 3.
    Some(Stat {
        state: *fields.first()?.as_bytes().first()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stat_fields_are_counted_after_the_last_paren() {
        let line =
            b"4242 (a) b) (c) S 1 4240 4241 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                pgrp: 4240,
                session: 4241,
                started: 987654
            })
        );
        assert_eq!(parse_stat(b"1 (x) Z 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn a_session_and_its_background_children_are_ended() {
        // A shell that becomes a session leader and leaves children behind, one of them
        // immune to SIGTERM (it needs the SIGKILL) and one under nohup.
        // setsid(1) makes it a session leader in place (a spawned child leads no group, so
        // it need not fork): the pid we hold is the leader's.
        let mut leader = Command::new("setsid");
        leader.args([
            "sh",
            "-c",
            "sleep 1000 & nohup sleep 1000 >/dev/null 2>&1 & sh -c 'trap \"\" TERM; sleep 1000; :' & wait",
        ]);
        let mut child = leader.spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while members(pid).len() < 5 {
            assert!(Instant::now() < deadline, "children never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let teardown = Teardown::run(pid, Duration::from_millis(200));
        child.wait().unwrap();
        assert!(members(pid).is_empty(), "left: {:?}", members(pid));
        // sh, three sleeps and the trapping sh.
        assert_eq!(teardown.ended(), 5, "{teardown:?}");
        assert!(teardown.killed(), "the TERM-immune child needed SIGKILL");
    }

    #[test]
    fn nothing_to_end_is_zero() {
        let teardown = Teardown::run(i32::MAX - 1, Duration::from_millis(10));
        assert_eq!((teardown.ended(), teardown.killed()), (0, false));
    }
}
