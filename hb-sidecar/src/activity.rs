/*!
Activity: is the agent working (`busy`), quiet (`idle`), or asking for someone (`waiting`)?

An agent in a tmux pane talks to the world through its terminal, so the cheapest true signal is
the terminal itself: every write the agent makes to its pty is an `IN_MODIFY` on the pty's
inode (`/proc/PID/fd/1`, else `0`), and a terminal bell is a byte appended to a mark file beside
the heartbeat file (`.NAME.hb.bell`), whose closes are `IN_CLOSE_WRITE`s. The pane's transcript
writer (`mosaic-log --bell`), which reads the pane's bytes in order, appends `b` when what it
read ends in a bell and `o` when output follows a bell it marked: the mark's last byte says
which came last, however close they were. Without a transcript, tmux's `alert-bell` hook
appends a `.` instead (later than the output that follows a bell by a millisecond). A bell rung
before the watch began (in the agent's first milliseconds) is read from the mark: a byte
written since the pty was made. Both watches sit on one inotify descriptor, the third
descriptor of the sidecar's one `ppoll`. No process, no tmux call, no screen scraping.

```text
            output                        no output for IDLE_AFTER
   idle ─────────────> busy ───────────────────────────────────────> idle
     │                 ▲  │ bell
     │ bell            │  ▼
     └─────────────> waiting   (until the next output: then busy again)
```

`activity_since` is when the current activity began: the first output after a quiet spell for
`busy`, the bell for `waiting`, and the last output for `idle` (so `idle 14m` means fourteen
minutes without a byte).

Bounded wake-ups, whatever the agent prints: once the descriptor has woken us, we stop polling
it for [`QUIET`] (one second) and read it once when that ends. The watch stays armed meanwhile,
and the kernel merges repeated identical events, so nothing is lost (an output during the quiet
second is seen at its end) and a busy agent costs one wake-up and one `read` a second. Hence
times are good to about a second: idle shows between `IDLE_AFTER` and `IDLE_AFTER` + 1 s after
the last output, and waiting within a second of the bell. A change of activity is written at
once, as an extra record, so it does not wait for the next beat.

When the agent is Claude Code and its undocumented session file names the agent's process
([`claude`]), that file's `status` decides instead, while it is there: it is the agent's own
word, and it knows a silent tool run from a quiet prompt.

Limits, by design: output is not work (a long silent tool run looks idle; a redraw after a
resize, or a spinner, looks busy; so does a bell followed by any byte); a bell is only seen when
the launcher gave the pane a transcript writer or the hook (with tmux's `monitor-bell` on, the
default); output written through `/dev/tty` instead of the inherited descriptor is another
inode and is not seen. With the hook alone, a bell and output that tmux reads in one go are one
event, whose hook runs after both: `waiting`, though output came last; so is a bell that output
followed before the watch began. A target without a terminal (the sidecar run alone on any PID)
has no activity at all.
*/

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

use mosaic_core::activity::{Activity, QUIET};
use mosaic_core::layout::bell_name;
use mosaic_core::sys::{inotify_add_watch, inotify_init};

pub mod claude;

/// The watch on one agent's terminal and bell mark, and what it concluded so far.
pub struct Watch {
    inotify: OwnedFd,
    tty: libc::c_int,
    /// The bell mark's watch, and the mark (its last byte says what came last).
    bell: Option<(libc::c_int, OwnedFd)>,
    idle_after: Duration,
    activity: Activity,
    since: DateTime<Utc>,
    /// When output was last seen (to within [`QUIET`]).
    last_output: Instant,
    /// While set, the descriptor is not polled; it is read once at this instant.
    quiet_until: Option<Instant>,
    /// Claude Code's sessions directory, when there is one.
    claude: Option<claude::Sessions>,
    /// What the agent's own session file says, which then decides over the terminal.
    said: Option<(Activity, DateTime<Utc>)>,
}

/// What one read of the inotify descriptor found, in order of arrival.
#[derive(Default)]
struct Seen {
    /// Any event at all.
    any: bool,
    output: bool,
    /// The last relevant event was a bell (a bell followed by output is busy again).
    bell_last: bool,
    /// The last thing the agent's session file said.
    said: Option<claude::Said>,
}

impl Watch {
    /// Watches the terminal of `pid` and the bell mark for heartbeat file `name` in `dir`.
    /// `Ok(None)`: the target has no terminal, so there is no activity to report. A bell mark
    /// that cannot be made leaves the terminal watch working (logged, not fatal).
    pub fn attach(
        pid: i32,
        dir: BorrowedFd,
        name: &CStr,
        idle_after: Duration,
    ) -> io::Result<Option<Watch>> {
        let Some(tty) = open_terminal(pid) else {
            return Ok(None);
        };
        let inotify = inotify_init()?;
        let tty_wd = add_watch(&inotify, &tty, libc::IN_MODIFY)?;
        // Watched before it is read: a bell from now on is an event, an earlier one is in it.
        let mut rang = None;
        let bell = match open_bell(dir, &bell_name(name)) {
            Ok(mark) => {
                let wd = add_watch(&inotify, &mark, libc::IN_CLOSE_WRITE)?;
                rang = rang_before(&mark, &tty);
                Some((wd, mark))
            }
            Err(e) => {
                crate::log(format_args!(
                    "cannot watch the bell mark {:?}: {} (activity without bells)",
                    bell_name(name),
                    mosaic_core::why(&e)
                ));
                None
            }
        };
        // The pty's mtime follows output in steps of a few seconds: good enough for where we
        // start. A silent agent we attach to late is idle since then, not busy since now.
        let (now, wall) = (Instant::now(), Utc::now());
        let quiet_for = modified(&tty)
            .and_then(|t| (wall - t).to_std().ok())
            .unwrap_or_default();
        let last_output = now.checked_sub(quiet_for).unwrap_or(now);
        let since = wall - chrono::Duration::from_std(quiet_for).unwrap_or_default();
        // A target that has never written a byte (`sleep 1000`; an agent waiting for its
        // first prompt is not one) has said nothing, however new its terminal is: idle.
        let silent = mosaic_core::proc::written(pid) == Some(0);
        let (activity, since) = match rang {
            // The agent asked for someone before we watched (in its first milliseconds).
            Some(at) => (Activity::Waiting, at),
            None if quiet_for >= idle_after || silent => (Activity::Idle, since),
            None => (Activity::Busy, since),
        };
        let mut watch = Watch {
            inotify,
            tty: tty_wd,
            bell,
            idle_after,
            activity,
            since,
            last_output,
            quiet_until: None,
            claude: None,
            said: None,
        };
        if let Some((sessions, said)) = claude::Sessions::attach(watch.inotify.as_fd(), pid) {
            watch.claude = Some(sessions);
            if let Some(said) = said {
                watch.take(said, wall);
            }
        }
        Ok(Some(watch))
    }

    /// How long without output counts as idle.
    pub fn idle_after(&self) -> Duration {
        self.idle_after
    }

    /// The activity now and when it began: the agent's own word when it gives one, else the
    /// terminal's.
    pub fn current(&self) -> (Activity, DateTime<Utc>) {
        self.said.unwrap_or((self.activity, self.since))
    }

    /// Takes in what the agent's session file said, at `now`.
    fn take(&mut self, said: claude::Said, now: DateTime<Utc>) {
        self.said = match said {
            claude::Said::Nothing => None,
            claude::Said::Is(activity, at) => match self.said {
                Some((same, since)) if same == activity => Some((same, since)),
                _ => Some((activity, at.unwrap_or(now))),
            },
        };
    }

    /// The descriptor to poll, unless we are in a quiet second.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self.quiet_until {
            Some(_) => None,
            None => Some(self.inotify.as_fd()),
        }
    }

    /// When [`Watch::update`] must run even if nothing is readable: the end of a quiet second,
    /// or the moment a busy agent turns idle.
    pub fn deadline(&self) -> Option<Instant> {
        // Within a quiet second we cannot tell idle from unread output: its end decides.
        self.quiet_until.or_else(|| {
            (self.activity == Activity::Busy).then(|| self.last_output + self.idle_after)
        })
    }

    /// Takes in what happened: `readable` when `ppoll` said the descriptor is. Returns whether
    /// the activity changed (the caller writes a record at once).
    pub fn update(&mut self, now: Instant, readable: bool) -> bool {
        let was = self.current().0;
        let due = self.quiet_until.is_some_and(|t| now >= t);
        if readable || due {
            let seen = self.read();
            // Quiet again only if this read found something; else poll the descriptor again.
            self.quiet_until = (readable || seen.any).then(|| now + QUIET);
            let checked = self.claude.as_mut().and_then(claude::Sessions::check);
            if let Some(said) = seen.said.or(checked) {
                self.take(said, Utc::now());
            }
            if seen.output {
                self.last_output = now;
            }
            if seen.bell_last {
                self.become_(Activity::Waiting, Utc::now());
            } else if seen.output {
                self.become_(Activity::Busy, Utc::now());
            }
        }
        if self.activity == Activity::Busy
            && self.quiet_until.is_none()
            && now >= self.last_output + self.idle_after
        {
            let quiet = chrono::Duration::from_std(now - self.last_output).unwrap_or_default();
            self.become_(Activity::Idle, Utc::now() - quiet);
        }
        self.current().0 != was
    }

    fn become_(&mut self, activity: Activity, since: DateTime<Utc>) {
        if self.activity != activity {
            self.activity = activity;
            self.since = since;
        }
    }

    /// Drains what is queued (a nonblocking read; nothing queued is fine).
    fn read(&mut self) -> Seen {
        let mut seen = Seen::default();
        // Room for many events, and always for one with the longest name; more stay queued
        // and are read at the next wake-up.
        let mut buf = [0u8; 4096 + EVENT + 256];
        let Ok(n) = nix::unistd::read(&self.inotify, &mut buf) else {
            return seen;
        };
        seen.any = n > 0;
        // `struct inotify_event`: wd (i32), mask (u32), cookie (u32), len (u32), then `len`
        // bytes of name, NUL-padded (none for our watches on files).
        let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let mut at = 0;
        while at + EVENT <= n {
            let (wd, mask, len) = (word(at) as i32, word(at + 4), word(at + 12));
            let name = &buf[(at + EVENT).min(n)..(at + EVENT + len as usize).min(n)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            at += EVENT + len as usize;
            if let Some(sessions) = self.claude.as_mut().filter(|c| c.wd() == wd) {
                if let Some(said) = sessions.event(mask, name) {
                    seen.said = Some(said);
                }
                continue;
            }
            if mask & libc::IN_Q_OVERFLOW != 0 || (wd == self.tty && mask & libc::IN_MODIFY != 0) {
                // (An overflow lost events: the agent certainly wrote something.)
                seen.output = true;
                seen.bell_last = false;
            } else if let Some((_, mark)) = self.bell.as_ref().filter(|b| b.0 == wd) {
                if mask & libc::IN_CLOSE_WRITE == 0 {
                    continue;
                }
                // `o`: the transcript's writer saw output after the bell it marked.
                if last_byte(mark) == Some(b'o') {
                    seen.output = true;
                    seen.bell_last = false;
                } else {
                    seen.bell_last = true;
                }
            }
        }
        seen
    }
}

/// The size of an inotify event without a name.
const EVENT: usize = std::mem::size_of::<libc::inotify_event>();

/// How long we wait for a pane's process to get its terminal (see [`open_terminal`]).
const PANE_SETUP: Duration = Duration::from_secs(2);

/// The target's terminal, opened read-only without becoming ours (`O_NOCTTY`): its stdout,
/// else its stdin. `None` when neither is a terminal.
///
/// tmux names a pane's pid as soon as it forks, and the child takes the pty as its stdio a
/// moment later: until then it is still a copy of the server (`comm` "tmux: server", stdio on
/// /dev/null). So while the target looks like that, we look again (5 ms steps, at most
/// [`PANE_SETUP`]); any other target is answered at once.
fn open_terminal(pid: i32) -> Option<OwnedFd> {
    let give_up = Instant::now() + PANE_SETUP;
    loop {
        if let Some(tty) = terminal_now(pid) {
            return Some(tty);
        }
        let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with(b"tmux") || Instant::now() >= give_up {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn terminal_now(pid: i32) -> Option<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    [1, 0].into_iter().find_map(|fd| {
        let tty = open(
            format!("/proc/{pid}/fd/{fd}").as_str(),
            flags,
            Mode::empty(),
        )
        .ok()?;
        nix::unistd::isatty(&tty).ok()?.then_some(tty)
    })
}

/// Creates (or opens) the bell mark, refusing anything but a regular file: no symlink is
/// followed (`O_NOFOLLOW` relative to the directory descriptor), no FIFO or device is kept.
fn open_bell(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags =
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))?;
    if SFlag::from_bits_truncate(fstat(&fd)?.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(fd)
}

/// Watches the very inode `file` is open on: `/proc/self/fd/N` resolves to it, so no name
/// can be swapped between our check and the watch.
fn add_watch(inotify: &OwnedFd, file: &OwnedFd, mask: u32) -> io::Result<libc::c_int> {
    let path =
        CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("digits have no NUL");
    inotify_add_watch(inotify.as_fd(), &path, mask)
}

/// When tmux marked a bell on this terminal before we watched: the mark has a byte (the hook
/// appends one per bell; the sidecar creates it empty) and was written since the terminal was
/// made (a pty's ctime is its creation: output moves only its mtime). A bell of an earlier
/// pane of the agent is older than its terminal.
fn rang_before(mark: &OwnedFd, tty: &OwnedFd) -> Option<DateTime<Utc>> {
    let last = last_byte(mark);
    let (mark, tty) = (fstat(mark).ok()?, fstat(tty).ok()?);
    let since_made = (mark.st_mtime, mark.st_mtime_nsec) >= (tty.st_ctime, tty.st_ctime_nsec);
    if mark.st_size == 0 || !since_made || last == Some(b'o') {
        return None;
    }
    DateTime::from_timestamp(mark.st_mtime, mark.st_mtime_nsec as u32)
}

/// The mark's last byte: `.` from tmux's hook, `b` or `o` from the transcript's writer.
fn last_byte(mark: &OwnedFd) -> Option<u8> {
    let size = fstat(mark).ok()?.st_size;
    let mut byte = [0u8];
    let n = nix::sys::uio::pread(mark, &mut byte, size.checked_sub(1)?).ok()?;
    (n == 1).then_some(byte[0])
}

fn modified(fd: &OwnedFd) -> Option<DateTime<Utc>> {
    let st = fstat(fd).ok()?;
    DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
}
