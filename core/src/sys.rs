/*!
The system calls `nix` lacks, and the only raw `libc` calls of every crate: `pidfd_open`,
`pidfd_send_signal`, `getrandom` and inotify through `rustix` (safe, owned descriptors);
`close_range` and `malloc_trim` raw, and the one unsafe `nix` call (`madvise`), each with its
`SAFETY` argument.

Everything else (`openat`, `renameat`, `unlinkat`, `flock`, signalfd, `ppoll`, `umask`, `dup2`,
directory reading) goes through `nix`, whose wrappers check results and hand out owned
descriptors; keeping the rest here keeps every raw call and its `SAFETY` argument in one place.
*/

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sys::mman::{madvise, MmapAdvise};
use nix::sys::signal::Signal;

/// Clock ticks per second, the unit of `/proc/PID/stat`'s times (`sysconf(_SC_CLK_TCK)`, read
/// by rustix from the auxiliary vector).
pub fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// `pidfd_open(2)` (Linux 5.3+; `nix` has no wrapper). `ENOSYS` on older kernels.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// `pidfd_send_signal(2)` (Linux 5.1+; `nix` has no wrapper): signals the very process the
/// pidfd names, never a process that reused its pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: Signal) -> io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(sig as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, sig)?)
}

/// A random number for names that must not be guessable: from the kernel, else the clock.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let flags = rustix::rand::GetRandomFlags::NONBLOCK;
    if rustix::rand::getrandom(&mut bytes, flags).is_ok_and(|n| n == 8) {
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
        // SAFETY: only closes, or sets a flag on, a descriptor that was inherited and that
        // nobody in this process owns yet (the caller's contract); the walk's own one is
        // closed by now, and a closed number just fails with EBADF.
        unsafe {
            match how {
                Inherited::Close => libc::close(fd),
                Inherited::CloseOnExec => libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC),
            };
        }
    }
}

/// Hands freed heap pages back to the kernel (`malloc_trim(3)`, glibc; `nix` has no wrapper).
pub fn release_free_memory() {
    // SAFETY: malloc_trim only releases free memory; nothing is borrowed from the heap across it.
    unsafe { libc::malloc_trim(0) };
}

/// Hands back what start-up alone needed, for a process that did not fork and now runs for
/// days: the page-table entries of the program's own read-only pages (argument parsing,
/// validation, clap), so that only what the loop touches again stays mapped, and then freed
/// heap pages. (A daemon's fork does the first for free: a child starts with no entries for
/// file pages.)
pub fn release_startup_memory() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let exe = std::fs::read_link("/proc/self/exe").ok();
    for (start, len) in clean_read_only(&smaps, exe.as_deref()) {
        let Some(start) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: a read-only private mapping of our own executable with no anonymous (copied
        // on write) page: every page in it is exactly the file's, so dropping its page-table
        // entries loses nothing; the next access faults the same bytes back in from the file.
        let _ = unsafe { madvise(start, len, MmapAdvise::MADV_DONTNEED) };
    }
    // Last, so that the buffers above go back too.
    drop((smaps, exe));
    release_free_memory();
}

/// The mappings of `exe` in `/proc/self/smaps` text that are not writable and hold no
/// anonymous page (none was ever written, e.g. by a relocation): `(start, length)`.
fn clean_read_only(smaps: &str, exe: Option<&std::path::Path>) -> Vec<(usize, usize)> {
    let Some(exe) = exe.and_then(std::path::Path::to_str) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = words.next().unwrap_or_default();
            let path = words.nth(3).unwrap_or_default();
            let range = usize::from_str_radix(start, 16)
                .ok()
                .zip(usize::from_str_radix(end, 16).ok());
            current = match range {
                Some((s, e)) if path == exe && perms.starts_with('r') && !perms.contains('w') => {
                    Some((s, e - s))
                }
                _ => None,
            };
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if words.next() == Some("0") {
                    out.push(range);
                }
            }
        }
    }
    out
}

/// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`. `nix` wraps inotify, but its reads allocate and
/// its watch descriptors are opaque; the activity watch reads into a fixed buffer instead.
pub fn inotify_init() -> io::Result<OwnedFd> {
    use rustix::fs::inotify::{init, CreateFlags};
    Ok(init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?)
}

/// `inotify_add_watch(2)`: the watch descriptor for `path` (followed if it is a symlink).
pub fn inotify_add_watch(
    inotify: std::os::fd::BorrowedFd,
    path: &std::ffi::CStr,
    mask: u32,
) -> io::Result<i32> {
    use rustix::fs::inotify::{add_watch, WatchFlags};
    Ok(add_watch(
        inotify,
        path,
        WatchFlags::from_bits_retain(mask),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        let smaps = "\
00400000-00401000 r--p 00000000 08:01 12 /bin/hb
Rss:                   4 kB
Anonymous:             0 kB
00401000-00403000 r-xp 00001000 08:01 12 /bin/hb
Anonymous:             0 kB
00403000-00404000 r--p 00003000 08:01 12 /bin/hb
Anonymous:             4 kB
00404000-00405000 rw-p 00004000 08:01 12 /bin/hb
Anonymous:             0 kB
00405000-00406000 r-xp 00000000 08:01 13 /lib/libc.so
Anonymous:             0 kB
7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]
Anonymous:             4 kB
";
        let exe = std::path::Path::new("/bin/hb");
        assert_eq!(
            clean_read_only(smaps, Some(exe)),
            [(0x400000, 0x1000), (0x401000, 0x2000)]
        );
        assert!(clean_read_only(smaps, None).is_empty());
    }

    #[test]
    fn releasing_start_up_memory_leaves_a_working_process() {
        release_startup_memory();
        // The text we run and the constants we read fault back in from the file.
        assert_eq!(format!("{:?}", Some(42u64)), "Some(42)");
        assert!(clean_read_only("", Some(std::path::Path::new("/x"))).is_empty());
    }
}
