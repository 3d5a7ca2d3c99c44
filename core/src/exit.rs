/*!
Exit codes, one enum for every binary: 0 done, 1 failed at run time, 2 bad input or usage; and
[`Fail`], the one failure every binary ends with (its code and its one-line message).
*/

/// Why a run did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Failed at run time: the environment, not the caller, is at fault.
    Failed = 1,
    /// Bad input or usage: nothing was started or written.
    Usage = 2,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// A run that did not succeed: its exit code (an [`Exit`], or one a protocol or a signal
/// gives: the hand-over's 3 and 4, 128+N) and one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub code: u8,
    /// Empty when nothing is worth saying (the reader closed stdout).
    pub message: String,
}

impl Fail {
    pub fn new(code: u8, message: String) -> Fail {
        Fail { code, message }
    }

    /// Bad input or usage (exit 2).
    pub fn usage(message: String) -> Fail {
        Fail::new(Exit::Usage.code(), message)
    }

    /// Failed at run time (exit 1).
    pub fn failed(message: String) -> Fail {
        Fail::new(Exit::Failed.code(), message)
    }

    /// Says `PROGRAM: message` on stderr (unless the message is empty) and gives the exit
    /// code. A stderr that cannot be written must not turn the code into a panic.
    pub fn report(&self, program: &str) -> std::process::ExitCode {
        if !self.message.is_empty() {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "{program}: {}", self.message);
        }
        std::process::ExitCode::from(self.code)
    }
}

/// Parses the command line. Help and version print as clap renders them (exit 0); any other
/// error prints one line, `PROGRAM: message (see --help)`, and exits 2.
pub fn parse_args<P: clap::Parser>(program: &str) -> P {
    parse_command(program, P::command())
}

/// [`parse_args`] for a command adjusted at run time (a help text that names this user's
/// default directory, say).
pub fn parse_command<P: clap::FromArgMatches>(program: &str, command: clap::Command) -> P {
    command
        .try_get_matches()
        .and_then(|matches| P::from_arg_matches(&matches))
        .unwrap_or_else(|e| {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            let message = crate::validate::one_line(&e.render().to_string());
            // A stderr that cannot be written must not turn exit 2 into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{program}: {message} (see --help)");
            std::process::exit(i32::from(Exit::Usage.code()));
        })
}
