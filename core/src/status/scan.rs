/*!
The directory scanner: every `NAME.hb` in a heartbeat directory, read safely.

The directory is opened once and listed through that descriptor; each file is opened relative
to it with `O_NOFOLLOW | O_NONBLOCK`, so a symlink planted in the directory is reported, never
followed, and a planted FIFO cannot block the report. Only a file a sidecar of this user could
have written is read: regular, one link, owned by the effective user; anything else (a hard
link to someone's secret, a file another user planted in a shared directory) is `invalid` with
a reason that says why and never echoes a byte of it. A file is read once, up to
[`READ_LIMIT`]; a bad file becomes a [`Reading`] error and never stops the listing.

Dotfiles (the sidecars' `.NAME.hb.lock` and `.NAME.hb.PID.tmp`) are not heartbeat files.

# Is the sidecar still there? The lock says

A sidecar holds an exclusive `flock` on `.NAME.hb.lock` for its whole life, and the kernel
drops it the instant the sidecar is gone, however it died. So a reader that can open the lock
file learns at once whether a keeper is there ([`Keeper`]), whatever the interval. The probe
asks for a *shared* lock without waiting: refused means the sidecar holds it; granted (and
released at once) means nobody does. A shared probe never refuses another probe, a reader's
or the launcher's (one probe for all: `lock::probe_at` here, `lock::is_held` there), so no
probe takes another for a sidecar; a sidecar that starts in that instant waits for it (it
retries its lock a moment).

The lock is probed *before* the file is read: a sidecar writes its last record before it lets
go of the lock, so a reader that found the lock free reads that last record, and never calls
stale an agent whose sidecar just recorded it `exited`.

Without a lock file (a record written by something other than our sidecar, or a lock file
removed by hand) the record's `hb_pid` is asked instead: `kill(hb_pid, 0)` failing with
`ESRCH` means that writer is gone. A lock file is the better witness: it works across PID
namespaces and for a reader of another user, where a pid may name nothing or someone else.
*/

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use crate::record::{self, Record};
use crate::why;

/// The largest heartbeat file we read: a real record is under 300 bytes, and a bigger file in
/// a shared directory must not cost a reader more than this.
pub const READ_LIMIT: usize = 64 * 1024;

/// A heartbeat file as read: its record, or why it has none.
pub type Reading = Result<Record, String>;

/// One heartbeat file found in the directory.
#[derive(Debug)]
pub struct Found {
    /// The file name without `.hb`, as the directory holds it.
    pub name: Vec<u8>,
    pub reading: Reading,
    /// Whether the file's sidecar is still there, as far as this host can tell.
    pub keeper: Keeper,
}

/// What a reader on this host can tell about the sidecar that keeps a heartbeat file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keeper {
    /// The lock is held: a sidecar is there (though it may be stopped or hung; see its beats).
    Held,
    /// The lock is free: no sidecar keeps the file.
    LockFree,
    /// No lock file, and the record's `hb_pid` names no process.
    PidGone(i32),
    /// Neither the lock nor `hb_pid` could tell: judge by the record's age alone.
    Unknown,
}

/// The heartbeat files in `dir`, in directory order. An error only when the directory itself
/// cannot be opened or listed.
pub fn scan(dir: &Path) -> io::Result<Vec<Found>> {
    let fd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // The listing reads a duplicate of the descriptor the files are opened through: the names
    // we list and the files we open are in the same directory even if its path is renamed or
    // replaced meanwhile.
    let mut listing = Dir::from_fd(fd.try_clone()?)?;
    let mut files = Vec::new();
    // One buffer for every file: a fleet of small files costs no allocation per file.
    let mut buf = Vec::with_capacity(1024);
    for entry in listing.iter() {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.to_bytes();
        let Some(stem) = bytes.strip_suffix(crate::layout::RECORD_SUFFIX.as_bytes()) else {
            continue;
        };
        if stem.is_empty() || stem.starts_with(b".") {
            continue;
        }
        // First the lock, then the file: see the module doc.
        let lock = crate::lock::probe_at(fd.as_fd(), name);
        if let Some(reading) = read_file(&fd, name, &mut buf) {
            let keeper = match (lock, &reading) {
                (Some(true), _) => Keeper::Held,
                (Some(false), _) => Keeper::LockFree,
                (
                    None,
                    Ok(Record {
                        hb_pid: Some(pid), ..
                    }),
                ) => probe_pid(*pid),
                (None, _) => Keeper::Unknown,
            };
            files.push(Found {
                name: stem.to_vec(),
                reading,
                keeper,
            });
        }
    }
    Ok(files)
}

/// Reads heartbeat file `name` in directory `dir` into `buf`. `None` when it is gone.
fn read_file(dir: &OwnedFd, name: &CStr, buf: &mut Vec<u8>) -> Option<Reading> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let file = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        // Skipped, not reported: a sidecar replaces its file by rename, which never leaves the
        // name missing, so a file that vanished since the listing was removed on purpose (its
        // agent left the fleet). A listing taken a moment later would not show it either, and
        // reporting it would fail `--check` for an agent that no longer exists.
        Err(Errno::ENOENT) => return None,
        Err(Errno::ELOOP) => {
            return Some(Err("not a regular file (a symlink, not followed)".into()))
        }
        Err(e) => return Some(Err(format!("cannot open: {}", why(&e.into())))),
    };
    match file.metadata() {
        Ok(meta) => {
            if let Err(reason) = ours(&meta) {
                return Some(Err(reason));
            }
        }
        Err(e) => return Some(Err(format!("cannot inspect: {}", why(&e)))),
    }
    buf.clear();
    if let Err(e) = (&file).take(READ_LIMIT as u64 + 1).read_to_end(buf) {
        return Some(Err(format!("cannot read: {}", why(&e))));
    }
    if buf.len() > READ_LIMIT {
        return Some(Err(format!("too large (over {} KiB)", READ_LIMIT / 1024)));
    }
    Some(record::parse(buf))
}

/// Whether the opened file is one a sidecar of ours could have written: a regular file (a
/// sidecar only ever renames one into place), with one link (a rename never adds a name, so a
/// second name is someone's `ln`, perhaps of a file we must not show) and owned by the
/// effective user (whose sidecars write it). Anything else is refused before a byte is read, so
/// its reason never echoes content.
fn ours(meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.is_file() {
        return Err(format!("not a regular file (a {})", kind(meta.file_type())));
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "{} hard links (a sidecar's file has one)",
            meta.nlink()
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "owned by uid {}, not this user (uid {me})",
            meta.uid()
        ));
    }
    Ok(())
}

/// Whether the process `hb_pid` still exists: only `ESRCH` says it does not (`EPERM` means it
/// runs as another user).
fn probe_pid(hb_pid: i32) -> Keeper {
    if hb_pid <= 0 {
        return Keeper::Unknown;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(hb_pid), None) {
        Err(Errno::ESRCH) => Keeper::PidGone(hb_pid),
        _ => Keeper::Unknown,
    }
}

fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mosaic-scan-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_heartbeat_files_only_and_never_follows_a_link() {
        let dir = scratch("kinds");
        let write = |name: &[u8], body: &[u8]| {
            std::fs::write(dir.join(OsStr::from_bytes(name)), body).unwrap()
        };
        let good = b"ts=2026-11-26T02:21:05.000Z\npid=7\nstatus=ok\n";
        write(b"a.hb", good);
        write(b"big.hb", &vec![b'x'; READ_LIMIT + 1]);
        write(b".a.hb.lock", b"1\n");
        write(b".a.hb.123.tmp", b"garbage");
        write(b".hb", b"garbage");
        write(b"notes.txt", b"garbage");
        let outside = dir.join("outside");
        std::fs::write(&outside, good).unwrap();
        symlink(&outside, dir.join("link.hb")).unwrap();
        std::fs::write(dir.join("secret"), b"SECRET LINE").unwrap();
        std::fs::hard_link(dir.join("secret"), dir.join("hard.hb")).unwrap();
        let mut found = scan(&dir).unwrap();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<(&[u8], Result<i32, &str>)> = found
            .iter()
            .map(|f| {
                let reading = match &f.reading {
                    Ok(record) => Ok(record.pid),
                    Err(reason) => Err(reason.as_str()),
                };
                (f.name.as_slice(), reading)
            })
            .collect();
        assert_eq!(
            got,
            [
                (&b"a"[..], Ok(7)),
                (b"big", Err("too large (over 64 KiB)")),
                (b"hard", Err("2 hard links (a sidecar's file has one)")),
                (b"link", Err("not a regular file (a symlink, not followed)")),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
