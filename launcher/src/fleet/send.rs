/*!
`mosaic-fleet send`: give agents a prompt the way a person would, as one paste and then Enter.

A terminal agent (Claude Code, Codex) reads its terminal in raw mode with bracketed paste: a
text typed key by key is submitted at its first newline, and an Enter inside a paste is a
newline, not a submit. So the text goes in as one paste ([`Tmux::paste`]: `load-buffer` from
the tmux client's stdin into a private buffer, `paste-buffer -p -d`), and Enter follows as a
key of its own ([`Tmux::enter`]), `--enter-delay` later: these agents take input that comes
right after a paste as more of the paste (Codex for 120 ms; Claude Code for longer), and an
Enter taken so is a newline that leaves the prompt unsubmitted. The delay runs once for every
agent of one round, not once per agent.

The text is never an argument of any process: it reaches the tmux client through a memfd on
its stdin, so no shell and no tmux command parser sees a byte of it. A text with a control
character other than newline and tab is refused before anything is sent: such a byte could
end a bracketed paste early (ESC), submit (CR) or interrupt (Ctrl-C) on its own.

`--wait-ready SECS` sends to each agent once its sidecar reports it not busy (`idle` or
`waiting`), re-reading the fleet every [`POLL`]; an agent still busy at the deadline, or that
reports no activity, is not sent to (exit 1).
*/

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use mosaic_core::activity::Activity;
use serde::Serialize;

use super::ls::{self, Agent, AgentState};
use super::{agent_name, failed, print, tmux_failed, usage, Fail, Fleet, Where};
use crate::config::LaunchConfig;

pub const HELP: &str = "The text: TEXT words after `--`, joined by spaces, else standard input \
    to its end (one final newline dropped). It goes in as one paste (bracketed when the agent \
    asked for bracketed paste), then Enter as a key of its own.\n\
    Environment: each option above reads the variable shown beside it.\n\
    Exit codes: 0 sent to every agent named (with --all or --label: to every running agent \
    chosen, the others skipped and said so), 1 an agent named is unknown or not running \
    (nothing is sent), no agent has the --label, an agent is not ready by --wait-ready's \
    deadline, or tmux failed, 2 bad input: a control character other than newline and tab in \
    the text, an empty or non-UTF-8 text, a malformed name or label.";

/// How often `--wait-ready` reads the fleet again.
pub const POLL: Duration = Duration::from_millis(250);

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Agents to send to.
    #[arg(
        value_name = "AGENT",
        required_unless_present_any = ["all", "labels"],
        conflicts_with_all = ["all", "labels"]
    )]
    agents: Vec<String>,
    /// Send to every running agent on the socket; the others are skipped, and said so.
    #[arg(long, conflicts_with = "labels")]
    all: bool,
    /// Send to every running agent started with this label (`--label` of the launcher, or
    /// `labels` in the fleet file): KEY=VALUE, or KEY for any value; given again, an agent
    /// must have each. The others are skipped, and said so.
    #[arg(long = "label", value_name = "KEY[=VALUE]", value_parser = label)]
    labels: Vec<(String, Option<String>)>,
    /// Type the text without pressing Enter.
    #[arg(long)]
    no_enter: bool,
    /// Wait up to SECS for each agent to be not busy (activity idle or waiting) before
    /// sending to it; exit 1 for an agent that is not by then.
    #[arg(long, value_name = "SECS", value_parser = super::seconds)]
    wait_ready: Option<Duration>,
    /// Seconds between the paste and Enter, 0 to 60: terminal agents take input that comes
    /// right after a paste as more of the paste.
    #[arg(
        long,
        env = "MOSAIC_SEND_ENTER_DELAY",
        value_name = "SECS",
        default_value = "1",
        value_parser = enter_delay
    )]
    enter_delay: Duration,
    /// Report in JSON, one object per agent and line: {agent, result (sent, typed, skipped,
    /// failed), enter, bytes, reason}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    place: Where,
    /// The text, after `--` (else read from standard input).
    #[arg(last = true, value_name = "TEXT")]
    text: Vec<OsString>,
}

/// `KEY=VALUE` or `KEY`, the key as the launcher's `--label` allows it.
fn label(text: &str) -> Result<(String, Option<String>), String> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (text, None),
    };
    crate::config::label_key(key)?;
    Ok((key.to_string(), value))
}

/// Whether `have` (an agent's stored labels) has every one of `want`.
fn has_labels(have: &[(String, String)], want: &[(String, Option<String>)]) -> bool {
    want.iter().all(|(key, value)| {
        have.iter()
            .any(|(k, v)| k == key && value.as_ref().is_none_or(|value| value == v))
    })
}

fn enter_delay(text: &str) -> Result<Duration, String> {
    // An empty variable counts as unset.
    if text.is_empty() {
        return Ok(Duration::from_secs(1));
    }
    mosaic_core::validate::seconds(text, 0.0..=60.0)
}

/// What became of the text for one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Pasted, and Enter pressed unless `--no-enter`.
    Sent { enter: bool },
    /// Not running (`--all` only).
    Skipped(String),
    /// Not sent, or sent only in part (the reason says which).
    Failed(String),
}

#[derive(Serialize)]
struct JsonLine<'a> {
    agent: &'a str,
    result: &'static str,
    enter: bool,
    bytes: usize,
    reason: Option<&'a str>,
}

/// The text as given: TEXT words joined by spaces, else stdin without its final newline.
fn read_text(words: &[OsString]) -> Result<String, Fail> {
    let bytes = if words.is_empty() {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| {
                failed(format!(
                    "cannot read the text from stdin: {}",
                    mosaic_core::why(&e)
                ))
            })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        bytes
    } else {
        words
            .iter()
            .map(|w| w.clone().into_vec())
            .collect::<Vec<_>>()
            .join(&b' ')
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        usage(format!(
            "text refused: not UTF-8 (at byte {}); nothing was sent",
            e.utf8_error().valid_up_to()
        ))
    })?;
    check(&text).map_err(usage)?;
    Ok(text)
}

/// Refuses an empty text and one with a control character but newline and tab (C0, DEL, C1).
pub fn check(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("text refused: it is empty; nothing was sent".into());
    }
    let bad = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && c != '\n' && c != '\t');
    match bad {
        Some((at, c)) => Err(format!(
            "text refused: control character U+{:04X} at byte {at} (only newline and tab may \
             be sent); nothing was sent",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The text in a memfd, read by each tmux client from its start.
fn text_file(text: &str) -> Result<std::fs::File, Fail> {
    let cannot = |e: std::io::Error| {
        failed(format!(
            "cannot hold the text for tmux: {}",
            mosaic_core::why(&e)
        ))
    };
    let fd = nix::sys::memfd::memfd_create("mosaic-send", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| cannot(e.into()))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(text.as_bytes()).map_err(cannot)?;
    Ok(file)
}

/// Why an agent cannot be sent to, or `None` when its pane runs.
fn not_running(agent: &Agent) -> Option<String> {
    match &agent.pane {
        Some(pane) if !pane.dead => None,
        _ => Some(format!("not running ({})", agent.state.as_str())),
    }
}

/// Whether the agent's sidecar reports it not busy, else what it reports.
fn is_ready(agent: &Agent) -> Result<(), String> {
    match agent.activity() {
        Some((Activity::Idle | Activity::Waiting, _)) => Ok(()),
        Some((Activity::Busy, _)) => Err("busy".into()),
        None if agent.state == AgentState::Running => Err("no activity reported".into()),
        None => Err(format!("no activity reported ({})", agent.state.as_str())),
    }
}

/// The agents to send to, in order, each with its outcome decided already (skipped) or not.
fn targets(
    args: &SendArgs,
    fleet: &Fleet,
    agents: &[Agent],
) -> Result<Vec<(String, Option<Outcome>)>, Fail> {
    if args.all {
        return Ok(agents
            .iter()
            .filter(|a| !a.long_gone())
            .map(|a| (a.name.clone(), not_running(a).map(Outcome::Skipped)))
            .collect());
    }
    if !args.labels.is_empty() {
        return labelled(args, fleet, agents);
    }
    let mut names: Vec<&str> = Vec::new();
    for name in &args.agents {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    // All or nothing: an unknown or stopped name sends to nobody.
    let mut unknown = Vec::new();
    let mut down = Vec::new();
    for &name in &names {
        match agents.iter().find(|a| a.name == name) {
            None => unknown.push(name),
            Some(agent) => {
                if let Some(why) = not_running(agent) {
                    down.push(format!("{name} is {why}"));
                }
            }
        }
    }
    if !unknown.is_empty() {
        // Not bad input for `send`: a name that is not there is a failure to deliver.
        return Err(failed(
            fleet.unknown(&unknown).message + "; nothing was sent",
        ));
    }
    if !down.is_empty() {
        return Err(failed(format!(
            "cannot send: {}; nothing was sent",
            down.join(", ")
        )));
    }
    Ok(names.into_iter().map(|n| (n.to_string(), None)).collect())
}

/// The agents with every label of `--label`, as [`targets`] gives them; none is a failure.
fn labelled(
    args: &SendArgs,
    fleet: &Fleet,
    agents: &[Agent],
) -> Result<Vec<(String, Option<Outcome>)>, Fail> {
    let mut chosen = Vec::new();
    for agent in agents.iter().filter(|a| !a.long_gone()) {
        let config = LaunchConfig::load(&fleet.hb_dir, &agent.name).map_err(failed)?;
        if config.is_some_and(|c| has_labels(&c.labels, &args.labels)) {
            chosen.push((agent.name.clone(), not_running(agent).map(Outcome::Skipped)));
        }
    }
    if chosen.is_empty() {
        let wanted: Vec<String> = args
            .labels
            .iter()
            .map(|(k, v)| v.as_ref().map_or_else(|| k.clone(), |v| format!("{k}={v}")))
            .collect();
        return Err(failed(format!(
            "no agent with label {} on tmux socket {}: nothing sent",
            wanted.join(" and "),
            fleet.socket
        )));
    }
    Ok(chosen)
}

/// Pastes into each of `ready` (indices into `outcomes`), then, one delay later for all, presses
/// Enter in each pane that took the paste.
fn deliver(
    args: &SendArgs,
    fleet: &Fleet,
    file: &mut std::fs::File,
    outcomes: &mut [(String, Option<Outcome>)],
    ready: &[usize],
) {
    let tmux = fleet.tmux();
    let mut pasted = Vec::new();
    for &i in ready {
        let (agent, outcome) = &mut outcomes[i];
        let clone = file.rewind().and_then(|()| file.try_clone());
        let result = match clone {
            Ok(text) => {
                let buffer = format!(
                    "mosaic-send-{}-{:016x}",
                    std::process::id(),
                    mosaic_core::sys::random_u64()
                );
                tmux.paste(agent, text, &buffer)
                    .map_err(|f| tmux_failed(f).message)
            }
            Err(e) => Err(format!(
                "cannot read the text back: {}",
                mosaic_core::why(&e)
            )),
        };
        *outcome = Some(match result {
            Ok(true) => {
                pasted.push(i);
                Outcome::Sent { enter: false }
            }
            Ok(false) => Outcome::Failed("its session is gone".into()),
            Err(why) => Outcome::Failed(why),
        });
    }
    if args.no_enter || pasted.is_empty() {
        return;
    }
    std::thread::sleep(args.enter_delay);
    for i in pasted {
        let (agent, outcome) = &mut outcomes[i];
        *outcome = Some(match tmux.enter(agent) {
            Ok(true) => Outcome::Sent { enter: true },
            Ok(false) => Outcome::Failed("pasted, but its session was gone before Enter".into()),
            Err(f) => Outcome::Failed(format!(
                "pasted, but not submitted: {}",
                tmux_failed(f).message
            )),
        });
    }
}

pub fn run(args: &SendArgs) -> Result<ExitCode, Fail> {
    for agent in &args.agents {
        agent_name(agent)?;
    }
    let text = read_text(&args.text)?;
    let fleet = args.place.resolve()?;
    let mut agents = ls::read(&fleet)?;
    let mut outcomes = targets(args, &fleet, &agents)?;
    let mut file = text_file(&text)?;
    let deadline = args.wait_ready.map(|wait| Instant::now() + wait);
    loop {
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for (i, (name, outcome)) in outcomes.iter_mut().enumerate() {
            if outcome.is_some() {
                continue;
            }
            let Some(agent) = agents.iter().find(|a| &a.name == name) else {
                *outcome = Some(Outcome::Failed("its session is gone".into()));
                continue;
            };
            if let Some(why) = not_running(agent) {
                *outcome = Some(Outcome::Failed(format!("{why} by the time it was ready")));
                continue;
            }
            match (deadline, is_ready(agent)) {
                (None, _) | (Some(_), Ok(())) => ready.push(i),
                (Some(_), Err(why)) => waiting.push((i, why)),
            }
        }
        deliver(args, &fleet, &mut file, &mut outcomes, &ready);
        let Some(deadline) = deadline.filter(|_| !waiting.is_empty()) else {
            break;
        };
        let now = Instant::now();
        if now >= deadline {
            let wait = crate::tmux::seconds(args.wait_ready.unwrap_or_default());
            for (i, why) in waiting {
                outcomes[i].1 = Some(Outcome::Failed(format!(
                    "not ready within {wait} ({why}): nothing sent"
                )));
            }
            break;
        }
        std::thread::sleep(POLL.min(deadline - now));
        agents = ls::read(&fleet)?;
    }
    report(args, &fleet, &outcomes, text.len(), text.lines().count())
}

fn report(
    args: &SendArgs,
    fleet: &Fleet,
    outcomes: &[(String, Option<Outcome>)],
    bytes: usize,
    lines: usize,
) -> Result<ExitCode, Fail> {
    let mut out = String::new();
    let mut failures = Vec::new();
    for (agent, outcome) in outcomes {
        let outcome = outcome
            .clone()
            .unwrap_or_else(|| Outcome::Failed("not sent".into()));
        if matches!(outcome, Outcome::Failed(_)) {
            failures.push(agent.as_str());
        }
        if args.json {
            let (result, enter, sent, reason) = match &outcome {
                Outcome::Sent { enter: true } => ("sent", true, bytes, None),
                Outcome::Sent { enter: false } => ("typed", false, bytes, None),
                Outcome::Skipped(why) => ("skipped", false, 0, Some(why.as_str())),
                Outcome::Failed(why) => ("failed", false, 0, Some(why.as_str())),
            };
            let line = JsonLine {
                agent,
                result,
                enter,
                bytes: sent,
                reason,
            };
            out += &serde_json::to_string(&line).expect("a report serializes");
        } else {
            let size = format!(
                "{bytes} byte{}, {lines} line{}",
                plural(bytes),
                plural(lines)
            );
            out += &match outcome {
                Outcome::Sent { enter: true } => format!("sent to {agent}: {size}, Enter pressed"),
                Outcome::Sent { enter: false } => format!("typed into {agent}: {size}, no Enter"),
                Outcome::Skipped(why) => format!("skipped {agent}: {why}"),
                Outcome::Failed(why) => format!("failed {agent}: {why}"),
            };
        }
        out.push('\n');
    }
    if outcomes.is_empty() && !args.json {
        out += &format!("no agent on tmux socket {}: nothing sent\n", fleet.socket);
    }
    print(&out)?;
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(failed(format!("send failed for {}", failures.join(", "))))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newline_and_tab_pass_among_controls() {
        assert!(check("a\nb\tc ;$(x) #{y} \\ 'q' \"d\" é 漢").is_ok());
        for bad in ["\x1b[201~", "a\rb", "\x03", "\x7f", "\u{9b}", "\0"] {
            let why = check(bad).unwrap_err();
            assert!(why.contains("control character"), "{bad:?}: {why}");
        }
        assert!(check("").unwrap_err().contains("empty"));
        assert_eq!(
            check("ok\x1b").unwrap_err(),
            "text refused: control character U+001B at byte 2 (only newline and tab may be \
             sent); nothing was sent"
        );
    }

    #[test]
    fn labels_match_by_key_or_key_and_value_all_of_them() {
        let have = [
            ("team".to_string(), "search".to_string()),
            ("tier".into(), "".into()),
        ];
        let want = |list: &[&str]| -> Vec<(String, Option<String>)> {
            list.iter().map(|l| label(l).unwrap()).collect()
        };
        assert!(has_labels(&have, &want(&["team=search"])));
        assert!(has_labels(&have, &want(&["team", "tier="])));
        assert!(!has_labels(&have, &want(&["team=sea"])));
        assert!(!has_labels(&have, &want(&["team=search", "owner"])));
        assert!(!has_labels(&[], &want(&["team"])));
        assert!(label("bad key=x").is_err() && label("=x").is_err());
        assert_eq!(label("k=a=b").unwrap(), ("k".into(), Some("a=b".into())));
    }

    #[test]
    fn words_join_with_spaces() {
        let words: Vec<OsString> = ["a", "b c", ""].map(OsString::from).into();
        assert_eq!(read_text(&words).unwrap(), "a b c ");
        let bad: Vec<OsString> = [OsString::from_vec(vec![b'a', 0xff])].into();
        assert_eq!(read_text(&bad).unwrap_err().code, 2);
    }
}
