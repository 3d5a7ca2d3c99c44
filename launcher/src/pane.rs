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
/// order, without duplicates. A candidate with `:` cannot be a PATH entry and is skipped; so
/// is a relative one: only absolute directories go into the pane's PATH.
pub fn runtime_bin_prefix(candidates: &[PathBuf]) -> Vec<PathBuf> {
    let mut prefix: Vec<PathBuf> = Vec::new();
    for dir in candidates {
        if dir.as_os_str().as_bytes().contains(&b':')
            || !dir.is_absolute()
            || prefix.contains(dir)
            || !dir.is_dir()
        {
            continue;
        }
        prefix.push(dir.clone());
    }
    prefix
}

/// The candidate directories: `runtime_bin`, then `$HOME/.npm-global/bin`, `$HOME/.local/bin`.
/// A relative `HOME` gives none: it would be checked here against our cwd but resolved in the
/// pane against the agent's workdir, whose contents a repository controls.
pub fn candidates(runtime_bin: Option<&Path>, home: Option<&OsStr>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = runtime_bin.into_iter().map(Path::to_path_buf).collect();
    if let Some(home) = home.filter(|h| Path::new(h).is_absolute()) {
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

/// `export KEY='VALUE'; ` for each variable, then `pane_command`: the agent's own environment
/// (the fleet file's `env`), set in its shell only, never in the tmux server's or session's.
/// Keys are checked by [`env_key`]; values are single-quoted byte for byte.
pub fn with_env(env: &[(String, OsString)], pane_command: OsString) -> OsString {
    if env.is_empty() {
        return pane_command;
    }
    let mut out = Vec::new();
    for (key, value) in env {
        out.extend_from_slice(b"export ");
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        quote(&mut out, value.as_bytes());
        out.extend_from_slice(b"; ");
    }
    out.extend_from_slice(pane_command.as_bytes());
    OsString::from_vec(out)
}

/// A variable name the shell can `export`: a letter or `_`, then letters, digits and `_`.
pub fn env_key(key: &str) -> Result<&str, String> {
    let mut bytes = key.bytes();
    let first = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') && key.len() <= 256 {
        Ok(key)
    } else {
        Err(format!(
            "invalid environment variable name {key:?}: a letter or _, then letters, digits, _"
        ))
    }
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

/// The tmux command for the session's `alert-bell` hook: `run-shell -b 'printf . >> BELL'`,
/// which appends a byte to the sidecar's bell mark (its close is what the sidecar watches; the
/// byte makes the mark's mtime the bell's, so a bell rung before the sidecar watched is seen
/// too; `>>` never truncates whatever a planted name might point at).
///
/// A shell, not tmux's own `save-buffer -a`: tmux 3.3a skips some `alert-bell` hooks whole
/// when many panes ring at once and their hooks write files through tmux (1 to 2 of 60 panes
/// ringing together, by hand; 24 of 30 agents in a loaded e2e run), and never one that only
/// starts a `run-shell -b` (60 of 60, three times).
///
/// The path crosses three parsers: tmux's command parser (set-hook parses its command), tmux's
/// format expansion (run-shell expands `#`), and `/bin/sh`. So the result holds no `'` and no
/// `#`: a path of plain bytes (`A-Z a-z 0-9 / . _ -`) is used as it is, anything else is spelt
/// in octal for `printf` (`printf . >> "$(printf "/tmp/a\040b")"`), and the whole is single-quoted
/// for tmux, which takes single-quoted text literally.
pub fn bell_hook(bell: &Path) -> OsString {
    append_hook(b"printf . ", bell)
}

/// The tmux command for the session's `pane-died` hook: `run-shell -b '#{?pane_dead,echo end
/// #{pane_dead_status}:#{pane_dead_signal} #{pane_pid} >> CTL,}'`, how the run ended for the
/// transcript's writer (`mosaic_core::transcript`). tmux expands it when the hook runs, which
/// may be after a respawn: the pane is live again then, and the hook writes nothing (whoever
/// respawned it said how the run ended). The path is written as in [`bell_hook`] (no `,` or
/// `}` in it, so it cannot end the condition).
pub fn died_hook(ctl: &Path) -> OsString {
    let mut hook = append_hook(
        b"#{?pane_dead,echo end #{pane_dead_status}:#{pane_dead_signal} #{pane_pid} ",
        ctl,
    )
    .into_vec();
    // Before the closing quote: the condition's empty other branch.
    hook.splice(hook.len() - 1..hook.len() - 1, *b",}");
    OsString::from_vec(hook)
}

fn append_hook(words: &[u8], path: &Path) -> OsString {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-');
    let bytes = path.as_os_str().as_bytes();
    let mut out = b"run-shell -b '".to_vec();
    out.extend_from_slice(words);
    out.extend_from_slice(b">> ");
    if bytes.iter().all(|&b| plain(b)) {
        out.extend_from_slice(bytes);
    } else {
        // `$(...)` drops trailing newlines; a bell mark's name ends in `.bell`, never in one.
        out.extend_from_slice(b"\"$(printf \"");
        for &b in bytes {
            if plain(b) {
                out.push(b);
            } else {
                out.extend_from_slice(format!("\\{b:03o}").as_bytes());
            }
        }
        out.extend_from_slice(b"\")\"");
    }
    out.push(b'\'');
    OsString::from_vec(out)
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
    fn bell_hooks_are_plain_or_octal() {
        assert_eq!(
            bell_hook(Path::new("/run/user/1/hb/.a-1.hb.bell")),
            "run-shell -b 'printf . >> /run/user/1/hb/.a-1.hb.bell'"
        );
        let hook = bell_hook(Path::new("/tmp/it's #{x}/.a.hb.bell"));
        assert_eq!(
            hook,
            "run-shell -b 'printf . >> \"$(printf \"/tmp/it\\047s\\040\\043\\173x\\175/.a.hb.bell\")\"'"
        );
    }

    // What the hook's shell command opens, run by the real /bin/sh: the exact path, for any
    // bytes (the tmux side is tested end to end with a real server).
    #[test]
    fn bell_hooks_open_exactly_their_path() {
        let dir = std::env::temp_dir().join(format!("mosaic-bell-{}", std::process::id()));
        let weird = OsString::from_vec(b"we ird'\"$x#{h}%s\\;{}\n\xff`".to_vec());
        let target = dir.join(&weird);
        std::fs::create_dir_all(&target).unwrap();
        let bell = target.join(".a.hb.bell");
        let hook = bell_hook(&bell).into_vec();
        let inner = &hook[b"run-shell -b '".len()..hook.len() - 1];
        assert!(!inner.contains(&b'\'') && !inner.contains(&b'#'));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(OsStr::from_bytes(inner))
            .output()
            .unwrap();
        let made = bell.is_file();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(made, "{} was not created", bell.display());
    }

    #[test]
    fn a_relative_home_gives_no_candidates() {
        assert!(candidates(None, Some(OsStr::new("h"))).is_empty());
        assert!(candidates(None, Some(OsStr::new(""))).is_empty());
        assert_eq!(candidates(None, Some(OsStr::new("/h"))).len(), 2);
        assert!(runtime_bin_prefix(&[PathBuf::from(".")]).is_empty());
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
