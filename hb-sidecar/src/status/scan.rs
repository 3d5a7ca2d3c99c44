/*!
The directory scanner: every `NAME.hb` in a heartbeat directory, read safely.

The directory is opened once and listed through that descriptor; each file is opened relative
to it with `O_NOFOLLOW | O_NONBLOCK`, so a symlink planted in the directory is reported, never
followed, and a planted FIFO cannot block the report. A file is read once, up to
[`READ_LIMIT`]; a bad file becomes a [`Reading`] error and never stops the listing.

Dotfiles (the sidecars' `.NAME.hb.lock` and `.NAME.hb.PID.tmp`) are not heartbeat files.
*/

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::record::{self, Record};
use crate::sys::cvt;
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
}

/// The heartbeat files in `dir`, in directory order. An error only when the directory itself
/// cannot be opened or listed.
pub fn scan(dir: &Path) -> io::Result<Vec<Found>> {
    let fd = open_dir(dir)?;
    let mut listing = Listing::new(&fd)?;
    let mut files = Vec::new();
    // One buffer for every file: a fleet of small files costs no allocation per file.
    let mut buf = Vec::with_capacity(1024);
    while let Some(name) = listing.next()? {
        let bytes = name.to_bytes();
        let Some(stem) = bytes.strip_suffix(b".hb") else {
            continue;
        };
        if stem.is_empty() || stem.starts_with(b".") {
            continue;
        }
        if let Some(reading) = read_file(&fd, name, &mut buf) {
            files.push(Found {
                name: stem.to_vec(),
                reading,
            });
        }
    }
    Ok(files)
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: path is a valid C string; the result is checked.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads heartbeat file `name` in directory `dir` into `buf`. `None` when it is gone.
fn read_file(dir: &OwnedFd, name: &CStr, buf: &mut Vec<u8>) -> Option<Reading> {
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: name is a valid C string relative to a live directory descriptor.
    let file = match cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) }) {
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(fd) => unsafe { File::from_raw_fd(fd) },
        // Skipped, not reported: a sidecar replaces its file by rename, which never leaves the
        // name missing, so a file that vanished since the listing was removed on purpose (its
        // agent left the fleet). A listing taken a moment later would not show it either, and
        // reporting it would fail `--check` for an agent that no longer exists.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return None,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Some(Err("not a regular file (a symlink, not followed)".into()))
        }
        Err(e) => return Some(Err(format!("cannot open: {}", why(&e)))),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => {}
        Ok(meta) => {
            return Some(Err(format!(
                "not a regular file (a {})",
                kind(meta.file_type())
            )))
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

/// A directory's names, listed through a descriptor we hold: the names we list and the files
/// we open are in the same directory even if its path is renamed or replaced meanwhile.
struct Listing {
    stream: *mut libc::DIR,
}

impl Listing {
    fn new(dir: &OwnedFd) -> io::Result<Listing> {
        // fdopendir owns the descriptor it is given; hand it a duplicate so `dir` stays ours.
        // SAFETY: duplicating a live descriptor; the result is checked.
        let dup = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: dup is a directory descriptor nobody else owns.
        let stream = unsafe { libc::fdopendir(dup) };
        if stream.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(err);
        }
        Ok(Listing { stream })
    }

    /// The next name, or `None` at the end; the name lives until the next call.
    fn next(&mut self) -> io::Result<Option<&CStr>> {
        // readdir reports its end and its errors alike with NULL; only errno tells them apart.
        nix::errno::Errno::clear();
        // SAFETY: the stream is open until drop.
        let entry = unsafe { libc::readdir(self.stream) };
        if entry.is_null() {
            return match nix::errno::Errno::last_raw() {
                0 => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        // SAFETY: a non-NULL entry is valid, and its name NUL-terminated, until the next
        // readdir on this stream, which the borrow of self prevents.
        Ok(Some(unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }))
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed only here.
        unsafe { libc::closedir(self.stream) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
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
                (b"link", Err("not a regular file (a symlink, not followed)")),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
