/*!
The sidecar's side of a restart: after its agent died, decide ([`mosaic_core::supervise`]), wait,
and have the dead pane started again, all from the one `ppoll` of the event loop.

The sidecar talks to tmux only through one short-lived child per death, the *respawn
helper* (`mosaic-respawn --socket SOCKET --pid PID AGENT`, found next to the sidecar's own
executable; tmux itself is only ever run by the launcher crate's `tmux.rs`):

```text
sidecar                                   helper (its stdin and stdout are pipes)
  target's pidfd readable: died
  spawn helper  ───────────────────────>  asks tmux how the pane died
                <── dead status 1 ──────
  policy: restart in 2 s?  no ──> close its stdin, write exited / failed, end
     yes: write restarting, restart_at=   (waits on stdin)
  ppoll(signalfd, helper stdout; timeout = min(next beat, due))
     beat: rewrite restarting
     due: fleet-wide guard slot? wait more : write `go`
                ─────── go ────────────>  respawn-pane -t =AGENT: (same command, same dir)
                <── started PID TICKS ──  exits
  attach to PID (new pidfd), restarts+1, back to beating
```

A stop signal at any point closes the helper's stdin (it leaves without restarting anything
if it has not been told `go`) and ends the sidecar with `status=stopped`: a stopped sidecar
never restarts anything. The helper is never waited for: its stdout is non-blocking and polled,
and it is reaped with `WNOHANG` once it has closed it, at the latest at the next beat.
*/

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::signals::{Signals, Stop};
use crate::target::Target;
use crate::wait::{wait, Event};
use crate::writer::Writer;
use mosaic_core::death::Death;
use mosaic_core::record::Status;
use mosaic_core::supervise::{self, Answer, Backoff, Slot, Verdict};

/// How long the helper may take to say how the pane died (it waits for tmux to reap the pane,
/// and tmux may be slow) or to restart it (it first ends what is left of the old process tree,
/// which may take a teardown's grace, then asks tmux).
const PATIENCE: Duration = Duration::from_secs(30);

/// How soon to try the fleet-wide guard again when another sidecar holds it this instant.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// The name of the helper's executable, looked for next to the sidecar's own.
pub const HELPER: &str = "mosaic-respawn";

/// Restarts one agent under its policy.
pub struct Supervisor {
    backoff: Backoff,
    helper: PathBuf,
    socket: String,
    agent: String,
    use_pidfd: bool,
    /// The backoff's clock starts here.
    origin: Instant,
    /// When the current run began (attach, or the last restart).
    run_started: Instant,
    restarts: u32,
    /// Helpers that closed their stdout and are not reaped yet.
    finished: Vec<Child>,
    /// How long the run that just ended lasted ([`Supervisor::died`]).
    ran: Option<Duration>,
    /// How it ended, read from the zombie ([`Supervisor::died`]).
    zombie: Option<Death>,
    /// The restart the death's first record announced ([`Supervisor::schedule`]): its delay,
    /// counted from then.
    scheduled: Option<(Duration, Instant)>,
}

/// How a death was dealt with.
pub enum Outcome {
    /// The agent runs again: watch this target.
    Restarted(Target),
    /// The sidecar is done: this final status was recorded (or not: the bool says).
    Final(Status, bool, Ending),
}

/// Why the sidecar ends after a death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The policy does not restart after this death, or there was nothing to restart.
    Left,
    /// Too many unstable deaths.
    GaveUp,
    /// A stop signal arrived.
    Stopped(Stop),
    /// Waiting itself failed: no final record (the last one goes stale).
    WaitFailed(nix::errno::Errno),
}

impl Supervisor {
    /// Finds the helper (`helper` overrides the one next to our executable) and checks the
    /// limits: all before daemonizing, so a mistake reaches the caller.
    pub fn new(
        backoff: Backoff,
        helper: Option<&Path>,
        socket: &str,
        agent: &str,
        use_pidfd: bool,
    ) -> Result<Supervisor, String> {
        backoff.limits().check()?;
        let helper = match helper {
            Some(path) => path.to_path_buf(),
            None => beside_us(HELPER).ok_or_else(|| {
                format!("cannot find {HELPER} next to mosaic-hb (it restarts the agent's pane)")
            })?,
        };
        let now = Instant::now();
        Ok(Supervisor {
            backoff,
            helper,
            socket: socket.to_string(),
            agent: agent.to_string(),
            use_pidfd,
            origin: now,
            run_started: now,
            restarts: 0,
            finished: Vec::new(),
            ran: None,
            zombie: None,
            scheduled: None,
        })
    }

    /// Notes a death the moment it is seen: how long the run lasted (a teardown may follow),
    /// and how the process ended if it is still a zombie (tmux, its parent, sometimes has no
    /// status to give afterwards).
    pub fn died(&mut self, target: &Target) {
        self.ran = Some(self.run_started.elapsed());
        self.scheduled = None;
        self.zombie = mosaic_core::proc::zombie_status(target.pid()).map(Death::from_wait_status);
    }

    /// The delay a restart after the death just noted ([`Supervisor::died`]) will get.
    pub fn next_delay(&self) -> Duration {
        let ran = self.ran.unwrap_or_else(|| self.run_started.elapsed());
        self.backoff.next_delay(ran)
    }

    /// Puts the death just noted on record at once with the restart its backoff will give:
    /// that restart is then due when this record says (unless the verdict, after the teardown
    /// and tmux's answer, is another), not a teardown later.
    pub fn schedule(&mut self, writer: &mut Writer) {
        let delay = self.next_delay();
        self.scheduled = Some((delay, Instant::now()));
        writer.schedule_restart(delay);
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Reaps helpers that have finished (no system call when there are none).
    pub fn reap(&mut self) {
        self.finished
            .retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
    }

    /// The target died: decide, wait, restart. Returns the new target, or how the sidecar ends
    /// (its final record written).
    pub fn after_death(
        &mut self,
        writer: &mut Writer,
        signals: &Signals,
        interval: Duration,
    ) -> Outcome {
        self.reap();
        let mut ran = self
            .ran
            .take()
            .unwrap_or_else(|| self.run_started.elapsed());
        loop {
            let died = (writer.pid(), writer.started());
            let mut helper = match Helper::spawn(&self.helper, &self.socket, &self.agent, died) {
                Ok(helper) => helper,
                Err(e) => {
                    crate::log(format_args!(
                        "cannot run {}: {}: not restarting",
                        self.helper.display(),
                        mosaic_core::why(&e)
                    ));
                    return self.finish(writer, None, Status::Exited, Ending::Left);
                }
            };
            let step = self.drive(&mut helper, writer, signals, interval, ran);
            self.finished.extend(helper.close());
            match step {
                Step::Done(outcome) => return outcome,
                // The new process died before we could attach: a death after no run at all.
                Step::DiedAtOnce => {
                    ran = Duration::ZERO;
                    self.zombie = None;
                }
            }
        }
    }

    fn drive(
        &mut self,
        helper: &mut Helper,
        writer: &mut Writer,
        signals: &Signals,
        interval: Duration,
        ran: Duration,
    ) -> Step {
        let mut phase = Phase::Asking(Instant::now() + PATIENCE);
        let mut next_beat = Instant::now() + interval;
        loop {
            let now = Instant::now();
            let until = match phase {
                Phase::Asking(deadline) | Phase::Starting(deadline) => deadline,
                Phase::Waiting(due) => due.min(next_beat),
            };
            let event = if until <= now {
                Event::Timeout
            } else {
                wait(
                    None,
                    signals,
                    helper.stdout_fd(),
                    writer.hooks(),
                    until - now,
                )
            };
            match event {
                Event::Interrupted => continue,
                Event::Failed(e) => {
                    return Step::Done(Outcome::Final(Status::Exited, false, Ending::WaitFailed(e)))
                }
                Event::Stop(stop) => {
                    // Nothing is due any more: a stopped sidecar restarts nothing.
                    let (status, ok) = (Status::Stopped, writer.end(Status::Stopped));
                    return Step::Done(Outcome::Final(status, ok, Ending::Stopped(stop)));
                }
                Event::TargetExited => {}
                // The third descriptor, here the helper's stdout.
                Event::Readable => {
                    let answers = helper.read();
                    for answer in answers.lines {
                        if let Some(step) = self.on_answer(answer, &mut phase, writer, ran) {
                            return step;
                        }
                    }
                    if answers.closed {
                        crate::log(format_args!(
                            "the respawn helper ended without {}: not restarting",
                            phase.awaiting()
                        ));
                        return Step::Done(self.finish(writer, None, Status::Exited, Ending::Left));
                    }
                }
                Event::Timeout => match phase {
                    Phase::Asking(_) | Phase::Starting(_) => {
                        crate::log(format_args!(
                            "the respawn helper gave no {} within {}s: not restarting",
                            phase.awaiting(),
                            PATIENCE.as_secs()
                        ));
                        return Step::Done(self.finish(writer, None, Status::Exited, Ending::Left));
                    }
                    Phase::Waiting(due) => {
                        let now = Instant::now();
                        if now >= due {
                            phase = match self.go_if_allowed(helper, writer, now) {
                                Ok(phase) => phase,
                                Err(step) => return step,
                            };
                            if let Phase::Starting(_) = phase {
                                continue;
                            }
                        }
                        if now >= next_beat {
                            writer.write(Status::Restarting);
                            next_beat += interval;
                            if next_beat <= now {
                                next_beat = now + interval;
                            }
                        }
                    }
                },
            }
        }
    }

    /// The restart is due: says `go` if the fleet-wide guard grants a slot (the next phase
    /// is then [`Phase::Starting`]), else waits more (`restart_at=` moves, unless the guard is
    /// only busy this instant).
    fn go_if_allowed(
        &mut self,
        helper: &mut Helper,
        writer: &mut Writer,
        now: Instant,
    ) -> Result<Phase, Step> {
        if let Err(wait) = self.take_slot(writer) {
            if wait > BUSY_RETRY {
                writer.schedule_restart(wait);
            }
            return Ok(Phase::Waiting(now + wait));
        }
        if let Err(e) = helper.go() {
            crate::log(format_args!(
                "cannot tell the respawn helper to go: {}",
                mosaic_core::why(&e)
            ));
            return Err(Step::Done(self.finish(
                writer,
                None,
                Status::Exited,
                Ending::Left,
            )));
        }
        Ok(Phase::Starting(now + PATIENCE))
    }

    fn on_answer(
        &mut self,
        answer: Answer,
        phase: &mut Phase,
        writer: &mut Writer,
        ran: Duration,
    ) -> Option<Step> {
        match (*phase, answer) {
            (Phase::Asking(_), Answer::Dead(death)) => {
                // tmux's word first; what the zombie said when tmux has none.
                let death = match (death, self.zombie.take()) {
                    (Death::Unknown, Some(seen)) => seen,
                    (death, _) => death,
                };
                let now = Instant::now();
                let verdict =
                    self.backoff
                        .on_end(supervise::End::Died(death), ran, now - self.origin);
                match verdict {
                    Verdict::Leave => Some(Step::Done(self.finish(
                        writer,
                        Some(death),
                        Status::Exited,
                        Ending::Left,
                    ))),
                    Verdict::GiveUp => {
                        crate::log(format_args!(
                            "agent died ({}) {} times within {}s: giving up",
                            death.describe(),
                            self.backoff.limits().burst,
                            self.backoff.limits().window.as_secs_f64()
                        ));
                        Some(Step::Done(self.finish(
                            writer,
                            Some(death),
                            Status::Failed,
                            Ending::GaveUp,
                        )))
                    }
                    Verdict::Restart(delay) => {
                        // Due when the death's first record said, if the delay is the same.
                        let from = self.scheduled.take().filter(|&(d, _)| d == delay);
                        writer.will_restart(death, from.is_none().then_some(delay));
                        *phase = Phase::Waiting(from.map_or(now, |(_, at)| at) + delay);
                        None
                    }
                }
            }
            // Someone else started it again (a launcher healing a dead pane): watch that.
            (Phase::Asking(_), Answer::Live(pid, started)) => {
                Some(self.attach(pid, started, writer, false))
            }
            (Phase::Starting(_), Answer::Started(pid, started)) => {
                Some(self.attach(pid, started, writer, true))
            }
            (Phase::Starting(_), Answer::Live(pid, started)) => {
                Some(self.attach(pid, started, writer, false))
            }
            (_, Answer::Gone) => {
                crate::log(format_args!("agent's session is gone: nothing to restart"));
                Some(Step::Done(self.finish(
                    writer,
                    None,
                    Status::Exited,
                    Ending::Left,
                )))
            }
            (_, answer) => {
                crate::log(format_args!(
                    "unexpected answer from the respawn helper while awaiting {}: {}",
                    phase.awaiting(),
                    answer.line().trim_end()
                ));
                Some(Step::Done(self.finish(
                    writer,
                    None,
                    Status::Exited,
                    Ending::Left,
                )))
            }
        }
    }

    /// Watches the restarted pane.
    fn attach(&mut self, pid: i32, started: Option<u64>, writer: &mut Writer, ours: bool) -> Step {
        if ours {
            self.restarts += 1;
        }
        self.run_started = Instant::now();
        match Target::attach(pid, self.use_pidfd, started) {
            Ok(target) => {
                writer.restarted(target.pid(), target.started(), self.restarts);
                crate::log(format_args!(
                    "watching pid {pid} (restart {})",
                    self.restarts
                ));
                Step::Done(Outcome::Restarted(target))
            }
            Err((gone, started)) => {
                writer.restarted(pid, started, self.restarts);
                crate::log(format_args!("restarted pid {pid} {}", gone.describe()));
                Step::DiedAtOnce
            }
        }
    }

    /// The fleet-wide guard: `Ok` to go ahead now, else how long to wait. A guard that cannot
    /// be used does not keep the agent down (it is logged).
    fn take_slot(&self, writer: &Writer) -> Result<(), Duration> {
        let period = self.backoff.limits().guard;
        if period.is_zero() {
            return Ok(());
        }
        match supervise::take_slot(writer.dir(), period, &self.agent, supervise::boot_clock) {
            Ok(Slot::Taken) => Ok(()),
            Ok(Slot::Wait(wait)) => Err(wait),
            Ok(Slot::Busy) => Err(BUSY_RETRY),
            Err(e) => {
                crate::log(format_args!(
                    "cannot use the restart guard: {}: restarting anyway",
                    mosaic_core::why(&e)
                ));
                Ok(())
            }
        }
    }

    fn finish(
        &mut self,
        writer: &mut Writer,
        death: Option<Death>,
        status: Status,
        ending: Ending,
    ) -> Outcome {
        if let Some(death) = death {
            writer.record_death(death);
        }
        let ok = writer.end(status);
        Outcome::Final(status, ok, ending)
    }
}

enum Step {
    Done(Outcome),
    DiedAtOnce,
}

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for the helper to say how the pane died, until then.
    Asking(Instant),
    /// The restart is due then.
    Waiting(Instant),
    /// Told `go`; waiting for the new pid until then.
    Starting(Instant),
}

impl Phase {
    fn awaiting(self) -> &'static str {
        match self {
            Phase::Asking(_) => "the pane's exit status",
            Phase::Waiting(_) => "the restart",
            Phase::Starting(_) => "the new pane's pid",
        }
    }
}

/// The respawn helper: a child with piped stdin and non-blocking stdout.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    buf: Vec<u8>,
}

struct Answers {
    lines: Vec<Answer>,
    /// The helper closed its stdout.
    closed: bool,
}

impl Helper {
    /// `BIN --socket SOCKET --pid PID [--started TICKS] -- AGENT`, where PID (started
    /// at TICKS) is the pane process that died: the helper ends what is left of its tree.
    fn spawn(
        bin: &Path,
        socket: &str,
        agent: &str,
        (pid, started): (i32, Option<u64>),
    ) -> io::Result<Helper> {
        let mut cmd = Command::new(bin);
        cmd.args(["--socket", socket, "--pid", &pid.to_string()]);
        if let Some(started) = started {
            cmd.args(["--started", &started.to_string()]);
        }
        let mut child = cmd
            .args(["--", agent])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        nix::fcntl::fcntl(
            &stdout,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        Ok(Helper {
            stdin: child.stdin.take(),
            child,
            stdout: Some(stdout),
            buf: Vec::with_capacity(64),
        })
    }

    fn stdout_fd(&self) -> Option<BorrowedFd<'_>> {
        self.stdout.as_ref().map(|stdout| stdout.as_fd())
    }

    fn go(&mut self) -> io::Result<()> {
        match &mut self.stdin {
            Some(stdin) => stdin.write_all(supervise::GO),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Reads what is there: complete lines (a malformed one is logged and skipped), and
    /// whether the helper closed its end.
    fn read(&mut self) -> Answers {
        let mut answers = Answers {
            lines: Vec::new(),
            closed: false,
        };
        let Some(stdout) = &mut self.stdout else {
            answers.closed = true;
            return answers;
        };
        let mut chunk = [0u8; 256];
        loop {
            match stdout.read(&mut chunk) {
                Ok(0) => {
                    answers.closed = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    answers.closed = true;
                    break;
                }
            }
            // A helper that floods us is cut off rather than buffered.
            if self.buf.len() > 4096 {
                answers.closed = true;
                break;
            }
        }
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            match Answer::parse(&line) {
                Ok(answer) => answers.lines.push(answer),
                Err(why) => crate::log(format_args!("{why}")),
            }
        }
        if answers.closed {
            self.stdout = None;
        }
        answers
    }

    /// Closes both pipes (a helper not yet told `go` leaves without restarting) and returns
    /// the child if it still has to be reaped.
    fn close(mut self) -> Option<Child> {
        drop(self.stdin.take());
        drop(self.stdout.take());
        match self.child.try_wait() {
            Ok(Some(_)) | Err(_) => None,
            Ok(None) => Some(self.child),
        }
    }
}

fn beside_us(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(name);
    let meta = std::fs::metadata(&candidate).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
}
