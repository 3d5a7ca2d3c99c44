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
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use mosaic_core::layout::{is_temp_of, split, temp_name};
use mosaic_core::sys::random_u64;

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
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = open(dir_path.as_path(), flags, Mode::empty())
            .map_err(|e| mosaic_core::dirs::cannot("open", &dir_path, &e.into()))?;
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
                mosaic_core::why(&e)
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
            renameat(
                &self.dir,
                self.tmp.as_c_str(),
                &self.dir,
                self.name.as_c_str(),
            )
            .map_err(io::Error::from)
        });
        if renamed.is_err() {
            self.unlink_temp();
        }
        renamed
    }

    /// Proves the name can be replaced: a temp file can be created beside it, and nothing
    /// that rename cannot replace (a directory) holds the name.
    /// Removes the temp files a predecessor killed mid-beat left behind (`.NAME.PID.tmp`,
    /// `.NAME.PID.SALT.tmp`). Call it only while holding the file's lock: then no live writer
    /// of this name owns one. Returns how many were removed.
    pub fn remove_stale_temps(&self) -> io::Result<usize> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(&self.dir, c".", flags, Mode::empty())?;
        let mut stale = Vec::new();
        for entry in dir.iter() {
            let name = entry?.file_name().to_owned();
            if is_temp_of(self.name.to_bytes(), name.to_bytes()) {
                stale.push(name);
            }
        }
        let mut removed = 0;
        for name in stale {
            // Never a directory; a planted symlink is removed, not followed.
            if unlinkat(&self.dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn probe(&mut self) -> io::Result<()> {
        drop(self.create_temp()?);
        self.unlink_temp();
        let at = nix::sys::stat::fstatat(
            &self.dir,
            self.name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        match at {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                Err(io::Error::from_raw_os_error(libc::EISDIR))
            }
            _ => Ok(()),
        }
    }

    fn create_temp(&mut self) -> io::Result<OwnedFd> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(0o644);
        for _ in 0..TEMP_ATTEMPTS {
            match openat(&self.dir, self.tmp.as_c_str(), flags, mode) {
                Ok(fd) => return Ok(fd),
                // Someone else holds this name (maybe a planted symlink): step aside.
                Err(Errno::EEXIST) => self.tmp = temp_name(&self.name, Some(random_u64())),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Errno::EEXIST.into())
    }

    fn unlink_temp(&self) {
        // Best effort: a temp file we cannot remove is the smaller harm than a failed beat.
        let _ = unlinkat(&self.dir, self.tmp.as_c_str(), UnlinkatFlags::NoRemoveDir);
    }
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
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
    fn temp_names_are_recognised_exactly() {
        let name = b"k.hb";
        for yes in [&b".k.hb.42.tmp"[..], b".k.hb.42.0123456789abcdef.tmp"] {
            assert!(is_temp_of(name, yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b".k.hb.lock"[..],
            b"k.hb",
            b".k.hb..tmp",
            b".k.hb.x1.tmp",
            b".k.hb.1.tmp.bak",
            b".k.hb.1.0123.tmp",
            b".k.hb.1.2.0123456789abcdef.tmp",
            b".kk.hb.1.tmp",
            b".k.hb.1.0123456789abcdeg.tmp",
        ] {
            assert!(!is_temp_of(name, no), "{}", String::from_utf8_lossy(no));
        }
        let round = temp_name(CString::new("k.hb").unwrap().as_c_str(), Some(7));
        assert!(is_temp_of(name, round.to_bytes()));
        let round = temp_name(CString::new("k.hb").unwrap().as_c_str(), None);
        assert!(is_temp_of(name, round.to_bytes()));
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

    /// The process's umask, read from `/proc` rather than by setting it: tests run in
    /// parallel threads, and the umask is process-wide.
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .unwrap();
        u32::from_str_radix(line.trim(), 8).unwrap()
    }
}
