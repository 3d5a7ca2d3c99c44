/*!
`mosaic-hb`: a heartbeat sidecar you can trust. The conventions it shares with its readers
(the record, the layout, the lock, the protocols, the status model) are `mosaic-core`'s.

# Theory of operation

A sidecar watches one process (any PID; it needs neither tmux nor the launcher) and keeps a
small heartbeat file current: every interval it replaces the file with a record that says
`status=ok`, and the moment the process is gone it writes `status=exited` and leaves. A stop
signal writes `status=stopped`. A record is therefore either fresh and true, or stale, and a
stale `ts` means the sidecar itself is gone.

Start-up does everything that can fail *before* daemonizing, so mistakes reach the caller's
terminal with a non-zero exit and nothing is left running:

1. validate the arguments ([`validate`]); prepare the directory ([`dirs`]);
2. open the directory and prove a file can be created there ([`hbfile`]);
   with `--pid -`, only now read the target from stdin: the launcher starts the sidecar while
   tmux is still creating the pane, and closes the pipe instead if no sidecar is wanted;
3. take the one-writer lock ([`lock`]);
4. attach to the target: record its start time (or check the one given), open its pidfd
   ([`target`]);
5. go into the background: with `--pid -`, where the launcher spawned us through `setsid`,
   without a fork (cwd `/`, stdin on /dev/null; once the first record is written, `running` on
   stdout and both stdout and stderr let go: [`handover`]); otherwise a double fork through
   `daemonix`. Then block the stop signals into a signalfd ([`signals`]: each becomes a
   [`signals::Stop`] as it is read) and run the event loop ([`watch`]), a single `ppoll`
   ([`wait`]) on the pidfd and the signalfd with the time to the next beat as its timeout. A
   beat is seven system calls and no allocation: `ppoll`, `kill(pid, 0)`, a zero-timeout
   `poll` of the pidfd, then `openat`, `write`, `close` and `renameat` of the record
   ([`writer`]). A `ppoll` error other than `EINTR` ends the loop with a
   logged error (the record then goes stale) rather than spin on it.

A target with a terminal also gets an activity watch ([`activity`]), set up before daemonizing
with the rest: an inotify descriptor on the terminal and on a bell mark, the `ppoll`'s third
descriptor. It adds nothing to a beat; it wakes the loop at most about once a second, and a
change of activity (busy, idle, waiting) is written as an extra record at once.

With `--reap SECS` (the launcher passes 10), every death of the target is followed by a
teardown of what it left in its session and process group ([`teardown`]): SIGTERM, then
SIGKILL after the grace. It runs inside the same loop, spawns nothing (a walk of `/proc`,
signals through pidfds), and waits only in the one `ppoll`, on the signalfd, 20 ms at a time:
a stop signal cuts the grace short, and the phase ends within the grace plus 2 s. The death is
on record first; the count follows as `reaped=` in a second final record (under a restart
policy, before the restart: a new run never starts beside the last one's leftovers).

Under a restart policy (`--restart on-failure|always`, opt-in), the target's death does not
end the loop ([`restart`], policy and arithmetic in [`supervise`]). The sidecar then spawns its
one kind of child, a short-lived *respawn helper* (`mosaic-respawn --socket S --pid P
AGENT`, next to its own executable), with its stdin and stdout as pipes: the helper asks tmux
how the pane died and prints `dead status N` (or `signal N`); with `--reap`, what the dead run
left in its session has been ended first. The policy says leave
(`status=exited`, with `exit_status=`/`exit_signal=`), give up (`status=failed`), or restart
after a delay: the record says `status=restarting` and `restart_at=`, is rewritten every
beat, and the delay is the `ppoll`'s timeout. When it is over and the fleet-wide guard
(`.restart-guard` in the heartbeat directory) grants a slot, the sidecar writes `go`; the
helper respawns the pane (same command, same directory) and prints its new pid and start
time, the sidecar attaches to it (new pidfd) with `restarts=` one higher and beats on. A stop
signal at any point closes the helper's stdin instead, so nothing is restarted, and writes
`status=stopped`. Why this is still safe: the child is started only after the target died and
only under a policy the operator asked for; it inherits no descriptor of the sidecar (all are
close-on-exec) and no blocked signal; the sidecar never waits for it (its stdout is polled
non-blocking in the one `ppoll`, it is reaped with `WNOHANG`); and it cannot restart anything
without the sidecar's `go`.

With `--on-event CMD` ([`hooks`]), each event (the first record of a run, a change of
activity, a restart decided, the final record) also runs `/bin/sh -c CMD`, the event's values
in its environment only: one hook at a time, spawned from the loop's wait point, its pidfd in
the same `ppoll`, reaped with `WNOHANG`, its process group killed at `--hook-timeout`; later
events queue (16), further ones are dropped; failures and drops are counted in the record
(`hook_failures=`, `hook_dropped=`). The final event's hook runs after the final record and
after the lock is let go, so a stop (which waits for the sidecar to leave or let go) and a
new sidecar are never kept waiting; its outcome is in the hooks' log only.

The modules form a tree, no circle: [`cli`] starts up and hands over to [`watch`], the loop;
under it [`restart`], then the loop's parts both use: [`wait`], [`signals`], and [`writer`],
the one keeper of the record's keys, told what happened (a beat, a death, a restart scheduled
or done) rather than edited.

`mosaic-hb status` ([`status`]) reads a directory of heartbeat files ([`record`]) and reports the
fleet's state for people and for monitoring.

# Invariants

- The heartbeat file is only ever replaced by rename, never written in place.
- No path in the heartbeat directory is opened in a way that follows a symlink.
- The sidecar never runs a second thread, and spawns no process but the respawn helper of a
  restart, one per death, only under a restart policy ([`restart`]), and the event hook, one
  at a time, only on an event, only with `--on-event` ([`hooks`]).
- A stopped sidecar restarts nothing.
- One sidecar per heartbeat file: the lock is held for the sidecar's whole life.
- `status=ok` is written only after a check that the target is still the process we attached to.

[`validate`]: mosaic_core::validate
[`dirs`]: mosaic_core::dirs
[`lock`]: mosaic_core::lock
[`handover`]: mosaic_core::handover
[`teardown`]: mosaic_core::teardown
[`supervise`]: mosaic_core::supervise
[`status`]: mosaic_core::status
[`record`]: mosaic_core::record
*/

mod activity;
mod cli;
mod hbfile;
mod hooks;
#[cfg(test)]
mod proptests;
mod restart;
mod signals;
mod target;
mod wait;
mod watch;
mod writer;

fn main() -> std::process::ExitCode {
    cli::main()
}

/// Writes one timestamped diagnostic line to stderr (the `--log` file once daemonized).
fn log(message: std::fmt::Arguments) {
    use std::io::Write;
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let _ = writeln!(
        std::io::stderr(),
        "{ts} mosaic-hb[{}]: {message}",
        std::process::id()
    );
}
