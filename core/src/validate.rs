/*!
The one place where values crossing a binary boundary are checked: agent names, intervals, PIDs.

Both binaries call these functions before they start or write anything, so a refusal always
happens first and always reads the same. Each error names the value and the rule it broke.
*/

use std::ops::RangeInclusive;
use std::time::Duration;

/// Longest agent name: tmux targets and file names stay short and portable.
pub const AGENT_MAX: usize = 64;

/// The default heartbeat interval, in seconds, as both binaries' `--help` shows it.
pub const DEFAULT_INTERVAL: &str = "30";
/// The default idle threshold, in seconds (`--idle-after`).
pub const DEFAULT_IDLE_AFTER: &str = "60";
/// The default tmux socket name (`tmux -L mosaic`).
pub const DEFAULT_SOCKET: &str = "mosaic";

/// Shortest interval the sidecar accepts, in seconds.
pub const INTERVAL_MIN: f64 = 0.01;
/// Longest interval the sidecar accepts, in seconds (one day).
pub const INTERVAL_MAX: f64 = 86_400.0;

/// An agent name becomes a tmux target (`=NAME`) and a file name (`NAME.hb`). tmux silently
/// rewrites `.` and `:` to `_`, and `/` would leave the heartbeat directory, so only
/// `[A-Za-z0-9][A-Za-z0-9_-]{0,63}` is accepted.
pub fn agent(name: &str) -> Result<&str, String> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= AGENT_MAX
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "invalid agent name {name:?}: use 1 to {AGENT_MAX} of A-Z a-z 0-9 _ -, starting with a letter or digit"
        ))
    }
}

/// A heartbeat interval in seconds: a finite number from 0.01 to 86400; fractions allowed.
pub fn interval(text: &str) -> Result<Duration, String> {
    seconds(text, INTERVAL_MIN..=INTERVAL_MAX).map_err(|why| invalid("interval", text, &why))
}

/// An idle threshold in seconds (`--idle-after`, `MOSAIC_IDLE_AFTER`): from 1 (activity is
/// only seen to about a second) to 86400; fractions allowed.
pub fn idle_after(text: &str) -> Result<Duration, String> {
    seconds(text, 1.0..=INTERVAL_MAX).map_err(|why| invalid("idle threshold", text, &why))
}

/// The one reading of a duration, in every binary (intervals, timeouts, restart delays,
/// grace periods): a finite number of seconds within `range`, fractions allowed, spaces
/// around it ignored. The refusal is the rule alone (`must be a number of seconds from 0 to
/// 86400`), ready for clap to put after the flag, or for [`invalid`] to name the value.
pub fn seconds(text: &str, range: RangeInclusive<f64>) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && range.contains(&secs) => {
            Ok(Duration::from_secs_f64(secs.max(0.0)))
        }
        _ => Err(format!(
            "must be a number of seconds from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

/// The default of `--hook-timeout`: how long an event hook may run, in seconds.
pub const DEFAULT_HOOK_TIMEOUT: &str = "30";

/// An event hook's timeout in seconds (`--hook-timeout`, `MOSAIC_HOOK_TIMEOUT`): 0.01 to 3600;
/// fractions allowed.
pub fn hook_timeout(text: &str) -> Result<Duration, String> {
    seconds(text, INTERVAL_MIN..=3600.0).map_err(|why| invalid("hook timeout", text, &why))
}

/// A refusal that names the value, its flag and the text: `invalid WHAT "TEXT": WHY`.
pub fn invalid(what: &str, text: &str, why: &str) -> String {
    format!("invalid {what} {text:?}: {why}")
}

/// A size in bytes: digits, optionally followed by K, M or G (powers of 1024), from 1 KiB to
/// 1 TiB (a transcript file's rotation size).
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (1 << 10..=1 << 40).contains(n))
        .ok_or_else(|| "must be bytes from 1024 to 1T, with an optional K, M or G".into())
}

/// A process ID to watch: a decimal number from 1 to the kernel's maximum.
pub fn pid(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(format!(
            "invalid pid {text:?}: must be a whole number from 1 to 2147483647"
        )),
    }
}

/// A process start time, as `/proc/PID/stat` field 22 gives it: a whole number of clock ticks.
pub fn start_time(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid start time {text:?}: must be a whole number of clock ticks"))
}

/// A tmux socket name (`tmux -L NAME`): a file name in tmux's socket directory.
pub fn socket(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "invalid tmux socket name {name:?}: use 1 to 100 of A-Z a-z 0-9 _ - ."
        ))
    }
}

/// The agent runtimes the launcher knows.
pub const RUNTIMES: [&str; 3] = ["pi", "claude", "codex"];

/// One of [`RUNTIMES`].
pub fn runtime(name: &str) -> Result<&str, String> {
    if RUNTIMES.contains(&name) {
        Ok(name)
    } else {
        Err(format!(
            "unknown runtime {name:?}: use one of {}",
            RUNTIMES.join(", ")
        ))
    }
}

/// clap's multi-line error as one line: the message and any lines it lists, without the
/// usage block and the `error: ` prefix.
pub fn one_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        parts.push(line.trim_start_matches("error: "));
    }
    parts.join(" ")
}

/// Formats an interval the way a person would write it: `30`, `0.5`.
pub fn format_interval(interval: Duration) -> String {
    format!("{}", interval.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("10M"), Ok(10 << 20));
        assert_eq!(size("2048"), Ok(2048));
        assert_eq!(size("1k"), Ok(1024));
        for bad in ["", "1", "1023", "M", "-1K", "1.5M", "2000G", "1T"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idle_thresholds() {
        assert_eq!(idle_after("60"), Ok(Duration::from_secs(60)));
        assert_eq!(idle_after("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0.5", "0", "-1", "86401", "NaN", "inf", "", "1m"] {
            assert!(idle_after(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn seconds_within_a_range() {
        assert_eq!(
            seconds(" 1.5 ", 0.0..=10.0),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(seconds("0", 0.0..=10.0), Ok(Duration::ZERO));
        assert_eq!(seconds("-0", 0.0..=10.0), Ok(Duration::ZERO));
        for bad in ["", "-1", "nan", "inf", "10.5", "1s", "0x1"] {
            assert_eq!(
                seconds(bad, 0.0..=10.0),
                Err("must be a number of seconds from 0 to 10".into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            interval("0").unwrap_err(),
            "invalid interval \"0\": must be a number of seconds from 0.01 to 86400"
        );
    }

    #[test]
    fn agent_names() {
        for good in ["a", "A9", "agent-1", "x_y", "0", &"a".repeat(64)] {
            assert!(agent(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "a.b",
            "a:b",
            "a/b",
            "a b",
            "é",
            "a\n",
            "..",
            &"a".repeat(65),
        ] {
            assert!(agent(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("30").unwrap(), Duration::from_secs(30));
        assert_eq!(interval("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(interval("0.01").unwrap(), Duration::from_millis(10));
        for bad in ["", "0", "-1", "nan", "inf", "1e9", "0.001", "x", "1s"] {
            assert!(interval(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_interval(interval("42").unwrap()), "42");
        assert_eq!(format_interval(interval("0.25").unwrap()), "0.25");
    }

    #[test]
    fn sockets_and_runtimes() {
        assert!(socket("mosaic-agent-test-1-2").is_ok());
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(socket(bad).is_err(), "{bad:?} accepted");
        }
        assert!(runtime("claude").is_ok());
        assert!(runtime("bash").is_err());
    }

    #[test]
    fn one_line_keeps_listed_items() {
        let text = "error: the following required arguments were not provided:\n  --pid <PID>\n\nUsage: x\n";
        assert_eq!(
            one_line(text),
            "the following required arguments were not provided: --pid <PID>"
        );
    }

    #[test]
    fn pids() {
        assert_eq!(pid("1").unwrap(), 1);
        for bad in ["0", "-5", "x", "", "99999999999"] {
            assert!(pid(bad).is_err(), "{bad:?} accepted");
        }
    }
}
