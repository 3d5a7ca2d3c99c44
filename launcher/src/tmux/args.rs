/*!
The arguments tmux is given for a pane: its directory (`#` doubled for tmux's format expansion,
a final `;` padded so tmux does not read it as the end of its command) and the pane command
run by [`PANE_SHELL`]; a session's whole `new-session` sequence ([`new_session_args`]), with the transcript's writer and hook, and the writer's pipe opened
again ([`reopen_pipe`]). Pure functions of bytes, unit-tested through [`super`], which runs tmux.
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::{Spec, PANE_SHELL};

/// One session's `new-session` sequence: the session, `-P` its pids, then in the same
/// sequence `remain-on-exit`, the launch's mark, the heartbeat file and the bell hook.
pub(super) fn new_session_args(spec: &Spec) -> Vec<OsString> {
    let target = format!("={}:", spec.agent);
    let mut args: Vec<OsString> = vec![
        "new-session".into(),
        "-d".into(),
        "-s".into(),
        spec.agent.into(),
    ];
    args.extend(pane_args(spec.agent, spec.workdir, spec.pane_command));
    // `-P` prints after the whole sequence, so these come before the pane's argv.
    args.splice(
        4..4,
        ["-P".into(), "-F".into(), "#{pane_pid} #{pid}".into()],
    );
    // Then, in the same sequence: `; VERB [OPTS] -t =AGENT: NAME VALUE` each.
    let mut then: Vec<(&str, &str, &str, OsString)> = vec![
        ("set-option", "-p", "remain-on-exit", "on".into()),
        ("set-option", "", "@mosaic_launch", spec.token.into()),
    ];
    if let Some(file) = spec.hb_file {
        let file = no_trailing_semicolon(file.as_os_str(), b" ");
        then.push(("set-option", "", "@mosaic_hb", file));
    }
    if let Some(hook) = spec.bell_hook {
        then.push(("set-hook", "", "alert-bell", hook.into()));
    }
    if let Some(log) = spec.log {
        then.push(("set-hook", "", "pane-died", log.died_hook.clone()));
        let pipe = no_trailing_semicolon(&log.pipe, b" ");
        then.push(("set-option", "-p", LOG_OPTION, pipe));
        then.push(("set-option", "-p", "@mosaic_log_open", log.opening.clone()));
    }
    for (verb, opts, name, value) in then {
        args.extend([";".into(), verb.into()]);
        if !opts.is_empty() {
            args.push(opts.into());
        }
        args.extend(["-t".into(), target.clone().into(), name.into(), value]);
    }
    if spec.log.is_some() {
        // The first run's writer also writes its opening line (an option's value is not
        // expanded again, so no byte of the command is a format).
        let open = format!("#{{{LOG_OPTION}}} #{{@mosaic_log_open}}");
        args.extend([";", "pipe-pane", "-O", "-t", &target, &open].map(OsString::from));
    }
    args
}

/// The pane option holding the transcript writer's shell command (see [`reopen_pipe`]).
pub const LOG_OPTION: &str = "@mosaic_log";

/// `; if-shell -F -t T #{pane_pipe} "" "pipe-pane -O -t T '#{@mosaic_log}'"`: the pane's
/// transcript writer opened unless a pipe is open, its command read from the pane option
/// (so no byte of it crosses tmux's parser). A pane without the option gets none (an empty
/// `pipe-pane` command opens nothing).
pub(super) fn reopen_pipe(target: &str) -> [OsString; 8] {
    let open = format!("pipe-pane -O -t {target} \"#{{{LOG_OPTION}}}\"");
    [
        ";",
        "if-shell",
        "-F",
        "-t",
        target,
        "#{pane_pipe}",
        "",
        &open,
    ]
    .map(OsString::from)
}

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
