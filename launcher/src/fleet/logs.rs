/*!
`mosaic-fleet logs AGENT [-n N] [--raw] [--json] [--follow]`: what the agent printed.

An agent with a transcript (`mosaic_core::transcript`: on by default) is read from it, its
rotated files first, also when its session or the tmux server is gone; `--follow` then reads
the file as it grows (looked at every [`POLL`], a rotation followed to the new file), and the
pane's pipe stays the writer's. One without (`--no-log`) is read from its pane as before:
`tmux capture-pane`, and `--follow` through a pipe of the pane ([`super::follow`]). Escape
sequences and controls are dropped ([`super::plain`]) unless `--raw`.

Where the transcript is: the folder its launch file names (`HB_DIR/.AGENT.launch`), else that
of `--log-dir` (`MOSAIC_LOG_DIR`, else the default) for the socket.
*/

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use mosaic_core::transcript;

use super::plain::{self, Printable};
use super::{agent_name, failed, follow, last_lines, print, print_bytes, tmux_failed, Fail, Where};
use crate::child::Stop;
use crate::tmux::{Pane, Tmux};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Agent name.
    #[arg(value_name = "AGENT")]
    agent: String,
    /// How many of the last lines to print (0: all the transcript or the pane kept).
    #[arg(short = 'n', long, value_name = "LINES", default_value_t = 40)]
    lines: usize,
    /// Print as a JSON object: {agent, lines}.
    #[arg(long, conflicts_with = "follow")]
    json: bool,
    /// Print the output as it was written, escape sequences and carriage returns included.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Then print the output as it comes, until the agent exits, its session goes, or
    /// Ctrl-C (exit 130).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Base directory of transcripts, when the agent's launch file does not name it
    /// [default: $XDG_STATE_HOME/mosaic/logs, else ~/.local/state/mosaic/logs].
    #[arg(long, env = "MOSAIC_LOG_DIR", value_name = "DIR")]
    log_dir: Option<PathBuf>,
    #[command(flatten)]
    place: Where,
}

/// How often a followed transcript is looked at.
const POLL: Duration = Duration::from_millis(50);
/// How often tmux is asked whether the pane still lives.
const LOOK: Duration = Duration::from_secs(1);
/// How long the writer may take to close a run that ended (tmux runs its `pane-died` hook as
/// a process; on a loaded machine that takes a while).
const CLOSING: Duration = Duration::from_secs(5);

pub fn run(args: &LogsArgs) -> Result<ExitCode, Fail> {
    let agent = agent_name(&args.agent)?;
    let fleet = args.place.resolve()?;
    let dir = folder(&fleet.hb_dir, &fleet.socket, agent, args.log_dir.as_deref());
    let files = dir
        .map(|d| transcript::files(&d, agent))
        .unwrap_or_default();
    let tmux = fleet.tmux();
    if files.is_empty() {
        if args.follow {
            return follow::follow(&tmux, agent, args.lines);
        }
        let Some(text) = tmux.capture(agent).map_err(tmux_failed)? else {
            return Err(super::no_such_agent(agent, &fleet.socket));
        };
        return show(agent, &text, args);
    }
    // The current file is opened before the whole is read: what follows is read from it.
    let current = files
        .last()
        .filter(|p| p.ends_with(transcript::log_name(agent)));
    let open = current.and_then(|p| open(p));
    let mut bytes = Vec::new();
    for file in &files[..files.len() - usize::from(open.is_some())] {
        bytes.extend(transcript::read(file).unwrap_or_default());
    }
    let mut open = open;
    if let Some((file, _)) = open.as_mut() {
        let _ = file.read_to_end(&mut bytes);
    }
    show(agent, &bytes, args)?;
    match (args.follow, open) {
        (true, Some(open)) => follow_file(&tmux, agent, current.unwrap(), open, args.raw),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The agent's transcript folder: its launch file's, else the given or default base's for
/// `socket`; `None` when it was launched with `--no-log`, or no base can be named.
fn folder(hb_dir: &Path, socket: &str, agent: &str, given: Option<&Path>) -> Option<PathBuf> {
    if let Ok(Some(config)) = crate::config::LaunchConfig::load(hb_dir, agent) {
        return config.transcript_dir();
    }
    let base = given
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .or_else(transcript::default_base)?;
    Some(transcript::socket_dir(&base, socket))
}

/// Prints the last lines of `bytes`: plain text, raw, or JSON.
fn show(agent: &str, bytes: &[u8], args: &LogsArgs) -> Result<ExitCode, Fail> {
    if args.raw {
        let mut lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
        if args.lines > 0 && lines.len() > args.lines {
            lines.drain(..lines.len() - args.lines);
        }
        print_bytes(&lines.concat())?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = plain::plain(bytes);
    let lines = last_lines(&text, args.lines);
    let out = if args.json {
        let json = serde_json::json!({ "agent": agent, "lines": lines });
        json.to_string() + "\n"
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// A transcript file opened for reading (never through a symlink, only a private regular
/// file of ours), and its inode.
fn open(path: &Path) -> Option<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    (meta.is_file() && meta.nlink() == 1 && ours).then_some((file, meta.ino()))
}

/// Prints what is appended to the transcript at `path` from `file`'s offset on, following
/// rotations, until the pane is dead (and the writer closed its run) or gone, or a stop signal.
fn follow_file(
    tmux: &Tmux,
    agent: &str,
    path: &Path,
    (mut file, mut inode): (File, u64),
    raw: bool,
) -> Result<ExitCode, Fail> {
    let stop = Stop::new();
    let mut out = Output {
        printable: Printable::default(),
        raw,
        tail: Vec::new(),
    };
    let mut next_look = Instant::now() + LOOK;
    let mut ended: Option<(String, Instant)> = None;
    loop {
        if let Some(sig) = stop.signal() {
            return Ok(ExitCode::from(128 + sig as u8));
        }
        out.pass_on(&mut file)?;
        // Rotated (maybe more than once): the rest of the old file, the files rotated after
        // it, then the new one from its start.
        let renamed = std::fs::symlink_metadata(path).map_or(true, |m| m.ino() != inode);
        if renamed {
            if let Some(mut next) = successors(path, inode) {
                out.pass_on(&mut file)?;
                (file, inode) = next.pop().expect("the current file is last");
                for (mut done, _) in next {
                    out.pass_on(&mut done)?;
                }
                out.pass_on(&mut file)?;
                continue;
            }
        }
        if let Some((end, since)) = &ended {
            if out.closed() || since.elapsed() >= CLOSING {
                if !raw && out.printable.mid_line() {
                    print("\n")?;
                }
                eprintln!("mosaic-fleet: {end}");
                return Ok(ExitCode::SUCCESS);
            }
        } else if Instant::now() >= next_look {
            next_look = Instant::now() + LOOK;
            ended = match tmux.pane(agent).map_err(tmux_failed)? {
                Pane::Live(_) | Pane::Unknown => None,
                Pane::Dead(death) => {
                    Some(format!("agent {agent} exited with {}", death.describe()))
                }
                Pane::Gone(_) => Some(format!("the session of agent {agent} is gone")),
            }
            .map(|end| (end, Instant::now()));
        }
        std::thread::sleep(POLL);
    }
}

/// The files written after the one of `inode` (rotated since to `PATH.K`): `PATH.K-1` ...
/// `PATH.1`, then `PATH`, opened in one go and checked to be a consistent picture (no rotation
/// in between); `None` when that file is gone (dropped) or no picture holds still.
fn successors(path: &Path, inode: u64) -> Option<Vec<(File, u64)>> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let ino = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.ino());
    for _ in 0..10 {
        let mut k = 1;
        while ino(&numbered(k)).is_some_and(|i| i != inode) {
            k += 1;
        }
        ino(&numbered(k))?;
        let mut files: Vec<(File, u64)> = (1..k).rev().filter_map(|n| open(&numbered(n))).collect();
        files.extend(open(path));
        if files.len() == k as usize && ino(&numbered(k)) == Some(inode) {
            return Some(files);
        }
    }
    None
}

/// What a follower has printed: plain or raw, and the end of it, to see a closing line.
struct Output {
    printable: Printable,
    raw: bool,
    tail: Vec<u8>,
}

impl Output {
    fn pass_on(&mut self, file: &mut File) -> Result<(), Fail> {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| {
            failed(format!(
                "cannot read the transcript: {}",
                mosaic_core::why(&e)
            ))
        })?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.tail.extend_from_slice(&bytes);
        let keep = self.tail.len().saturating_sub(4096);
        self.tail.drain(..keep);
        if self.raw {
            return print_bytes(&bytes);
        }
        let mut out = Vec::new();
        self.printable.push(&bytes, &mut out);
        print_bytes(&out)
    }

    /// The last line of ours is a run's closing line.
    fn closed(&self) -> bool {
        let text = String::from_utf8_lossy(&self.tail);
        text.lines()
            .rev()
            .find(|l| l.starts_with(transcript::MARK))
            .is_some_and(|l| l.contains(" run ended") || l.contains(" pane closed"))
    }
}
