/*!
What tmux prints, read: the rows of `list-panes -a` ([`PaneRow`], in the format
[`PANE_ROW_FORMAT`] asks for), the pane and server pids `new-session -P` and `respawn-pane
-P` print, the active pane's line of `list-panes` ([`parse_pane`]), and a capture's output
without a dead pane's own line ([`output_only`]). Pure functions of
text, unit-tested here; [`super`] runs tmux.
*/

use mosaic_core::death::Death;
use mosaic_core::validate;

use super::{DeadPane, Pane, PanePids};

/// The `list-panes -F` format of a [`PaneRow`], fields split by tabs; the session name goes
/// last, as the one field that may hold a tab.
pub(super) const PANE_ROW_FORMAT: &str = "#{&&:#{pane_active},#{window_active}}\t#{pane_pid}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}\t#{pane_dead_time}\t#{session_created}\t#{session_name}";

/// One session's pane, as `list-panes -a` reports it. The `dead_*` fields are set only when
/// the session keeps its dead pane (`remain-on-exit`, which the launcher sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneRow {
    pub session: String,
    pub pid: Option<i32>,
    pub dead: bool,
    /// How the dead pane's process ended ([`Death::Unknown`] while it lives).
    pub death: Death,
    /// When the pane died (seconds since the epoch).
    pub dead_time: Option<i64>,
    /// When the session was created (seconds since the epoch).
    pub created: Option<i64>,
}

impl PaneRow {
    /// A row, and whether it is its session's active pane in its current window.
    pub(super) fn parse(line: &str) -> Option<(bool, PaneRow)> {
        let mut fields = line.splitn(8, '\t');
        let mut next = || fields.next();
        let (active, pid, dead, status, signal, dead_time, created) = (
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
        );
        let row = PaneRow {
            pid: mosaic_core::validate::pid(pid).ok(),
            dead: dead == "1",
            death: Death::from_pane(status.parse().ok(), signal.parse().ok()),
            dead_time: dead_time.parse().ok(),
            created: created.parse().ok(),
            session: next()?.to_string(),
        };
        Some((active == "1", row))
    }
}

/// `PANE_PID SERVER_PID` from `-P -F '#{pane_pid} #{pid}'`.
pub(super) fn parse_pids(stdout: &[u8]) -> Option<PanePids> {
    let line = std::str::from_utf8(stdout).ok()?.lines().next()?;
    let mut words = line.split_whitespace();
    let pane = validate::pid(words.next()?).ok()?;
    let server = validate::pid(words.next()?).ok()?;
    Some(PanePids { pane, server })
}

/// The active pane's line of `list-panes`; a stand-in tmux that prints only a pid gets the
/// benefit of the doubt (a live pane), one that prints nothing gets `Unknown`.
pub(super) fn parse_pane(stdout: &[u8]) -> Pane {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let line = lines
        .iter()
        .find(|l| l.starts_with("1:"))
        .or_else(|| lines.first());
    let Some(line) = line else {
        return Pane::Unknown;
    };
    let fields: Vec<&str> = line.split(':').collect();
    let pid = |i: usize| fields.get(i).and_then(|f| validate::pid(f).ok());
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok());
    match fields.len() {
        6 => match pid(1) {
            Some(pid) if fields[2] == "1" => Pane::Dead(DeadPane {
                pid,
                death: Death::from_pane(num(3), num(4)),
                time: fields[5].parse().ok(),
            }),
            Some(pid) => Pane::Live(pid),
            _ => Pane::Unknown,
        },
        1 => match pid(0) {
            Some(pid) => Pane::Live(pid),
            _ => Pane::Unknown,
        },
        _ => Pane::Unknown,
    }
}

/// `text`'s first line (without its newline) and the rest.
pub(super) fn split_first_line(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b'\n') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &[]),
    }
}

/// What the agent printed, from a capture of its pane: a dead pane's last line is tmux's own
/// `remain-on-exit-format` ("Pane is dead (status 1, ...)"), written on the screen's bottom
/// row, below the blank rows between it and the output, and no output of the agent's.
pub(super) fn output_only(capture: &[u8], dead: bool) -> Vec<u8> {
    let mut text = capture.to_vec();
    if dead {
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let keep = body
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        text.truncate(keep);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pane_rows_parse_with_any_session_name() {
        let (active, live) = PaneRow::parse("1\t42\t0\t\t\t\t1795775603\ta\tb").unwrap();
        assert!(active);
        assert_eq!(
            (live.session.as_str(), live.pid, live.dead, live.created),
            ("a\tb", Some(42), false, Some(1795775603))
        );
        let (_, dead) = PaneRow::parse("0\t43\t1\t\t15\t1795775604\t1795775603\tc").unwrap();
        assert_eq!(
            (dead.dead, dead.death, dead.dead_time),
            (true, Death::Signal(15), Some(1795775604))
        );
        assert_eq!(PaneRow::parse("1\t42\t0"), None);
    }

    #[test]
    fn pids_parse_from_the_first_line() {
        assert_eq!(
            parse_pids(b"123 45\n"),
            Some(PanePids {
                pane: 123,
                server: 45
            })
        );
        assert_eq!(parse_pids(b"123\n"), None);
        assert_eq!(parse_pids(b"\n"), None);
        assert_eq!(parse_pids(b""), None);
    }

    #[test]
    fn panes_parse_live_dead_and_stand_ins() {
        assert_eq!(parse_pane(b"0:7:0:::\n1:8:0:::\n"), Pane::Live(8));
        assert_eq!(
            parse_pane(b"1:9:1:127::1795775572\n"),
            Pane::Dead(DeadPane {
                pid: 9,
                death: Death::Status(127),
                time: Some(1795775572)
            })
        );
        assert_eq!(parse_pane(b"88888\n"), Pane::Live(88888));
        assert_eq!(parse_pane(b"\n"), Pane::Unknown);
        assert_eq!(parse_pane(b""), Pane::Unknown);
    }
}
