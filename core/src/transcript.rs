/*!
Transcripts: every logged agent's output on disk, `LOG_DIR/AGENT.log` and its rotated
predecessors `AGENT.log.1` (the newest) ... `AGENT.log.KEEP`, written by `mosaic-log` (the
pane's `pipe-pane` command, `log-writer/`), read by `mosaic-fleet logs`, removed by `prune
--logs`.

`LOG_DIR` is one folder per tmux socket: `BASE/SOCKET`, where `BASE` is `--log-dir`
(`MOSAIC_LOG_DIR`), else `$XDG_STATE_HOME/mosaic/logs`, else `~/.local/state/mosaic/logs`.
Transcripts hold what agents print, secrets included: each level from `mosaic` (or the given
`BASE`) down is created 0700 and refused unless it is a real directory of ours closed to group
and others, and files are opened `O_NOFOLLOW` relative to the directory's descriptor, created
0600, and used only when regular, singly linked and ours.

Each run is opened and closed by a line of ours, `[mosaic] TIME ...`. The opening line is
rendered here ([`opening`]); the launcher writes the first run's before tmux starts it; a
respawn hands its own to the writer through the control file `.AGENT.log.ctl` ([`announce`]),
which also carries how the last run ended (`end STATUS:SIGNAL`, from tmux's `pane-died` hook
or the respawner), so the writer puts each line after all of the run's output.
*/

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use crate::death::Death;

/// The variable that names the transcripts' base directory.
pub const ENV_DIR: &str = "MOSAIC_LOG_DIR";
/// Bytes a transcript file reaches before it is rotated, by default.
pub const DEFAULT_MAX_SIZE: &str = "10M";
/// Rotated files kept, by default.
pub const DEFAULT_KEEP: &str = "5";
/// The most rotated files kept.
pub const MAX_KEEP: u32 = 1000;
/// Every line of ours starts so.
pub const MARK: &str = "[mosaic] ";

/// The default base: `$XDG_STATE_HOME/mosaic/logs`, else `~/.local/state/mosaic/logs`;
/// `None` without an absolute `XDG_STATE_HOME` or `HOME`.
pub fn default_base() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    match std::env::var_os("XDG_STATE_HOME").and_then(abs) {
        Some(state) => Some(state.join("mosaic/logs")),
        None => std::env::var_os("HOME")
            .and_then(abs)
            .map(|home| home.join(".local/state/mosaic/logs")),
    }
}

/// The folder of `socket`'s transcripts under `base`.
pub fn socket_dir(base: &Path, socket: &str) -> PathBuf {
    base.join(socket)
}

/// `AGENT.log`, the current transcript file's name.
pub fn log_name(agent: &str) -> String {
    format!("{agent}.log")
}

/// `.AGENT.log.ctl`, the control file's name.
pub fn ctl_name(agent: &str) -> String {
    format!(".{agent}.log.ctl")
}

/// The transcript files of `agent` in `dir` that exist, oldest first (`AGENT.log.N` ...
/// `AGENT.log.1`, `AGENT.log`): the writer's rotation rule, read back.
pub fn files(dir: &Path, agent: &str) -> Vec<PathBuf> {
    let current = dir.join(log_name(agent));
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(&log_name(agent))?.strip_prefix('.')?;
            let n: u32 = n.parse().ok().filter(|&n| n > 0 && n <= MAX_KEEP)?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if current.exists() {
        out.push(current);
    }
    out
}

/// Reads a transcript file of ours, never through a symlink: `None` unless it is a regular,
/// singly linked file of our user (a planted file's bytes are never shown).
pub fn read(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    private(&file.metadata().ok()?).then_some(())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

fn private(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.nlink() == 1 && meta.uid() == nix::unistd::geteuid().as_raw()
}

/// Creates `dir` (`BASE/SOCKET`) and what it needs, each level 0700, and refuses it unless
/// the levels from `mosaic` (the default base) or `BASE` down are real directories of ours
/// that others cannot write, and `dir` itself is closed to group and others.
pub fn prepare(dir: &Path) -> Result<(), String> {
    let base = dir.parent().unwrap_or(dir);
    let mut checked = vec![(dir.to_path_buf(), 0o077), (base.to_path_buf(), 0o022)];
    if default_base().as_deref() == Some(base) {
        checked.extend(base.parent().map(|p| (p.to_path_buf(), 0o022)));
    }
    let create = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    create.map_err(|e| {
        format!(
            "cannot create log dir {}: {}",
            dir.display(),
            crate::why(&e)
        )
    })?;
    for (level, closed) in checked.iter().rev() {
        let meta = std::fs::symlink_metadata(level).map_err(|e| {
            format!(
                "cannot inspect log dir {}: {}",
                level.display(),
                crate::why(&e)
            )
        })?;
        let me = nix::unistd::geteuid().as_raw();
        let why = if !meta.file_type().is_dir() {
            "it is not a real directory".to_string()
        } else if meta.uid() != me {
            format!("it is owned by uid {}, not {me}", meta.uid())
        } else if meta.mode() & closed != 0 {
            let whom = if *closed == 0o077 {
                "open to"
            } else {
                "writable by"
            };
            format!(
                "it is {whom} group or others (mode {:o})",
                meta.mode() & 0o7777
            )
        } else {
            continue;
        };
        return Err(format!(
            "refusing log dir {}: {why} (set --log-dir or {ENV_DIR}, or --no-log)",
            level.display()
        ));
    }
    Ok(())
}

/// Opens `dir/name` for appending (and reading), created 0600, never through a symlink, and only a private
/// regular file (see [`read`]).
pub fn open_append(dir: &Path, name: &str) -> Result<File, String> {
    let path = dir.join(name);
    let cannot = |why: String| format!("cannot open transcript file {}: {why}", path.display());
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir_fd: OwnedFd = open(dir, flags, Mode::empty()).map_err(|e| cannot(e.desc().into()))?;
    let flags = OFlag::O_RDWR
        | OFlag::O_APPEND
        | OFlag::O_CREAT
        | OFlag::O_NOFOLLOW
        | OFlag::O_NOCTTY
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC;
    let fd = openat(&dir_fd, name, flags, Mode::from_bits_truncate(0o600)).map_err(|e| {
        cannot(match e {
            nix::errno::Errno::ELOOP => "it is a symlink".into(),
            e => e.desc().to_lowercase(),
        })
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| cannot(crate::why(&e)))?;
    if !private(&meta) {
        return Err(cannot("not a private regular file of ours".into()));
    }
    Ok(file)
}

/// The opening line of a run of `command`, now: `[mosaic] TIME run started: COMMAND`, with
/// `what` ("run started", "run restarted") and control bytes of the command escaped, so it
/// stays one line.
pub fn opening(what: &str, command: &[u8]) -> Vec<u8> {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let mut line = format!("{MARK}{now} {what}: ").into_bytes();
    for &b in command {
        match b {
            b'\n' => line.extend_from_slice(b"\\n"),
            0..=0x1f | 0x7f => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => line.push(b),
        }
    }
    line
}

/// The control line that tells the writer how the run of `pid` ended: `end STATUS:SIGNAL PID`.
pub fn end_line(death: Death, pid: Option<i32>) -> String {
    let how = match death {
        Death::Status(s) => format!("{s}:"),
        Death::Signal(s) => format!(":{s}"),
        Death::Unknown => ":".into(),
    };
    match pid {
        Some(pid) => format!("end {how} {pid}\n"),
        None => format!("end {how}\n"),
    }
}

/// How long a respawn waits for the writer to write its opening line.
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(2);

/// Before a respawn: tells `agent`'s writer (in `dir`) how the last run ended, when known, and
/// hands it `line`, the next run's opening line; returns once the writer has written it (then
/// it precedes every byte of the new run), or after [`ANNOUNCE_WAIT`] with no writer, having
/// appended the line itself. `Ok(false)` in that case: no writer is running.
pub fn announce(
    dir: &Path,
    agent: &str,
    ended: Option<(Death, Option<i32>)>,
    line: &[u8],
) -> Result<bool, String> {
    let mut message = ended
        .map(|(death, pid)| end_line(death, pid))
        .unwrap_or_default()
        .into_bytes();
    message.extend_from_slice(b"start ");
    message.extend_from_slice(line);
    message.push(b'\n');
    let mut ctl = open_append(dir, &ctl_name(agent))?;
    let failed =
        |e: std::io::Error| format!("cannot write {}: {}", ctl_name(agent), crate::why(&e));
    ctl.write_all(&message).map_err(failed)?;
    let mut wanted = line.to_vec();
    wanted.extend_from_slice(b"\r\n");
    let log = dir.join(log_name(agent));
    let deadline = Instant::now() + ANNOUNCE_WAIT;
    while Instant::now() < deadline {
        if ends_with(&log, &wanted) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut file = open_append(dir, &log_name(agent))?;
    let mut bytes = b"\r\n".to_vec();
    bytes.extend_from_slice(&wanted);
    file.write_all(&bytes).map_err(failed)?;
    Ok(false)
}

/// Before the session of `agent`'s pane goes (`mosaic-fleet stop`), its run of `pid` having
/// ended and tmux saying the pane is dead (so all its output is in the writer's pipe): tells
/// the writer how. Then wait for [`closed`]: without this, the session's removal can outrun
/// tmux's `pane-died` hook, and the writer, its input ended, closes the run as "pane closed".
pub fn tell_end(dir: &Path, agent: &str, death: Death, pid: i32) -> Result<(), String> {
    let mut ctl = open_append(dir, &ctl_name(agent))?;
    ctl.write_all(end_line(death, Some(pid)).as_bytes())
        .map_err(|e| format!("cannot write {}: {}", ctl_name(agent), crate::why(&e)))
}

/// Whether `agent`'s transcript in `dir` ends in a closing line of ours (`[mosaic] TIME run
/// ended...`): its last run is closed.
pub fn closed(dir: &Path, agent: &str) -> bool {
    ends_closed(&dir.join(log_name(agent)))
}

/// Whether the transcript at `path` ends in a closing line of ours (`[mosaic] TIME run
/// ended...`).
fn ends_closed(path: &Path) -> bool {
    let Some(tail) = last_bytes(path, 512) else {
        return false;
    };
    let text = tail.strip_suffix(b"\r\n").unwrap_or(&tail);
    let last = text.rsplit(|&b| b == b'\n').next().unwrap_or_default();
    last.starts_with(MARK.as_bytes()) && last.windows(10).any(|w| w == b" run ended")
}

fn ends_with(path: &Path, tail: &[u8]) -> bool {
    last_bytes(path, tail.len() as u64).is_some_and(|end| end == tail)
}

/// The last `n` bytes of the file at `path` (fewer when it is shorter).
fn last_bytes(path: &Path, n: u64) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(n))).ok()?;
    let mut tail = Vec::new();
    file.take(n).read_to_end(&mut tail).ok()?;
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_stay_one_line() {
        let line = opening("run started", b"echo a\nb\x1b[31m");
        let text = String::from_utf8(line).unwrap();
        assert!(text.starts_with(MARK), "{text}");
        assert!(
            text.ends_with(" run started: echo a\\nb\\x1b[31m"),
            "{text}"
        );
    }

    #[test]
    fn files_are_listed_oldest_first() {
        let dir = std::env::temp_dir().join(format!("mosaic-transcript-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "a.log", "a.log.2", "a.log.10", "a.log.1", "a.log.x", "ab.log.1", "a.log.0",
        ] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let names: Vec<_> = files(&dir, "a")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.log.10", "a.log.2", "a.log.1", "a.log"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
