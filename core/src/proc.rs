/*!
Reading `/proc/PID/stat`: a process's state, start time (its identity: a pid reused by
another process has another start time) and, while it is a zombie, how it ended; and
`/proc/PID/io`: whether it ever wrote anything.

Every reader of `/proc` in the workspace goes through here: the sidecar's target, the
teardown's walk of a session, the launcher's look at a pane or a sidecar.
*/

use std::io::Read;
use std::path::PathBuf;

/// `/proc/PID/stat`.
pub fn stat_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// Reads the state (field 3) and start time (field 22) of `/proc/PID/stat`, without
/// allocating. Fields are counted after the last `)`: the command name may hold anything.
/// (`std` opens a short path through a stack buffer, so a beat still allocates nothing.)
pub fn read_stat(path: &std::path::Path) -> Option<(u8, u64)> {
    let mut buf = [0u8; 2048];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    parse_stat(&buf[..n])
}

/// The state of `pid` (field 3 of `/proc/PID/stat`: `R`, `S`, `T`, `Z`, ...), if it exists.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat)?.next()?.chars().next()
}

/// Seconds since `pid` started (its start time against `/proc/uptime`), if it exists: the
/// age of one run, where a tmux session's age counts every run it held.
pub fn age(pid: i32) -> Option<f64> {
    let started = start_time(pid)? as f64 / crate::sys::clock_ticks() as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((uptime - started).max(0.0))
}

/// How many bytes `pid` has written in its life, to anything (`wchar` of `/proc/PID/io`,
/// kept across `exec`), if it can be read.
pub fn written(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))?
        .trim()
        .parse()
        .ok()
}

/// The wait status of `pid` while it is a zombie (field 52 of `/proc/PID/stat`, Linux 3.5+):
/// how it ended, readable until its parent (tmux, for a pane) reaps it.
pub fn zombie_status(pid: i32) -> Option<i32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_zombie_status(&stat)
}

fn parse_zombie_status(stat: &[u8]) -> Option<i32> {
    let mut fields = stat_fields(stat)?;
    if fields.next()? != "Z" {
        return None;
    }
    // The state was field 3: field 52 is 48 further.
    fields.nth(52 - 4)?.parse().ok()
}

/// Has the tmux server reap `pid`, a pane's process, when it is a zombie that started at
/// `started` and tmux is its parent: sends the server SIGCHLD until it does, or until `within`
/// has passed; `false` only if it is still unreaped then. Any other parent is left alone.
///
/// Why: tmux 3.3a as Debian builds it (with libutempter) loses a pane's SIGCHLD now and then.
/// When the pane's terminal closes, tmux removes its utmp record through libutempter, which
/// sets SIGCHLD to `SIG_DFL` while its helper runs; the pane's own SIGCHLD, sent a moment after
/// the terminal closed, lands in that window and is discarded. The pane then stays a zombie,
/// `#{pane_dead_status}` empty and the `pane-died` hook unrun, until the server's next SIGCHLD
/// (11 to 18 deaths of 30 by hand, plain tmux, no mosaic involved). A SIGCHLD sent now makes tmux
/// reap it at once; one sent inside the window is lost too, hence the retries.
pub fn hurry_tmux(pid: i32, started: u64, within: std::time::Duration) -> bool {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(2);
    loop {
        let Ok(stat) = std::fs::read(stat_path(pid)) else {
            return true;
        };
        let ours = parse_stat(&stat).is_some_and(|(state, at)| state == b'Z' && at == started);
        // The parent is field 4, right after the state.
        let parent = stat_fields(&stat).and_then(|mut f| f.nth(1)?.parse::<i32>().ok());
        let (true, Some(parent)) = (ours, parent.filter(|&p| p > 1)) else {
            return true;
        };
        // tmux names its server process `tmux: server`.
        let comm = std::fs::read(format!("/proc/{parent}/comm")).unwrap_or_default();
        if !comm.starts_with(b"tmux") {
            return true;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(parent),
            nix::sys::signal::Signal::SIGCHLD,
        );
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The fields of `/proc/PID/stat` from field 3 (the state) on: counted after the last `)`,
/// because the command name (field 2) may hold spaces and parentheses. Allocates nothing.
pub fn stat_fields(stat: &[u8]) -> Option<std::str::SplitAsciiWhitespace<'_>> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    Some(
        std::str::from_utf8(&stat[close + 1..])
            .ok()?
            .split_ascii_whitespace(),
    )
}

/// Parses the bytes of `/proc/PID/stat`: (state, starttime).
pub fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // starttime is field 22; state was field 3, so skip fields 4..=21.
    let started = fields.nth(18)?;
    let started = std::str::from_utf8(started).ok()?.parse().ok()?;
    Some((state, started))
}

/// The start time of `pid` now (clock ticks since boot, field 22), when `/proc` shows it.
pub fn start_time(pid: i32) -> Option<u64> {
    read_stat(&stat_path(pid)).map(|(_, started)| started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_age_is_short_and_a_strangers_unknown() {
        let ours = age(std::process::id() as i32).unwrap();
        assert!((0.0..3600.0).contains(&ours), "{ours}");
        assert_eq!(age(-1), None);
    }

    #[test]
    fn we_have_written_something_and_a_stranger_nothing_we_can_read() {
        std::fs::write("/dev/null", b"so that this process has written").unwrap();
        assert!(written(std::process::id() as i32).is_some_and(|n| n > 0));
        assert_eq!(written(-1), None);
    }

    #[test]
    fn a_process_state_is_read_and_a_missing_process_has_none() {
        assert!(matches!(
            process_state(std::process::id() as i32),
            Some('R' | 'S')
        ));
        // A child that exited and is not reaped yet is a zombie; reaped, it is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while process_state(pid) != Some('Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(process_state(pid), Some('Z'));
        child.wait().unwrap();
        assert_eq!(process_state(pid), None);
    }

    #[test]
    fn only_a_zombie_of_tmux_is_hurried() {
        // Our zombie child: its parent is this test, not tmux, so nothing is sent and it is
        // left as it is (a running process, or a pid with another start, likewise).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while process_state(pid) != Some('Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let started = start_time(pid).unwrap();
        let within = std::time::Duration::from_secs(5);
        let at = std::time::Instant::now();
        assert!(hurry_tmux(pid, started, within));
        assert!(at.elapsed() < within);
        assert_eq!(process_state(pid), Some('Z'));
        child.wait().unwrap();
        assert!(hurry_tmux(pid, started, within));
    }

    #[test]
    fn parse_stat_counts_after_the_last_paren() {
        let line = b"4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 0";
        assert_eq!(parse_stat(line), Some((b'S', 987654)));
        assert_eq!(parse_stat(b"1 (x) Z 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn a_zombie_says_how_it_ended() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let status = loop {
            if let Some(status) = zombie_status(pid) {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(
            (status >> 8) & 0xff,
            7,
            "a wait status: exit code in bits 8-15"
        );
        child.wait().unwrap();
        assert_eq!(zombie_status(pid), None, "reaped: gone");
        assert_eq!(parse_zombie_status(b"1 (x) S 0"), None);
    }
}
