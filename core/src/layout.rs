/*!
The heartbeat directory's layout: the one place that names its files. Every writer and reader
(the sidecar, the launcher, `stop`, `prune`, `status`, the exporter) asks here.

For an agent `A` whose record is `A.hb`:

| file | what | written by |
|---|---|---|
| `A.hb` | the record ([`crate::record`]) | its sidecar, by rename; `stop` when the sidecar cannot |
| `.A.hb.lock` | the one-writer lock, holding the sidecar's pid ([`crate::lock`]) | its sidecar |
| `.A.hb.turn` | whose turn it is to launch or stop A ([`crate::lock::Turn`]) | a launch, a stop |
| `.A.hb.bell` | the bell mark tmux's `alert-bell` hook appends to | tmux |
| `.A.hb.hook.log` | the event hooks' output, the last 64 KiB or so ([`HOOK_LOG_CAP`]) | its sidecar's hooks |
| `.A.launch` | the resolved launch, which `restart` reads | the launcher |
| `.A.hb.PID[.SALT].tmp` | a record being written, renamed over `A.hb` | its sidecar |
| `.restart-guard` | the fleet-wide restart guard ([`crate::supervise`]) | every supervising sidecar |

Agent names never start with `.` nor hold one, so no agent's file can be taken for another's
or for the guard.
*/

use std::ffi::{CStr, CString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The suffix of a record's name: `AGENT.hb`.
pub const RECORD_SUFFIX: &str = ".hb";

/// The fleet-wide restart guard, `.restart-guard`.
pub const GUARD_NAME: &CStr = c".restart-guard";

/// The lock file's name for heartbeat file `name`: `.NAME.lock`.
pub fn lock_name(name: &[u8]) -> Vec<u8> {
    let mut lock = Vec::with_capacity(name.len() + 6);
    lock.push(b'.');
    lock.extend_from_slice(name);
    lock.extend_from_slice(b".lock");
    lock
}

/// The lock file beside heartbeat file `file`.
pub fn lock_path(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap_or_default().as_bytes();
    file.with_file_name(std::ffi::OsString::from_vec(lock_name(name)))
}

/// The turn file's name for heartbeat file `name`: `.NAME.turn`, beside the lock file.
pub fn turn_name(name: &[u8]) -> Vec<u8> {
    let mut turn = Vec::with_capacity(name.len() + 6);
    turn.push(b'.');
    turn.extend_from_slice(name);
    turn.extend_from_slice(b".turn");
    turn
}

/// The bell mark's name for heartbeat file `name`: `.NAME.bell`, beside the lock file.
pub fn bell_name(name: &CStr) -> CString {
    let mut bytes = b".".to_vec();
    bytes.extend_from_slice(name.to_bytes());
    bytes.extend_from_slice(b".bell");
    CString::new(bytes).expect("a name from a C string has no NUL")
}

/// The event hooks' log for heartbeat file `name`: `.NAME.hook.log`, beside the lock file.
pub fn hook_log_name(name: &CStr) -> CString {
    let mut bytes = b".".to_vec();
    bytes.extend_from_slice(name.to_bytes());
    bytes.extend_from_slice(b".hook.log");
    CString::new(bytes).expect("a name from a C string has no NUL")
}

/// How large the hooks' log may grow before a hook's run starts it afresh.
pub const HOOK_LOG_CAP: u64 = 64 * 1024;

/// The bell mark's path for heartbeat file `file` (the launcher's hook appends to it).
pub fn bell_path(file: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = CString::new(file.file_name()?.as_bytes()).ok()?;
    let bell = bell_name(&name);
    let bell = std::ffi::OsStr::from_bytes(bell.to_bytes());
    Some(file.with_file_name(bell))
}

/// Splits a heartbeat path into its directory (`.` for a bare name) and a valid file name.
pub fn split(path: &Path) -> Result<(PathBuf, CString), String> {
    let invalid = |why: &str| format!("invalid heartbeat file {}: {why}", path.display());
    let name = path
        .file_name()
        .ok_or_else(|| invalid("it names no file"))?;
    let name = CString::new(name.as_bytes()).map_err(|_| invalid("contains NUL"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

pub fn temp_name(name: &CStr, salt: Option<u64>) -> CString {
    let mut bytes = b".".to_vec();
    bytes.extend_from_slice(name.to_bytes());
    let pid = std::process::id();
    let tail = match salt {
        None => format!(".{pid}.tmp"),
        Some(salt) => format!(".{pid}.{salt:016x}.tmp"),
    };
    bytes.extend_from_slice(tail.as_bytes());
    CString::new(bytes).expect("a name from a C string and digits has no NUL")
}

/// Whether `candidate` is a temp name of heartbeat file `name`, as [`temp_name`] makes them:
/// `.NAME.PID.tmp` or `.NAME.PID.SALT.tmp` (PID decimal, SALT 16 hex digits).
pub fn is_temp_of(name: &[u8], candidate: &[u8]) -> bool {
    let Some(rest) = candidate
        .strip_prefix(b".")
        .and_then(|r| r.strip_prefix(name))
        .and_then(|r| r.strip_prefix(b"."))
        .and_then(|r| r.strip_suffix(b".tmp"))
    else {
        return false;
    };
    let (pid, salt) = match rest.iter().position(|&b| b == b'.') {
        Some(dot) => (&rest[..dot], Some(&rest[dot + 1..])),
        None => (rest, None),
    };
    !pid.is_empty()
        && pid.iter().all(u8::is_ascii_digit)
        && salt.is_none_or(|s| s.len() == 16 && s.iter().all(u8::is_ascii_hexdigit))
}

/// The record's name for `agent`: `AGENT.hb`.
pub fn record_name(agent: &str) -> String {
    format!("{agent}{RECORD_SUFFIX}")
}

/// The record of `agent` in heartbeat directory `dir`.
pub fn record_path(dir: &Path, agent: &str) -> PathBuf {
    dir.join(record_name(agent))
}

/// The launch file's name for `agent`: `.AGENT.launch`.
pub fn launch_name(agent: &str) -> String {
    format!(".{agent}.launch")
}

/// Which of an agent's files a directory entry is, and whose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Record,
    Lock,
    Turn,
    Bell,
    Launch,
    HookLog,
}

/// The agent and kind of a directory entry named `name`, if it is one of an agent's files
/// (temp files and the guard are not: they belong to no one agent's listing).
pub fn classify(name: &str) -> Option<(Kind, &str)> {
    if let Some(agent) = name
        .strip_suffix(RECORD_SUFFIX)
        .filter(|a| !a.starts_with('.'))
    {
        return Some((Kind::Record, agent));
    }
    let hidden = name.strip_prefix('.')?;
    [
        (".hb.lock", Kind::Lock),
        (".hb.turn", Kind::Turn),
        (".hb.bell", Kind::Bell),
        (".hb.hook.log", Kind::HookLog),
        (".launch", Kind::Launch),
    ]
    .into_iter()
    .find_map(|(suffix, kind)| Some((kind, hidden.strip_suffix(suffix)?)))
    .filter(|(_, agent)| !agent.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_an_agent_is_named_and_recognised() {
        assert_eq!(record_name("a-1"), "a-1.hb");
        assert_eq!(lock_name(b"a.hb"), b".a.hb.lock");
        assert_eq!(
            lock_path(Path::new("/run/hb/agent-1.hb")),
            Path::new("/run/hb/.agent-1.hb.lock")
        );
        assert_eq!(
            bell_path(Path::new("/run/hb/a-1.hb")),
            Some(PathBuf::from("/run/hb/.a-1.hb.bell"))
        );
        assert_eq!(bell_path(Path::new("/")), None);
        assert_eq!(launch_name("a"), ".a.launch");
        assert_eq!(turn_name(b"a.hb"), b".a.hb.turn");
        assert_eq!(hook_log_name(c"a.hb").to_bytes(), b".a.hb.hook.log");
        for (name, want) in [
            ("a-1.hb", Some((Kind::Record, "a-1"))),
            (".a-1.hb.lock", Some((Kind::Lock, "a-1"))),
            (".a-1.hb.bell", Some((Kind::Bell, "a-1"))),
            (".a-1.hb.turn", Some((Kind::Turn, "a-1"))),
            (".a-1.launch", Some((Kind::Launch, "a-1"))),
            (".a-1.hb.hook.log", Some((Kind::HookLog, "a-1"))),
            (".restart-guard", None),
            (".a-1.hb.7.tmp", None),
            (".hb.lock", None),
            ("notes.txt", None),
        ] {
            assert_eq!(classify(name), want, "{name}");
        }
    }

    #[test]
    fn temp_names_are_recognised_only_as_made() {
        let name = c"a.hb";
        for salt in [None, Some(0xdead_beef_u64)] {
            let temp = temp_name(name, salt);
            assert!(is_temp_of(name.to_bytes(), temp.to_bytes()), "{temp:?}");
        }
        assert!(!is_temp_of(b"a.hb", b".a.hb.lock"));
        assert!(!is_temp_of(b"a.hb", b".a.hb.x.tmp"));
        assert!(!is_temp_of(b"a.hb", b".ab.hb.1.tmp"));
    }
}
