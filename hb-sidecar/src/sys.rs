/*!
The only raw `libc` calls of the sidecar: the few system calls neither `std` nor `nix` wraps.

Everything else (`openat`, `renameat`, `unlinkat`, `flock`, signalfd, `ppoll`, `umask`, `dup2`,
directory reading) goes through `nix`, whose wrappers check results and hand out owned
descriptors; keeping the rest here keeps every raw call and its `SAFETY` argument in one place.
*/

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

/// `pidfd_open(2)` (Linux 5.3+; `nix` has no wrapper). `ENOSYS` on older kernels.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments; the result is checked.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just gave us this descriptor (it is O_CLOEXEC by default).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)` (Linux 5.1+; `nix` has no wrapper): signals the very process the
/// pidfd names, never a process that reused its pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: Signal) -> io::Result<()> {
    // SAFETY: a plain system call on a live descriptor; no siginfo is passed, flags are 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A random number for names that must not be guessable: from the kernel, else the clock.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: fills a live stack buffer of the given length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(bytes);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// What to do with the descriptors a process inherited above 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inherited {
    /// Close them: a daemon keeps nothing it did not open itself.
    Close,
    /// Mark them close-on-exec: the process still runs with them, but nothing it starts
    /// (a tmux server, a sidecar) inherits a caller's held `flock` or pipe end.
    CloseOnExec,
}

/// Closes, or marks close-on-exec, every descriptor from 3 up. Call it before anything of
/// ours is open: nobody in this process owns an inherited descriptor yet.
pub fn release_inherited_fds(how: Inherited) {
    let flags = match how {
        Inherited::Close => 0,
        Inherited::CloseOnExec => libc::CLOSE_RANGE_CLOEXEC,
    };
    // SAFETY: close_range only closes descriptors or sets a flag on them; nothing of ours is
    // open yet (the caller's contract).
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, flags) };
    if ret == 0 {
        return;
    }
    // Kernels before 5.9 (5.11 for the flag): walk /proc/self/fd (collect first: the walk has
    // its own fd).
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        match how {
            // SAFETY: the descriptor was inherited and nobody in this process owns it yet, so
            // taking ownership to close it cannot close anything still in use.
            Inherited::Close => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
            // SAFETY: F_SETFD on a descriptor number; a closed one (the walk's own) just fails.
            Inherited::CloseOnExec => unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            },
        }
    }
}

/// Hands freed heap pages back to the kernel (`malloc_trim(3)`, glibc; `nix` has no wrapper).
pub fn release_free_memory() {
    // SAFETY: malloc_trim only releases free memory; nothing is borrowed from the heap across it.
    unsafe { libc::malloc_trim(0) };
}

/// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`. `nix` wraps inotify, but its reads allocate and
/// its watch descriptors are opaque; the activity watch reads into a fixed buffer instead.
pub fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `inotify_add_watch(2)`: the watch descriptor for `path` (followed if it is a symlink).
pub fn inotify_add_watch(
    inotify: std::os::fd::BorrowedFd,
    path: &std::ffi::CStr,
    mask: u32,
) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: a live descriptor and a valid C string; the result is checked.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), mask) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}
