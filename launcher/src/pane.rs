/*!
The pane command, built by construction so that no byte of a directory name reaches the shell
unquoted:

```text
export PATH='/opt/pi/bin':'/home/me/.local/bin':"$PATH"; exec <command>
```

Each prefix directory is single-quoted (a `'` inside becomes `'\''`), so spaces, `$`, backticks,
`;`, newlines and non-UTF-8 bytes arrive in PATH exactly. The command itself is the operator's
shell code and is forwarded byte for byte. The prefix is baked in even for directories already
on the launcher's PATH: the pane inherits the tmux *server's* environment, not ours.
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The directories to put first on the pane's PATH: those of `candidates` that exist, in
/// order, without duplicates. A candidate with `:` cannot be a PATH entry and is skipped.
pub fn runtime_bin_prefix(candidates: &[PathBuf]) -> Vec<PathBuf> {
    let mut prefix: Vec<PathBuf> = Vec::new();
    for dir in candidates {
        if dir.as_os_str().as_bytes().contains(&b':') || prefix.contains(dir) || !dir.is_dir() {
            continue;
        }
        prefix.push(dir.clone());
    }
    prefix
}

/// The candidate directories: `runtime_bin`, then `$HOME/.npm-global/bin`, `$HOME/.local/bin`.
pub fn candidates(runtime_bin: Option<&Path>, home: Option<&OsStr>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = runtime_bin.into_iter().map(Path::to_path_buf).collect();
    if let Some(home) = home.filter(|h| !h.is_empty()) {
        dirs.push(Path::new(home).join(".npm-global/bin"));
        dirs.push(Path::new(home).join(".local/bin"));
    }
    dirs
}

/// `export PATH=<prefix>:"$PATH"; exec <command>`, or `exec <command>` with no prefix.
pub fn command(prefix: &[PathBuf], command: &OsStr) -> OsString {
    let mut out = Vec::new();
    if !prefix.is_empty() {
        out.extend_from_slice(b"export PATH=");
        for dir in prefix {
            quote(&mut out, dir.as_os_str().as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(b"\"$PATH\"; ");
    }
    out.extend_from_slice(b"exec ");
    out.extend_from_slice(command.as_bytes());
    OsString::from_vec(out)
}

/// Appends `bytes` single-quoted for a POSIX shell.
pub fn quote(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_path(prefix: &[PathBuf]) -> Vec<u8> {
        // Run the real thing: the built command, with `printf %s "$PATH"` as the agent.
        let cmd = command(prefix, OsStr::new("printf %s \"$PATH\""));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn command_shapes() {
        assert_eq!(
            command(&[], OsStr::new("mosaic yolo pi")),
            "exec mosaic yolo pi"
        );
        assert_eq!(
            command(
                &[PathBuf::from("/a b"), PathBuf::from("/c")],
                OsStr::new("x")
            ),
            "export PATH='/a b':'/c':\"$PATH\"; exec x"
        );
    }

    #[test]
    fn hostile_directory_names_reach_path_exactly() {
        let weird = [
            "/tmp/it's here",
            "/tmp/$(touch /tmp/pwned)",
            "/tmp/`id`;rm -rf /",
            "/tmp/new\nline",
            "/tmp/\"dq\" and \\ back",
        ];
        let prefix: Vec<PathBuf> = weird.iter().map(PathBuf::from).collect();
        let mut want = weird.join(":").into_bytes();
        want.extend_from_slice(b":/usr/bin:/bin");
        assert_eq!(sh_path(&prefix), want);
        let raw = PathBuf::from(OsString::from_vec(b"/tmp/\xff\xfe".to_vec()));
        assert_eq!(sh_path(&[raw]), b"/tmp/\xff\xfe:/usr/bin:/bin");
    }

    #[test]
    fn prefix_keeps_existing_dirs_in_order_once() {
        let tmp = std::env::temp_dir();
        let got = runtime_bin_prefix(&[
            PathBuf::from("/nonexistent-dir-for-mosaic"),
            tmp.clone(),
            PathBuf::from("/"),
            tmp.clone(),
            PathBuf::from("/tmp:/etc"),
        ]);
        assert_eq!(got, [tmp, PathBuf::from("/")]);
    }
}
