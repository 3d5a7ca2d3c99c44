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
