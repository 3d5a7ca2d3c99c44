/*!
One writer per heartbeat file: an exclusive `flock` on `.NAME.lock` beside it.

The lock is taken before the sidecar daemonizes and travels with it through `fork` (a flock
belongs to the open file description), so it dies exactly when its holder does; the lock file
itself is never removed, which would let two holders lock two different files. The holder
writes its pid into the file so that a refused sidecar can name it.
*/

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::sys::cvt;

/// How long a sidecar waits for a lock that is briefly held by a launcher's probe.
const PATIENCE: Duration = Duration::from_millis(300);

pub struct Lock {
    fd: OwnedFd,
}

pub enum LockError {
    /// Another process holds the lock; its pid when it has written it.
    Held(Option<u32>),
    Io(io::Error),
}

/// The lock file's name for heartbeat file `name`.
pub fn lock_name(name: &CStr) -> CString {
    let mut bytes = b".".to_vec();
    bytes.extend_from_slice(name.to_bytes());
    bytes.extend_from_slice(b".lock");
    CString::new(bytes).expect("a name from a C string has no NUL")
}

impl Lock {
    /// Takes the lock for heartbeat file `name` in directory `dir`, waiting briefly for a
    /// probe to let go.
    pub fn acquire(dir: BorrowedFd, name: &CStr) -> Result<Lock, LockError> {
        let fd = open(dir, name).map_err(LockError::Io)?;
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            match try_flock(&fd) {
                Ok(true) => return Ok(Lock { fd }),
                Ok(false) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(false) => return Err(LockError::Held(read_pid(&fd))),
                Err(e) => return Err(LockError::Io(e)),
            }
        }
    }

    /// Records the holder's pid (call again after daemonizing: the pid changes).
    pub fn record_pid(&self) {
        let text = format!("{}\n", std::process::id());
        // SAFETY: our own descriptor; the buffer outlives the calls. A failure only loses the
        // pid in a refusal message.
        unsafe {
            libc::ftruncate(self.fd.as_raw_fd(), 0);
            libc::pwrite(self.fd.as_raw_fd(), text.as_ptr().cast(), text.len(), 0);
        }
    }
}

/// Whether a sidecar holds the lock for heartbeat file `path` right now.
pub fn is_held(path: &Path) -> io::Result<bool> {
    let (dir, name) = crate::hbfile::split(path).map_err(io::Error::other)?;
    let dir = std::fs::File::open(dir)?;
    use std::os::fd::AsFd;
    let fd = open(dir.as_fd(), &name)?;
    // Taking and dropping the lock is the probe; a sidecar starting in this instant waits.
    try_flock(&fd).map(|got| !got)
}

fn open(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    let lock = lock_name(name);
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: lock is a valid C string relative to a live directory descriptor.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), lock.as_ptr(), flags, 0o644) })?;
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn try_flock(fd: &OwnedFd) -> io::Result<bool> {
    loop {
        // SAFETY: flock on our own descriptor.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

fn read_pid(fd: &OwnedFd) -> Option<u32> {
    let mut buf = [0u8; 16];
    // SAFETY: reads into a live stack buffer of the given length.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
    text.trim().parse().ok()
}
