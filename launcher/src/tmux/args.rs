/*!
The arguments tmux is given for a pane: its directory (`#` doubled for tmux's format expansion,
a final `;` padded so tmux does not read it as the end of its command) and the pane command
run by [`PANE_SHELL`]. Pure functions of bytes, unit-tested through [`super`], which runs tmux.
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::PANE_SHELL;

/// `-c WORKDIR -e MOSAIC_AGENT_NAME=AGENT /bin/sh -c PANE_COMMAND`, shared by `new-session`
/// and `respawn-pane`.
pub(super) fn pane_args(agent: &str, workdir: &Path, pane_command: &OsStr) -> Vec<OsString> {
    vec![
        "-c".into(),
        // tmux would take a final `;` as the end of the command: `dir;/` is the same directory.
        no_trailing_semicolon(&escape_format(workdir.as_os_str()), b"/"),
        "-e".into(),
        format!("MOSAIC_AGENT_NAME={agent}").into(),
        PANE_SHELL.into(),
        "-c".into(),
        pane_argument(pane_command),
    ]
}

/// The pane command as the shell receives it: `cmd;` becomes `cmd; ` (the same to a shell),
/// since tmux would take a final `;` as the end of its own command.
pub fn pane_argument(pane_command: &OsStr) -> OsString {
    no_trailing_semicolon(pane_command, b" ")
}

/// tmux reads an argument that ends in `;` as the end of a command (and `\;` as a literal
/// `;`): such an argument gets `pad` appended, which must not change its meaning.
pub(super) fn no_trailing_semicolon(arg: &OsStr, pad: &[u8]) -> OsString {
    let mut bytes = arg.as_bytes().to_vec();
    if bytes.last() == Some(&b';') {
        bytes.extend_from_slice(pad);
    }
    OsString::from_vec(bytes)
}

/// tmux expands `#{...}` formats in `-c`; `##` is a literal `#`.
pub(super) fn escape_format(dir: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(dir.len());
    for &b in dir.as_bytes() {
        out.push(b);
        if b == b'#' {
            out.push(b'#');
        }
    }
    OsString::from_vec(out)
}
