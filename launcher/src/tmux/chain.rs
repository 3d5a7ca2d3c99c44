/*!
Many sessions made in few tmux calls: `mosaic-fleet up` chains the `new-session` sequences of
its new agents with `;`, as many as fit in one command (tmux 3.3a refuses one over 16 KiB,
"command too long"). The server runs a chain without returning to its event loop between
commands and stops it at the first error (a `duplicate session`, say); [`NewSessions::finish`]
says which sessions a call made, and the caller launches the others one by one.
*/

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Instant;

use super::args::new_session_args;
use super::parse::parse_pids;
use super::{cannot_run, Failure, PanePids, Spec, Tmux};
use crate::child::{self, Running};

/// How many bytes of arguments one chained tmux call carries, under tmux's 16 KiB with room
/// for its framing.
const CHAIN_BYTES: usize = 14 * 1024;

impl<'a> Tmux<'a> {
    /// Starts the `new-session` sequences of `specs`, chained in as few tmux calls as the
    /// command size allows, and returns while tmux works: one [`NewSessions`] per call, in
    /// order.
    pub fn start_new_sessions(&self, specs: &[Spec]) -> Vec<NewSessions<'_>> {
        let mut calls = Vec::new();
        let mut at = 0;
        while at < specs.len() {
            let mut args: Vec<OsString> = Vec::new();
            let (mut size, mut count) = (0, 0);
            for spec in &specs[at..] {
                let one = new_session_args(spec);
                let more: usize = one.iter().map(|a| a.len() + 1).sum::<usize>() + 2;
                if count > 0 && size + more > CHAIN_BYTES {
                    break;
                }
                if count > 0 {
                    args.push(";".into());
                }
                args.extend(one);
                size += more;
                count += 1;
            }
            let mut cmd = self.command(&args);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let child = child::spawn(&mut cmd, true).map_err(|e| Failure::Error(cannot_run(e)));
            calls.push(NewSessions {
                tmux: self,
                child,
                count,
                deadline: Instant::now() + self.timeout,
            });
            at += count;
        }
        calls
    }
}

/// A chain of `new-session` sequences under way ([`Tmux::start_new_sessions`]).
pub struct NewSessions<'a> {
    tmux: &'a Tmux<'a>,
    child: Result<Running, Failure>,
    /// How many sessions the chain asks for.
    count: usize,
    deadline: Instant,
}

impl NewSessions<'_> {
    /// Waits for tmux: for each session of the chain, in order, its pids when it was made.
    /// `None` for one the chain did not make (tmux stopped at an error, or printed no pids):
    /// the caller launches that one alone, which finds out what there is.
    pub fn finish(self) -> Vec<Option<PanePids>> {
        let mut made = vec![None; self.count];
        // Not cut short by a stop signal, as for one session: the launches look right after.
        let Ok(out) = self.child.and_then(|child| {
            child
                .finish(self.deadline, None)
                .map_err(|cut| self.tmux.cut("new-session", cut))
        }) else {
            return made;
        };
        for (slot, line) in made.iter_mut().zip(out.stdout.split(|&b| b == b'\n')) {
            *slot = parse_pids(line);
        }
        made
    }
}
