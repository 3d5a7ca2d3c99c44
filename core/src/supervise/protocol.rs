/*!
The restart's two hand-offs: the respawn helper's line protocol with the sidecar ([`Answer`]
on the helper's stdout, [`GO`] on its stdin), and the restart arguments the launcher puts in
the sidecar's argv ([`sidecar_args`]), so the policy outlives the shell that launched the agent.
*/

use crate::death::Death;

use super::flags::settings;
use super::policy::{Limits, Restart};

/// One line from the respawn helper to the sidecar (the helper's stdout). The sidecar answers
/// with [`GO`] on the helper's stdin, or closes it to cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The agent's pane is dead: how its process ended (`dead status 3`, `dead signal 9`,
    /// `dead unknown`).
    Dead(Death),
    /// The pane lives again, someone else restarted it: its pid and start time
    /// (`live PID STARTED`).
    Live(i32, Option<u64>),
    /// There is no pane to restart: the session is gone (`gone`).
    Gone,
    /// The pane was restarted: its new pid and start time (`started PID STARTED`).
    Started(i32, Option<u64>),
}

/// The sidecar's word to go ahead with the restart.
pub const GO: &[u8] = b"go\n";

impl Answer {
    /// The line, newline included.
    pub fn line(self) -> String {
        let pid_line = |verb: &str, pid: i32, started: Option<u64>| match started {
            Some(started) => format!("{verb} {pid} {started}\n"),
            None => format!("{verb} {pid}\n"),
        };
        match self {
            Answer::Dead(Death::Status(code)) => format!("dead status {code}\n"),
            Answer::Dead(Death::Signal(sig)) => format!("dead signal {sig}\n"),
            Answer::Dead(Death::Unknown) => "dead unknown\n".into(),
            Answer::Live(pid, started) => pid_line("live", pid, started),
            Answer::Gone => "gone\n".into(),
            Answer::Started(pid, started) => pid_line("started", pid, started),
        }
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<Answer, String> {
        let bad = || format!("unexpected answer from the respawn helper: {line:?}");
        let mut words = line.split(' ');
        let number = |word: Option<&str>| word.and_then(|w| w.parse::<i32>().ok()).ok_or_else(bad);
        let answer = match words.next() {
            Some("dead") => match words.next() {
                Some("status") => Answer::Dead(Death::Status(number(words.next())?)),
                Some("signal") => Answer::Dead(Death::Signal(number(words.next())?)),
                Some("unknown") => Answer::Dead(Death::Unknown),
                _ => return Err(bad()),
            },
            Some(verb @ ("live" | "started")) => {
                let pid =
                    crate::validate::pid(words.next().unwrap_or_default()).map_err(|_| bad())?;
                let started = match words.next() {
                    Some(word) => Some(word.parse().map_err(|_| bad())?),
                    None => None,
                };
                if verb == "live" {
                    Answer::Live(pid, started)
                } else {
                    Answer::Started(pid, started)
                }
            }
            Some("gone") => Answer::Gone,
            _ => return Err(bad()),
        };
        match words.next() {
            Some(_) => Err(bad()),
            None => Ok(answer),
        }
    }
}

/// The sidecar's arguments that carry a restart policy (none for `no`): the policy and each
/// limit that is not the default (the tmux socket is [`crate::handover::Request`]'s). The
/// policy lives in the sidecar's argv, so it outlives the shell that launched the agent.
pub fn sidecar_args(policy: Restart, limits: &Limits) -> Vec<String> {
    settings(policy, limits)
        .into_iter()
        .flat_map(|(flag, value)| [format!("--{flag}"), value])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_strangers_are_refused() {
        let answers = [
            Answer::Dead(Death::Status(3)),
            Answer::Dead(Death::Signal(9)),
            Answer::Dead(Death::Unknown),
            Answer::Live(42, Some(7)),
            Answer::Started(43, None),
            Answer::Gone,
        ];
        for answer in answers {
            let line = answer.line();
            assert_eq!(Answer::parse(line.trim_end()), Ok(answer), "{line}");
        }
        for bad in [
            "",
            "dead",
            "dead status x",
            "started 0",
            "started -1",
            "gone now",
            "go",
        ] {
            assert!(Answer::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_policy_travels_to_the_sidecar_without_its_defaults() {
        let limits = Limits {
            floor: std::time::Duration::from_millis(500),
            burst: 3,
            ..Limits::DEFAULT
        };
        let args = sidecar_args(Restart::OnFailure, &limits);
        assert_eq!(
            args.join(" "),
            "--restart on-failure --restart-delay 0.5 --restart-burst 3"
        );
        assert!(sidecar_args(Restart::No, &limits).is_empty());
    }
}
