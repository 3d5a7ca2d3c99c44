/*!
One writer per heartbeat file: an exclusive `flock` on `.NAME.lock` beside it.

The lock is taken before the sidecar goes into the background (when that is a daemon's fork, it
travels with it: a flock belongs to the open file description), so it dies exactly when its
holder does; the lock file
itself is never removed while an agent may still start (`mosaic-fleet prune` removes it only
while holding it, and a sidecar that then finds its lock file unlinked opens the name again),
so two holders never lock two different files. The holder
writes its pid into the file so that a refused sidecar can name it.

A second lock beside it, `.NAME.turn` ([`Turn`]), serializes the operators of one agent: a
launch and a stop (and a restart, which is both) each take it for their whole run, so a stop
never reads a pane that a launch is about to replace, and two stops never end the same
processes. The sidecar never takes it: a stop must be able to reach a sidecar whatever it is
doing.
*/

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{openat, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use nix::sys::uio::{pread, pwrite};

use crate::layout::{lock_name, lock_path, turn_name};

/// How long a sidecar waits for a lock that is briefly held by a launcher's probe.
const PATIENCE: Duration = Duration::from_millis(300);

pub struct Lock {
    fd: Flock<OwnedFd>,
}

pub enum LockError {
    /// Another process holds the lock; its pid when it has written it.
    Held(Option<i32>),
    Io(io::Error),
}

impl Lock {
    /// Takes the lock for heartbeat file `name` in directory `dir`, waiting briefly for a
    /// probe to let go.
    pub fn acquire(dir: BorrowedFd, name: &CStr) -> Result<Lock, LockError> {
        let lock = lock_name(name.to_bytes());
        let fd = take(dir, &lock, std::time::Instant::now() + PATIENCE, &|| false)?;
        let lock = Lock { fd };
        // At once: until then the file names a predecessor, maybe a dead one, whose last record
        // a reader could take for ours.
        lock.record_pid();
        Ok(lock)
    }

    /// Records the holder's pid ([`Lock::acquire`] does; call again after a fork: the pid
    /// changes).
    pub fn record_pid(&self) {
        record_pid(&self.fd);
    }
}

/// An agent's turn: held by the one launch or stop of it under way ([`Turn::take`]).
pub struct Turn {
    _fd: Flock<OwnedFd>,
}

/// How long a launch or a stop waits for its turn: a stop holds it for its sidecar's answer,
/// the grace and the last kills, a launch for its tmux calls and its sidecar's answer.
pub const TURN_WAIT: Duration = Duration::from_secs(30);

impl Turn {
    /// Takes the turn of heartbeat file `name` in directory `dir`, waiting for the launch or
    /// stop that has it until `deadline`, or until `give_up` says so (a stop signal).
    /// `Held(pid)` names whoever still has it.
    pub fn take(
        dir: BorrowedFd,
        name: &CStr,
        deadline: std::time::Instant,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Turn, LockError> {
        let fd = take(dir, &turn_name(name.to_bytes()), deadline, give_up)?;
        record_pid(&fd);
        Ok(Turn { _fd: fd })
    }

    /// [`Turn::take`] for heartbeat file `file`.
    pub fn take_for(
        file: &Path,
        deadline: std::time::Instant,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Turn, LockError> {
        let (dir, name) =
            crate::layout::split(file).map_err(|e| LockError::Io(io::Error::other(e)))?;
        let dir = File::open(dir).map_err(LockError::Io)?;
        Turn::take(dir.as_fd(), &name, deadline, give_up)
    }
}

/// Takes an exclusive lock on file `lock` in `dir`, polling until `deadline` or `give_up`.
fn take(
    dir: BorrowedFd,
    lock: &[u8],
    deadline: std::time::Instant,
    give_up: &dyn Fn() -> bool,
) -> Result<Flock<OwnedFd>, LockError> {
    let mut fd = open(dir, lock).map_err(LockError::Io)?;
    loop {
        fd = match try_flock(fd, FlockArg::LockExclusiveNonblock) {
            // `mosaic-fleet prune` removes a lock file while holding it: a lock on an unlinked
            // file guards nothing, so open the name again.
            Ok(locked) if unlinked(&locked) => {
                drop(locked);
                open(dir, lock).map_err(LockError::Io)?
            }
            Ok(fd) => return Ok(fd),
            Err((fd, None)) if std::time::Instant::now() < deadline && !give_up() => {
                std::thread::sleep(Duration::from_millis(5));
                fd
            }
            Err((fd, None)) => return Err(LockError::Held(read_pid(fd.as_fd()))),
            Err((_, Some(e))) => return Err(LockError::Io(e)),
        }
    }
}

/// Writes our pid into a lock we hold. A failure only loses the pid in a refusal message.
fn record_pid(fd: &Flock<OwnedFd>) {
    let text = format!("{}\n", std::process::id());
    let _ = nix::unistd::ftruncate(&**fd, 0);
    let _ = pwrite(&**fd, text.as_bytes(), 0);
}

/// Whether a sidecar holds the lock for heartbeat file `path` right now.
pub fn is_held(path: &Path) -> io::Result<bool> {
    let (dir, name) = crate::layout::split(path).map_err(io::Error::other)?;
    let dir = File::open(dir)?;
    probe(open(dir.as_fd(), &lock_name(name.to_bytes()))?)
}

/// A reader's probe of the lock of heartbeat file `name` in directory `dir`: whether a sidecar
/// holds it right now; `None` when there is no lock file to ask (it is never created: a reader
/// leaves the directory as it found it), it is not a regular file, or the probe failed.
pub fn probe_at(dir: BorrowedFd, name: &CStr) -> Option<bool> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = openat(
        dir,
        lock_name(name.to_bytes()).as_slice(),
        flags,
        Mode::empty(),
    )
    .ok()?;
    let file = File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    probe(file.into()).ok()
}

/// Whether a sidecar holds lock file `fd`. Taking and dropping a *shared* lock is the probe: a
/// sidecar's exclusive lock refuses it, and it never refuses another probe (a `status` reader,
/// the exporter, the launcher), so two probes at one instant cannot each take the other for a
/// sidecar. A sidecar starting in this instant waits.
fn probe(fd: OwnedFd) -> io::Result<bool> {
    match try_flock(fd, FlockArg::LockSharedNonblock) {
        // Dropping the guard lets go at once.
        Ok(_probe) => Ok(false),
        Err((_, None)) => Ok(true),
        Err((_, Some(e))) => Err(e),
    }
}

/// The pid the holder of heartbeat file `file`'s lock wrote into it (it may be gone since:
/// ask [`is_held`]). The lock file is read without following a symlink.
pub fn holder(file: &Path) -> Option<i32> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(lock_path(file))
        .ok()?;
    read_pid(lock.as_fd())
}

/// Whether the file behind `fd` has no name left.
fn unlinked(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_nlink == 0)
}

fn open(dir: BorrowedFd, lock: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(dir, lock, flags, Mode::from_bits_truncate(0o644))?)
}

/// Takes the lock without waiting; gives the descriptor back when it cannot, with the error
/// unless the reason is only that another process holds it.
fn try_flock(
    mut fd: OwnedFd,
    how: FlockArg,
) -> Result<Flock<OwnedFd>, (OwnedFd, Option<io::Error>)> {
    loop {
        fd = match Flock::lock(fd, how) {
            Ok(locked) => return Ok(locked),
            Err((fd, Errno::EINTR)) => fd,
            Err((fd, Errno::EWOULDBLOCK)) => return Err((fd, None)),
            Err((fd, e)) => return Err((fd, Some(e.into()))),
        }
    }
}

/// The pid a holder wrote (`record_pid`): a positive number on the first line.
fn read_pid(fd: BorrowedFd) -> Option<i32> {
    let mut buf = [0u8; 16];
    let n = pread(fd, &mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_probing_at_the_same_instant_is_not_a_sidecar() {
        let dir = std::env::temp_dir().join(format!("mosaic-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.hb");
        assert!(!is_held(&file).unwrap(), "nobody holds it");
        let lock = std::fs::File::open(dir.join(".a.hb.lock")).unwrap();
        // A reader's probe (status, the exporter) holds a shared lock for an instant.
        let probe = Flock::lock(lock, FlockArg::LockSharedNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
        assert!(!is_held(&file).unwrap(), "a probe is not a sidecar");
        let lock = probe.unlock().map_err(|(_, e)| e).unwrap();
        // A sidecar holds it exclusively.
        let sidecar = Flock::lock(lock, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
        assert!(is_held(&file).unwrap());
        drop(sidecar);
        assert!(!is_held(&file).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readers_probe_without_creating_and_read_the_holders_pid() {
        use std::os::unix::fs::symlink;
        let dir = std::env::temp_dir().join(format!("mosaic-lock-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let handle = File::open(&dir).unwrap();
        let name = c"a.hb";
        assert_eq!(
            probe_at(handle.as_fd(), name),
            None,
            "no lock file: no answer"
        );
        assert!(!dir.join(".a.hb.lock").exists(), "a reader creates nothing");
        assert_eq!(holder(&dir.join("a.hb")), None);

        let lock = Lock::acquire(handle.as_fd(), name).ok().unwrap();
        assert_eq!(probe_at(handle.as_fd(), name), Some(true));
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(holder(&dir.join("a.hb")), Some(me));
        drop(lock);
        assert_eq!(probe_at(handle.as_fd(), name), Some(false));

        // A planted link is neither probed nor read through.
        symlink(dir.join(".a.hb.lock"), dir.join(".b.hb.lock")).unwrap();
        assert_eq!(probe_at(handle.as_fd(), c"b.hb"), None);
        assert_eq!(holder(&dir.join("b.hb")), None);
        std::fs::write(dir.join(".c.hb.lock"), b"-1\n").unwrap();
        assert_eq!(holder(&dir.join("c.hb")), None, "not a pid");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_turn_at_a_time_and_the_waiter_can_give_up() {
        let dir = std::env::temp_dir().join(format!("mosaic-turn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.hb");
        let soon = || std::time::Instant::now() + Duration::from_millis(50);
        let turn = Turn::take_for(&file, soon(), &|| false).ok().unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        // Another open file description waits, then names the holder.
        match Turn::take_for(&file, soon(), &|| false) {
            Err(LockError::Held(pid)) => assert_eq!(pid, Some(me)),
            _ => panic!("a second turn while the first is held"),
        }
        let later = std::time::Instant::now() + Duration::from_secs(60);
        let started = std::time::Instant::now();
        assert!(matches!(
            Turn::take_for(&file, later, &|| true),
            Err(LockError::Held(_))
        ));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "give_up is asked"
        );
        // The sidecar's lock is another file: a turn never keeps a sidecar out.
        let handle = File::open(&dir).unwrap();
        assert!(Lock::acquire(handle.as_fd(), c"a.hb").is_ok());
        drop(turn);
        assert!(Turn::take_for(&file, soon(), &|| false).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
