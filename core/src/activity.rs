/*!
Activity, as the record says it: is the agent working (`busy`), quiet (`idle`), or asking for
someone (`waiting`)? The sidecar's watch decides it (its own module doc says how); readers
(`status`, `ls`, the exporter) only name and parse it.
*/

use std::time::Duration;

/// How long an agent must be silent to count as idle, unless told (`--idle-after`).
pub const IDLE_AFTER_DEFAULT: Duration = Duration::from_secs(60);

/// After a wake-up from the terminal or the bell, how long we leave the inotify descriptor
/// unpolled: the bound on wake-ups (about one a second) and on the lag of what we report.
pub const QUIET: Duration = Duration::from_secs(1);

/// What the agent is doing, as the record says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Output within the idle threshold.
    Busy,
    /// No output for at least the idle threshold.
    Idle,
    /// A bell since the last output: the agent asked for attention.
    Waiting,
}

impl Activity {
    pub const ALL: [Activity; 3] = [Activity::Busy, Activity::Idle, Activity::Waiting];

    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Busy => "busy",
            Activity::Idle => "idle",
            Activity::Waiting => "waiting",
        }
    }

    pub fn parse(text: &str) -> Option<Activity> {
        Activity::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for a in Activity::ALL {
            assert_eq!(Activity::parse(a.as_str()), Some(a));
        }
        assert_eq!(Activity::parse("stuck"), None);
    }
}
