/*!
The heartbeat file writer: every record replaces the file whole, by rename.

Invariant: the heartbeat file is only ever replaced by rename, never written in place, so a
reader sees the previous record or the next one, never a mix. The temp file is created with
`O_CREAT | O_EXCL | O_NOFOLLOW` relative to a directory descriptor opened once, so nothing
planted in a shared directory (a symlink at the temp name, at the heartbeat name, or a renamed
directory) is ever followed: a name that is taken just makes us pick a random one, and rename
replaces a symlink at the heartbeat path instead of writing through it. No fsync: readers need
consistency, not durability, and the directory is usually tmpfs.
*/

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::{cvt, random_u64};

/// How many taken temp names we step over before giving up on a beat.
const TEMP_ATTEMPTS: usize = 16;

pub struct HbFile {
    dir: OwnedFd,
    path: PathBuf,
    name: CString,
    tmp: CString,
}

impl HbFile {
    /// Opens the directory of `path` (which must exist) and checks that a file can be created
    /// in it, without touching `path` itself.
    pub fn open(path: &Path) -> Result<HbFile, String> {
        let (dir_path, name) = split(path)?;
        let c_dir = CString::new(dir_path.as_os_str().as_bytes())
            .map_err(|_| format!("invalid heartbeat file {}: contains NUL", path.display()))?;
        // SAFETY: c_dir is a valid C string; the result is checked.
        let fd = cvt(unsafe {
            libc::open(
                c_dir.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })
        .map_err(|e| {
            format!(
                "cannot open heartbeat dir {}: {}",
                dir_path.display(),
                crate::why(&e)
            )
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = HbFile {
            dir,
            path: path.to_path_buf(),
            tmp: temp_name(&name, None),
            name,
        };
        file.probe().map_err(|e| {
            format!(
                "cannot write heartbeat file {}: {}",
                path.display(),
                crate::why(&e)
            )
        })?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }

    /// The heartbeat file's name within its directory.
    pub fn name(&self) -> &CStr {
        &self.name
    }

    /// Picks the temp name again after the process changed (daemonizing changes our pid).
    pub fn renew_temp_name(&mut self) {
        self.tmp = temp_name(&self.name, None);
    }

    /// Replaces the heartbeat file with `bytes`. On error the previous file is left as it was
    /// and no temp file is left behind.
    pub fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let fd = self.create_temp()?;
        let written = write_all(&fd, bytes);
        drop(fd);
        let renamed = written.and_then(|()| {
            // SAFETY: both names are valid C strings relative to our directory descriptor.
            cvt(unsafe {
                libc::renameat(
                    self.dir.as_raw_fd(),
                    self.tmp.as_ptr(),
                    self.dir.as_raw_fd(),
                    self.name.as_ptr(),
                )
            })
        });
        if renamed.is_err() {
            self.unlink_temp();
        }
        renamed.map(drop)
    }

    fn probe(&mut self) -> io::Result<()> {
        drop(self.create_temp()?);
        self.unlink_temp();
        Ok(())
    }

    fn create_temp(&mut self) -> io::Result<OwnedFd> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        for _ in 0..TEMP_ATTEMPTS {
            // SAFETY: tmp is a valid C string relative to our directory descriptor.
            match cvt(unsafe {
                libc::openat(self.dir.as_raw_fd(), self.tmp.as_ptr(), flags, 0o644)
            }) {
                // SAFETY: fd was just opened and is owned by nobody else.
                Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
                // Someone else holds this name (maybe a planted symlink): step aside.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.tmp = temp_name(&self.name, Some(random_u64()));
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::EEXIST))
    }

    fn unlink_temp(&self) {
        // SAFETY: tmp is a valid C string relative to our directory descriptor.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.tmp.as_ptr(), 0) };
    }
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

fn temp_name(name: &CStr, salt: Option<u64>) -> CString {
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

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mosaic-hbfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replace_writes_whole_files_0644() {
        let dir = scratch("replace");
        let path = dir.join("a.hb");
        let mut f = HbFile::open(&path).unwrap();
        assert!(!path.exists(), "open must not create the heartbeat file");
        f.replace(b"one\n").unwrap();
        f.replace(b"two\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().mode() & 0o777,
            0o644 & !umask()
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.hb"], "temp files left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn planted_symlinks_are_not_followed() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.join("a.hb");
        let mut f = HbFile::open(&path).unwrap();
        // Plant links at the heartbeat path and at the temp name we would use.
        symlink(&victim, &path).unwrap();
        let tmp = dir.join(format!(".a.hb.{}.tmp", std::process::id()));
        symlink(&victim, &tmp).unwrap();
        f.replace(b"beat\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"beat\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn umask() -> u32 {
        // SAFETY: umask cannot fail; we put the old value straight back.
        unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old
        }
    }
}
