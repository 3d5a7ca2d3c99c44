/*!
Claude Code's own word on its state, when it gives it.

Claude Code keeps `~/.claude/sessions/<pid>.json` (under `$CLAUDE_CONFIG_DIR` when set) for each
running process, with `status` (`busy`, `idle`, `waiting`; other values appear) and `procStart`
(`/proc/PID/stat` field 22, its start time). It is undocumented, so it is used only as a
better opinion than the terminal's and only while every field we rely on is there: the file
must name a process that is our target or descends from it, with that process's very start
time, be an `interactive` session when it says its `kind` (not a `claude -p` the agent runs as a
tool), and give a status we know. Then it decides the activity (a silent tool run is `busy`, a
permission prompt `waiting`, a cursor blinking at the prompt `idle`); otherwise the terminal
does, as if the file were not there.

The sessions directory is one more watch on the activity's inotify descriptor, so it costs no
process, no beat, and no wake-up beyond the activity's one a second. Events for other agents'
sessions are told apart by name: a pid that is not ours is remembered as a stranger.
*/

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use nix::dir::Dir;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use super::Activity;
use mosaic_core::sys::inotify_add_watch;

/// What the agent's session file now says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Said {
    /// This activity, changed at this time when the file says.
    Is(Activity, Option<DateTime<Utc>>),
    /// Nothing we can use (gone, another process's, a status we do not know): the terminal
    /// decides again.
    Nothing,
}

/// How far up the process tree a session's pid is followed to find our target.
const MAX_DEPTH: usize = 32;

/// How many entries an initial scan of the directory looks at.
const MAX_SCAN: usize = 1024;

/// The watch on Claude Code's sessions directory for one target.
pub struct Sessions {
    dir: OwnedFd,
    wd: i32,
    target: i32,
    /// The session process found to be ours, with its start time.
    ours: Option<(i32, u64)>,
    /// Pids seen in the directory that are not ours (a small ring: no allocation).
    strangers: [i32; 32],
    next: usize,
}

impl Sessions {
    /// Watches the sessions directory on `inotify`, if there is one, and reads what our
    /// target's session says already (a sidecar may start after its agent).
    pub fn attach(inotify: BorrowedFd, target: i32) -> Option<(Sessions, Option<Said>)> {
        let path = sessions_dir()?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = open(&path, flags, Mode::empty()).ok()?;
        let proc_path = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_ONLYDIR;
        let wd = inotify_add_watch(inotify, &proc_path, mask).ok()?;
        let mut sessions = Sessions {
            dir,
            wd,
            target,
            ours: None,
            strangers: [0; 32],
            next: 0,
        };
        let said = sessions.scan();
        Some((sessions, said))
    }

    /// The watch descriptor whose events go to [`Sessions::event`].
    pub fn wd(&self) -> i32 {
        self.wd
    }

    /// An event on the directory for entry `name`: what our session now says, or `None` when
    /// the event is not about it.
    pub fn event(&mut self, mask: u32, name: &[u8]) -> Option<Said> {
        let pid = session_pid(name)?;
        if let Some((ours, _)) = self.ours {
            if pid != ours {
                if self.ours_alive() {
                    return None;
                }
                self.ours = None;
            }
        }
        if mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 {
            return (self.ours.map(|(p, _)| p) == Some(pid)).then(|| {
                self.ours = None;
                Said::Nothing
            });
        }
        if self.ours.is_none() {
            if self.strangers.contains(&pid) {
                return None;
            }
            match self.adopt(pid) {
                Some(start) => self.ours = Some((pid, start)),
                None => {
                    self.strangers[self.next] = pid;
                    self.next = (self.next + 1) % self.strangers.len();
                    return None;
                }
            }
        }
        Some(self.read(name))
    }

    /// Whether the session process we follow still runs (the same process, by start time).
    /// When it does not, we stop following it and say so.
    pub fn check(&mut self) -> Option<Said> {
        if self.ours.is_some() && !self.ours_alive() {
            self.ours = None;
            return Some(Said::Nothing);
        }
        None
    }

    fn ours_alive(&self) -> bool {
        self.ours
            .is_some_and(|(pid, start)| stat(pid).is_some_and(|(_, s)| s == start))
    }

    /// Its start time, when `pid` is our target or one of its descendants.
    fn adopt(&self, pid: i32) -> Option<u64> {
        let (mut parent, start) = stat(pid)?;
        if pid == self.target {
            return Some(start);
        }
        for _ in 0..MAX_DEPTH {
            if parent == self.target {
                return Some(start);
            }
            if parent <= 1 {
                return None;
            }
            parent = stat(parent)?.0;
        }
        None
    }

    /// Looks for our session among the files already there.
    fn scan(&mut self) -> Option<Said> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::openat(&self.dir, ".", flags, Mode::empty()).ok()?;
        let names: Vec<Vec<u8>> = dir
            .iter()
            .take(MAX_SCAN)
            .filter_map(|e| Some(e.ok()?.file_name().to_bytes().to_vec()))
            .filter(|name| session_pid(name).is_some())
            .collect();
        names
            .iter()
            .find_map(|name| self.event(libc::IN_CLOSE_WRITE, name))
    }

    /// What our session's file says: at most 16 KiB, never through a symlink.
    fn read(&mut self, name: &[u8]) -> Said {
        let Some((_, start)) = self.ours else {
            return Said::Nothing;
        };
        let Ok(name) = CString::new(name) else {
            return Said::Nothing;
        };
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let Ok(file) = openat(&self.dir, name.as_c_str(), flags, Mode::empty()) else {
            return Said::Nothing;
        };
        let mut buf = [0u8; 16 * 1024];
        let Ok(n) = nix::unistd::read(&file, &mut buf) else {
            return Said::Nothing;
        };
        said(&buf[..n], start)
    }
}

/// What a session file's text says about a process started at `start`.
pub fn said(json: &[u8], start: u64) -> Said {
    let number =
        |key: &[u8]| -> Option<u64> { std::str::from_utf8(field(json, key)?).ok()?.parse().ok() };
    if number(b"procStart") != Some(start) {
        // A previous process that had this pid, or a file without the field: not ours.
        return Said::Nothing;
    }
    // A session the agent runs as a tool (`claude -p` in a codex pane, say) is not the agent.
    if field(json, b"kind").is_some_and(|kind| kind != b"interactive") {
        return Said::Nothing;
    }
    let activity = match field(json, b"status") {
        Some(b"busy") => Activity::Busy,
        Some(b"idle") => Activity::Idle,
        Some(b"waiting") => Activity::Waiting,
        _ => return Said::Nothing,
    };
    let at = number(b"statusUpdatedAt")
        .and_then(|ms| i64::try_from(ms).ok())
        .and_then(DateTime::from_timestamp_millis);
    Said::Is(activity, at)
}

/// The value of top-level `key` in a JSON object, as written: a string's bytes between its
/// quotes (escapes left as they are), else the bare token (a number). Keys of nested objects
/// are skipped. Enough for the flat fields we read; `None` for anything malformed.
pub fn field<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let (mut depth, mut at, mut expect_key) = (0usize, 0usize, false);
    while at < json.len() {
        match json[at] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = json[at] == b'{' && depth == 1;
                at += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                at += 1;
            }
            b',' => {
                expect_key = depth == 1;
                at += 1;
            }
            b'"' => {
                let (text, end) = string(json, at)?;
                at = end;
                if depth == 1 && expect_key {
                    expect_key = false;
                    at = skip_space(json, at);
                    if json.get(at) != Some(&b':') {
                        return None;
                    }
                    at = skip_space(json, at + 1);
                    if text == key {
                        return match json.get(at)? {
                            b'"' => string(json, at).map(|(value, _)| value),
                            _ => {
                                let end = json[at..]
                                    .iter()
                                    .position(|b| {
                                        matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace()
                                    })
                                    .map_or(json.len(), |n| at + n);
                                Some(&json[at..end])
                            }
                        };
                    }
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// The string starting at the quote at `at`: its raw contents and the index after it.
fn string(json: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let mut end = at + 1;
    while end < json.len() {
        match json[end] {
            b'\\' => end += 2,
            b'"' => return Some((&json[at + 1..end], end + 1)),
            _ => end += 1,
        }
    }
    None
}

fn skip_space(json: &[u8], mut at: usize) -> usize {
    while json.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// `NNN.json` (the current generation of session files; `pid-NNN.json` is the old one, which
/// has no status).
fn session_pid(name: &[u8]) -> Option<i32> {
    let digits = name.strip_suffix(b".json")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `$CLAUDE_CONFIG_DIR/sessions`, else `~/.claude/sessions`.
fn sessions_dir() -> Option<PathBuf> {
    let config = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty());
    let base = match config {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".claude"),
    };
    Some(base.join("sessions"))
}

/// A process's parent and start time, from `/proc/PID/stat` (fields 4 and 22).
fn stat(pid: i32) -> Option<(i32, u64)> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = mosaic_core::proc::stat_fields(&text)?;
    let parent = fields.nth(1)?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some((parent, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_at_the_top_level_only() {
        let json = br#"{"pid": 42, "nested": {"status": "busy"}, "list": [{"status": "x"}, 2],
            "status":"waiting", "procStart": "20095994", "n":7}"#;
        assert_eq!(field(json, b"status"), Some(&b"waiting"[..]));
        assert_eq!(field(json, b"procStart"), Some(&b"20095994"[..]));
        assert_eq!(field(json, b"pid"), Some(&b"42"[..]));
        assert_eq!(field(json, b"n"), Some(&b"7"[..]));
        assert_eq!(field(json, b"missing"), None);
        assert_eq!(
            field(br#"{"a":"q\"uote","status":"idle"}"#, b"status"),
            Some(&b"idle"[..])
        );
        for bad in [&b""[..], b"{", b"{\"status\"", b"}}", b"{\"a\" 1}"] {
            assert_eq!(field(bad, b"status"), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_known_status_of_the_very_process_counts() {
        let file = |status: &str, start: &str| {
            format!(
                r#"{{"pid":9,"procStart":{start},"status":"{status}","statusUpdatedAt":1795659665000}}"#
            )
        };
        let at = DateTime::from_timestamp_millis(1_795_659_665_000);
        assert_eq!(
            said(file("busy", "\"77\"").as_bytes(), 77),
            Said::Is(Activity::Busy, at)
        );
        assert_eq!(
            said(file("waiting", "77").as_bytes(), 77),
            Said::Is(Activity::Waiting, at)
        );
        assert_eq!(said(file("idle", "\"77\"").as_bytes(), 78), Said::Nothing);
        assert_eq!(said(file("shell", "\"77\"").as_bytes(), 77), Said::Nothing);
        assert_eq!(said(br#"{"session_id":"x","cwd":"/"}"#, 77), Said::Nothing);
        let tool = br#"{"procStart":"77","status":"busy","kind":"print"}"#;
        assert_eq!(said(tool, 77), Said::Nothing);
        let agent = br#"{"procStart":"77","status":"busy","kind":"interactive"}"#;
        assert_eq!(said(agent, 77), Said::Is(Activity::Busy, None));
    }

    #[test]
    fn session_files_are_named_by_pid() {
        assert_eq!(session_pid(b"4242.json"), Some(4242));
        for name in [&b"pid-4242.json"[..], b".json", b"42.json.tmp", b"x42.json"] {
            assert_eq!(session_pid(name), None, "{name:?}");
        }
    }

    #[test]
    fn our_own_stat_reads_back() {
        let (parent, start) = stat(std::process::id() as i32).unwrap();
        assert_eq!(parent as u32, std::os::unix::process::parent_id());
        assert_eq!(
            Some(start),
            mosaic_core::proc::start_time(std::process::id() as i32)
        );
    }
}
