/*!
`mosaic-fleet top`: the live dashboard, the whole fleet on one screen and acted on from it.

A model, a view and an event loop (tokio-console's `state/` and `view/`):
- `model.rs`: [`Model`], the fleet as `ls` joins it ([`ls::join`]: one `list-panes -a` and
  one pass over the heartbeat directory), the selection, the filter, and keys turned into
  [`Action`]s without I/O;
- `view.rs`: draws a model with ratatui;
- here: the terminal (raw mode, alternate screen, restored on every way out), the readings
  and the actions, which call the CLI verbs' code (`attach` through [`Tmux::attach_and_wait`],
  `stop` and `restart` as `mosaic-fleet stop|restart AGENT` children, so their minutes of
  grace never freeze the screen, a prompt (`p`) as a `mosaic-fleet send AGENT` child with the
  text on its stdin, never an argument, `l` through [`Tmux::capture`]).

Live, cheaply: the heartbeat directory is watched with inotify, and a record replaced there is
re-read at once (at most every [`SCAN_GAP`]); tmux is asked for the panes once a [`TICK`]
(a pane that dies without a sidecar shows no file change), and for the selected agent's last
line when the selection moves and once a tick. Between those the loop sleeps in crossterm's
`poll` for at most [`WAKE`], to see a stop signal or a directory event without a thread.

The terminal is restored (raw mode off, alternate screen left, cursor shown) on `q`, Ctrl-C,
SIGINT, SIGTERM and SIGHUP (caught by [`crate::child::Stop`] and seen between two polls), an
error, and a panic (a hook: the release build aborts on panic, so no destructor would run).
*/

mod model;
mod view;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use mosaic_core::status::{self, Row};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use super::{failed, last_lines, ls, usage, Fail, Fleet, Where};
use crate::child::Stop;
use crate::tmux::{PaneRow, Tmux};
use model::{Action, Mode, Model};

pub const HELP: &str = "Keys: Up/Down or j/k select, Enter attaches (detach to come back), s \
    stops and r restarts the selected agent after y, p sends it a prompt (typed on the bottom \
    line, sent as `mosaic-fleet send` does, Enter sends, Esc cancels), l shows its recent \
    output, / filters by name (Enter applies, Esc clears), ? lists the keys, q or Ctrl-C \
    quits.\n\
    Environment: each option above reads the variable shown beside it; TERM as for any \
    full-screen program.\n\
    Exit codes: 0 quit with q or Ctrl-C, 1 failed at run time, 2 bad input (or no terminal), \
    128+N ended by signal N (SIGINT, SIGTERM, SIGHUP).";

/// How often tmux is asked for the panes.
pub const TICK: Duration = Duration::from_secs(1);
/// The least time between two reads of the heartbeat directory after a change there.
pub const SCAN_GAP: Duration = Duration::from_millis(250);
/// The longest sleep between two looks at the stop signals and the directory watch.
pub const WAKE: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    place: Where,
}

type Screen = Terminal<CrosstermBackend<std::io::Stdout>>;

pub fn run(args: &TopArgs) -> Result<ExitCode, Fail> {
    let fleet = args.place.resolve()?;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(usage(
            "top needs a terminal on stdin and stdout (see `mosaic-fleet ls` for a report)".into(),
        ));
    }
    // Before the screen changes: a stop signal from now on is seen by the loop.
    let stop = Stop::new();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    let mut screen = enter().map_err(|e| {
        restore();
        failed(format!(
            "cannot set up the terminal: {}",
            mosaic_core::why(&e)
        ))
    })?;
    let result = Dashboard::new(&fleet).run(&mut screen, &stop);
    restore();
    result
}

/// Raw mode, the alternate screen, no cursor.
fn enter() -> std::io::Result<Screen> {
    terminal::enable_raw_mode()?;
    crossterm::execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        crossterm::cursor::Hide
    )?;
    Terminal::new(CrosstermBackend::new(std::io::stdout()))
}

/// Whether the terminal hung up: its other end closed (an ssh connection dropped, its tmux
/// server killed), so its input is at an end for good, SIGHUP or not. crossterm's `poll` reads
/// that end of input until its timeout (with `use-dev-tty`; its default mio source read it
/// forever, a core busy), then the loop sees the SIGHUP or this.
fn hung_up() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&stdin),
        PollFlags::POLLIN,
    )];
    let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| r.intersects(gone))
}

/// The terminal as it was: safe to call twice, and when the terminal is gone (SIGHUP).
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// The event loop's state: the model, and the readings it is made of.
struct Dashboard<'a> {
    fleet: &'a Fleet,
    tmux: Tmux<'a>,
    model: Model,
    watch: Watch,
    panes: Vec<PaneRow>,
    rows: Vec<Row>,
    last_tmux: Option<Instant>,
    last_scan: Option<Instant>,
    /// A change in the heartbeat directory not read yet.
    dirty: bool,
    /// Whose last line the preview shows.
    previewed: Option<String>,
    /// `stop` and `restart` children still running: their agent and their last word.
    jobs: Vec<(String, mpsc::Receiver<String>)>,
}

impl<'a> Dashboard<'a> {
    fn new(fleet: &'a Fleet) -> Self {
        Dashboard {
            fleet,
            tmux: fleet.tmux(),
            model: Model::new(),
            watch: Watch::new(fleet.hb_dir.clone()),
            panes: Vec::new(),
            rows: Vec::new(),
            last_tmux: None,
            last_scan: None,
            dirty: true,
            previewed: None,
            jobs: Vec::new(),
        }
    }

    fn run(&mut self, screen: &mut Screen, stop: &Stop) -> Result<ExitCode, Fail> {
        let draw_failed =
            |e: std::io::Error| failed(format!("cannot draw: {}", mosaic_core::why(&e)));
        let mut drawn_at: Option<Instant> = None;
        loop {
            if let Some(sig) = stop.signal() {
                return Ok(ExitCode::from(128 + sig as u8));
            }
            if hung_up() {
                return Ok(ExitCode::from(128 + nix::sys::signal::Signal::SIGHUP as u8));
            }
            let mut changed = self.read();
            changed |= self.finished_jobs();
            // Ages and uptimes move on: a redraw a tick even when nothing was read.
            if changed || drawn_at.is_none_or(|t| t.elapsed() >= TICK) {
                let now = chrono::Utc::now().timestamp();
                screen
                    .draw(|frame| view::draw(frame, self.fleet, &self.model, now))
                    .map_err(draw_failed)?;
                drawn_at = Some(Instant::now());
            }
            if !event::poll(WAKE).map_err(draw_failed)? {
                continue;
            }
            let action = match event::read().map_err(draw_failed)? {
                Event::Key(key) if key.kind != KeyEventKind::Release => self.model.key(key),
                // Resizes and the rest: a redraw.
                _ => Action::None,
            };
            drawn_at = None;
            match action {
                Action::None => {}
                Action::Quit => return Ok(ExitCode::SUCCESS),
                Action::Attach(agent) => self.attach(screen, &agent)?,
                Action::Run(verb, agent) => self.start_job(verb.as_str(), agent, None),
                Action::Send(agent, text) => self.start_job("send", agent, Some(text)),
                Action::Log(agent) => self.log(&agent),
            }
        }
    }

    /// Reads what is due: the panes once a tick, the records after a change (or a tick), the
    /// selected agent's last line. Whether the model changed.
    fn read(&mut self) -> bool {
        if self.watch.changed() {
            self.dirty = true;
        }
        let now = Instant::now();
        let tmux_due = self.last_tmux.is_none_or(|t| now >= t + TICK);
        let scan_due =
            tmux_due || (self.dirty && self.last_scan.is_none_or(|t| now >= t + SCAN_GAP));
        if tmux_due {
            self.last_tmux = Some(now);
            self.watch.arm();
            match self.tmux.list_panes() {
                Ok(panes) => self.panes = panes,
                Err(f) => self.model.message = Some(super::tmux_failed(f).message),
            }
        }
        if scan_due {
            self.last_scan = Some(now);
            self.dirty = false;
            self.rows = records(self.fleet).unwrap_or_else(|f| {
                self.model.message = Some(f.message);
                Vec::new()
            });
            self.model
                .set_agents(ls::join(self.panes.clone(), self.rows.clone()));
        }
        let selected = self.model.selected().map(|a| a.name.clone());
        let preview_due = tmux_due || selected != self.previewed;
        if preview_due {
            self.model.preview = selected.as_deref().and_then(|a| self.tmux.last_words(a));
            self.model.worktree = selected
                .as_deref()
                .and_then(|a| ls::worktree_of(&self.fleet.hb_dir, a));
            self.previewed = selected;
        }
        scan_due || preview_due
    }

    fn attach(&mut self, screen: &mut Screen, agent: &str) -> Result<(), Fail> {
        restore();
        let result = self.tmux.attach_and_wait(agent);
        *screen = enter().map_err(|e| {
            failed(format!(
                "cannot set up the terminal again: {}",
                mosaic_core::why(&e)
            ))
        })?;
        self.model.message = result.err().map(|why| format!("attach {agent}: {why}"));
        Ok(())
    }

    fn log(&mut self, agent: &str) {
        match self.tmux.capture(agent) {
            Ok(Some(text)) => {
                let text = String::from_utf8_lossy(&text);
                let lines = last_lines(&text, 200)
                    .into_iter()
                    .map(String::from)
                    .collect();
                self.model.mode = Mode::Log(agent.to_string(), lines);
            }
            Ok(None) => self.model.message = Some(format!("{agent}: no session, no output")),
            Err(f) => self.model.message = Some(super::tmux_failed(f).message),
        }
    }

    /// `mosaic-fleet stop|restart|send AGENT` on this fleet, as a child (`send` reads `text`
    /// on its stdin); its last line comes back through a channel when it ends.
    fn start_job(&mut self, verb: &'static str, agent: String, text: Option<String>) {
        match spawn_verb(self.fleet, verb, &agent, text) {
            Ok(rx) => {
                self.model.message = Some(format!("{verb} {agent}: ..."));
                self.jobs.push((agent, rx));
            }
            Err(why) => self.model.message = Some(format!("{verb} {agent}: {why}")),
        }
    }

    fn finished_jobs(&mut self) -> bool {
        let mut any = false;
        self.jobs.retain(|(_, rx)| match rx.try_recv() {
            Ok(said) => {
                self.model.message = Some(said);
                any = true;
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
            Err(mpsc::TryRecvError::Disconnected) => false,
        });
        any
    }
}

/// The heartbeat records, as `ls` reads them; a missing directory is an empty one.
fn records(fleet: &Fleet) -> Result<Vec<Row>, Fail> {
    if !fleet.hb_dir.exists() {
        return Ok(Vec::new());
    }
    status::report(&fleet.hb_dir, status::classify::STALE_AFTER).map_err(|f| failed(f.message))
}

/// The CLI verb as a child process of this very binary, `text` on its stdin, which reports
/// through the channel when it ends: its last line of output, or of complaint.
fn spawn_verb(
    fleet: &Fleet,
    verb: &'static str,
    agent: &str,
    text: Option<String>,
) -> Result<mpsc::Receiver<String>, String> {
    let exe = std::env::current_exe().map_err(|e| mosaic_core::why(&e))?;
    let mut child = Command::new(exe)
        .arg(verb)
        .arg(agent)
        .arg("--socket")
        .arg(&fleet.socket)
        .arg("--hb-dir")
        .arg(&fleet.hb_dir)
        .arg("--tmux-timeout")
        .arg(format!("{}", fleet.timeout.as_secs_f64()))
        .stdin(if text.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run mosaic-fleet: {}", mosaic_core::why(&e)))?;
    let (tx, rx) = mpsc::channel();
    let agent = agent.to_string();
    let stdin = child.stdin.take();
    std::thread::spawn(move || {
        if let (Some(mut stdin), Some(text)) = (stdin, text) {
            // A child gone early says why on stderr; a broken pipe here adds nothing.
            let _ = std::io::Write::write_all(&mut stdin, text.as_bytes());
        }
        let status = child.wait();
        // A restart's sidecar may hold the pipes for days: read what is there, never to EOF.
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let said = match status {
            Ok(s) if s.success() => last_line(&out),
            _ => last_line(&err).or_else(|| last_line(&out)),
        };
        let _ = tx.send(said.unwrap_or_else(|| format!("{verb} {agent}: done")));
    });
    Ok(rx)
}

/// What a pipe holds now, without waiting for more.
fn drain(pipe: Option<impl Read + std::os::fd::AsFd>) -> String {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if fcntl(pipe.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_ok() {
        // Stops at EAGAIN, keeping what it read.
        let _ = pipe.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(String::from)
}

/// An inotify watch on the heartbeat directory: records are replaced by rename, removed by
/// `prune`. Armed again once a tick while the directory is missing (no agent has written yet).
struct Watch {
    dir: PathBuf,
    inotify: Option<Inotify>,
}

impl Watch {
    fn new(dir: PathBuf) -> Watch {
        let mut watch = Watch { dir, inotify: None };
        watch.arm();
        watch
    }

    fn arm(&mut self) {
        if self.inotify.is_some() {
            return;
        }
        let Ok(inotify) = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) else {
            return;
        };
        let mask = AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF;
        if inotify.add_watch(&self.dir, mask).is_ok() {
            self.inotify = Some(inotify);
        }
    }

    /// Whether the directory changed since the last call (the events are drained). A watch
    /// whose directory went is dropped, to be armed again.
    fn changed(&mut self) -> bool {
        let Some(inotify) = &self.inotify else {
            return false;
        };
        let mut any = false;
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
            if events.iter().any(|e| {
                e.mask
                    .intersects(AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_DELETE_SELF)
            }) {
                self.inotify = None;
                break;
            }
        }
        any
    }
}
