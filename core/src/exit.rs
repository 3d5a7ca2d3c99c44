/*! Exit codes, one enum for both binaries: 0 done, 1 failed at run time, 2 bad input or usage. */

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
