/*!
How a process died, one type for every binary: the sidecar's record and its restart policy,
the respawn helper's answer, the launcher's report of a dead pane, and `status`'s table.

A death is known from whoever could see it: tmux, the pane's parent, keeps a dead pane's status
([`Death::from_pane`]); an unreaped zombie shows its own wait status in `/proc/PID/stat`
([`Death::from_wait_status`]); otherwise it is [`Death::Unknown`]. Signal names come from
`nix` ([`signal_name`]), never spelled here.
*/

/// How a process ended, as far as it can be known (the sidecar is not its parent; tmux, which
/// is, keeps the status of a dead pane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// It exited with this status.
    Status(i32),
    /// A signal killed it.
    Signal(i32),
    /// It is gone and nothing says how (no dead pane to ask).
    Unknown,
}

impl Death {
    /// The death as tmux reports a dead pane: `#{pane_dead_status}` and `#{pane_dead_signal}`
    /// (empty when not applicable), or as a record's `exit_status=` and `exit_signal=`.
    pub fn from_pane(status: Option<i32>, signal: Option<i32>) -> Death {
        match (signal, status) {
            (Some(sig), _) if sig > 0 => Death::Signal(sig),
            (_, Some(code)) => Death::Status(code),
            _ => Death::Unknown,
        }
    }

    /// The death a wait status says (`WIFEXITED`, `WIFSIGNALED`), as `/proc/PID/stat`
    /// field 52 holds it for a zombie.
    pub fn from_wait_status(status: i32) -> Death {
        match status & 0x7f {
            0 => Death::Status((status >> 8) & 0xff),
            0x7f => Death::Unknown,
            sig => Death::Signal(sig),
        }
    }

    /// Anything but exit status 0.
    pub fn is_failure(self) -> bool {
        self != Death::Status(0)
    }

    /// `exit_status=` and `exit_signal=` of the record.
    pub fn keys(self) -> (Option<i32>, Option<i32>) {
        match self {
            Death::Status(code) => (Some(code), None),
            Death::Signal(sig) => (None, Some(sig)),
            Death::Unknown => (None, None),
        }
    }

    /// For the sidecar's messages and log: `exit 3`, `signal 9 (KILL)`, `unknown`.
    pub fn describe(self) -> String {
        match self {
            Death::Status(code) => format!("exit {code}"),
            Death::Signal(sig) => match signal_name(sig) {
                Some(name) => format!("signal {sig} ({name})"),
                None => format!("signal {sig}"),
            },
            Death::Unknown => "unknown".into(),
        }
    }
}

/// The usual name of a signal, without `SIG` (`TERM`, `KILL`), as `nix` knows it; `None` for
/// a number it does not name (a real-time signal).
pub fn signal_name(sig: i32) -> Option<&'static str> {
    let signal = nix::sys::signal::Signal::try_from(sig).ok()?;
    signal.as_str().strip_prefix("SIG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_from_tmux_and_from_wait_statuses() {
        assert_eq!(Death::from_pane(Some(3), None), Death::Status(3));
        assert_eq!(Death::from_pane(Some(0), Some(9)), Death::Signal(9));
        assert_eq!(Death::from_pane(None, Some(15)), Death::Signal(15));
        assert_eq!(Death::from_pane(None, None), Death::Unknown);
        assert_eq!(Death::Signal(9).describe(), "signal 9 (KILL)");
        assert_eq!(Death::Signal(40).describe(), "signal 40");
        assert_eq!(Death::from_wait_status(3 << 8), Death::Status(3));
        assert_eq!(Death::from_wait_status(9), Death::Signal(9));
        assert_eq!(
            Death::from_wait_status(0x80 | 11),
            Death::Signal(11),
            "core dumped"
        );
        assert_eq!(Death::Status(0).keys(), (Some(0), None));
    }

    #[test]
    fn signals_are_named_as_records_and_reports_show_them() {
        let named = [
            (libc::SIGHUP, "HUP"),
            (libc::SIGINT, "INT"),
            (libc::SIGKILL, "KILL"),
            (libc::SIGSEGV, "SEGV"),
            (libc::SIGTERM, "TERM"),
            (libc::SIGSYS, "SYS"),
        ];
        for (sig, name) in named {
            assert_eq!(signal_name(sig), Some(name), "{sig}");
        }
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(libc::SIGRTMIN() + 6), None);
    }
}
