/*!
What the bench's measurements say: the rows of the results table, the targets with whether
each is met, and the method, a paragraph per measurement ([`super::report`] renders them).
*/

use super::fleet::{self, Kind};
use super::report::{self, Row, Target, Values};
use super::{Results, Sizes, PSS_SAMPLES};
use crate::procfs;

fn both(what: String, v: &[Vec<f64>; 2]) -> Row {
    Row {
        what,
        ours: Values::Samples(v[0].clone()),
        baseline: Values::Samples(v[1].clone()),
        compare: true,
    }
}

/// The median of `samples` over the bare `tmux new-session`'s.
fn over_bare(r: &Results, samples: &[f64]) -> Option<f64> {
    let ours = Values::Samples(samples.to_vec()).median()?;
    Some(ours / Values::Samples(r.bare[0].clone()).median()?)
}

/// What any launcher costs over the bare `tmux new-session` before it does anything: the bare
/// new-session plus a process that does nothing, over the bare new-session (medians).
fn floor(r: &Results) -> Option<f64> {
    let bare = Values::Samples(r.bare[0].clone()).median()?;
    Some((bare + Values::Samples(r.bare[2].clone()).median()?) / bare)
}

/// The scaled launch's median over the warm one's, for `kind`.
fn scaling(r: &Results, kind: Kind) -> Option<f64> {
    let i = kind as usize;
    let scaled = Values::Samples(r.scaled[i].clone()).median()?;
    Some(scaled / Values::Samples(r.warm[i].clone()).median()?)
}

fn cpu_row(fs: &str, v: &[Vec<f64>; 2]) -> Row {
    both(
        format!("Sidecar CPU per beat, 10 ms interval, heartbeat on {fs} (µs)"),
        v,
    )
}

fn cpu_printing_row(r: &Results) -> Row {
    both(
        format!(
            "Sidecar CPU per beat, 10 ms interval, agent printing every 10 ms, heartbeat on {} (µs)",
            r.fs
        ),
        &r.cpu_printing,
    )
}

fn wakeups_row(r: &Results) -> Row {
    Row {
        what: "Sidecar wake-ups per second, 30 s interval, agent printing every 10 ms".into(),
        ours: Values::Samples(r.wakeups[0].clone()),
        baseline: Values::Samples(r.wakeups[1].clone()),
        compare: false,
    }
}

fn death_row(r: &Results, s: &Sizes) -> Row {
    both(
        format!(
            "Death to status, 30 s interval (ms; gives up at {} s)",
            s.death_give_up.as_secs()
        ),
        &r.death,
    )
}

pub(super) fn rows(r: &Results, s: &Sizes) -> Vec<Row> {
    let ratio = |kind| scaling(r, kind).map_or(Values::Absent, |x| Values::Samples(vec![x]));
    let mut rows = vec![
        both("Launch, warm server (ms)".into(), &r.warm),
        both(
            format!("Launch, {} agents running (ms)", s.scale),
            &r.scaled,
        ),
        Row {
            what: "Bare `tmux new-session -d`, warm server (ms)".into(),
            ours: Values::Samples(r.bare[0].clone()),
            baseline: Values::Absent,
            compare: false,
        },
        Row {
            what: "Launch without a sidecar (`--no-heartbeat`), warm server (ms)".into(),
            ours: Values::Samples(r.bare[1].clone()),
            baseline: Values::Absent,
            compare: false,
        },
        Row {
            what: "A process of ours that does nothing (`mosaic-launcher --version`), spawn to exit (ms)"
                .into(),
            ours: Values::Samples(r.bare[2].clone()),
            baseline: Values::Absent,
            compare: false,
        },
        Row {
            what: "Floor: (bare `tmux new-session` + that process) ÷ bare (ratio)".into(),
            ours: floor(r).map_or(Values::Absent, |x| Values::Samples(vec![x])),
            baseline: Values::Absent,
            compare: false,
        },
        Row {
            what: "Launch ÷ bare `tmux new-session` (ratio)".into(),
            ours: over_bare(r, &r.warm[0]).map_or(Values::Absent, |x| Values::Samples(vec![x])),
            baseline: Values::Absent,
            compare: false,
        },
        Row {
            what: format!("Launch with {} running ÷ warm (ratio)", s.scale),
            ours: ratio(Kind::Ours),
            baseline: ratio(Kind::Baseline),
            compare: false,
        },
    ];
    rows.extend(r.cpu.iter().map(|(fs, v)| cpu_row(fs, v)));
    rows.push(cpu_printing_row(r));
    rows.push(wakeups_row(r));
    rows.push(both(format!("PSS of {} sidecars (MiB)", s.pss), &r.pss));
    rows.push(Row {
        what: "Size of `mosaic-hb`, the static sidecar (KiB)".into(),
        ours: r.sidecar_kib.clone(),
        baseline: Values::Absent,
        compare: false,
    });
    rows.push(death_row(r, s));
    for (command, _, size, values) in reads(r, s) {
        rows.push(Row {
            what: format!("{command}, {size} (ms)"),
            ours: values.clone(),
            baseline: Values::Absent,
            compare: false,
        });
    }
    rows.push(Row {
        what: format!(
            "`mosaic-fleet top` left open, {} agents running (% of a core)",
            s.scale
        ),
        ours: r.top_cpu.clone(),
        baseline: Values::Absent,
        compare: false,
    });
    rows.extend(r.up.rows());
    rows.extend(r.transcript.rows());
    rows
}

pub(super) fn targets(r: &Results, s: &Sizes) -> Vec<Target> {
    let ratio = |goal: String, row: Row, limit: f64| {
        let ratio = row.ratio();
        Target {
            goal,
            measured: ratio.map(report::times),
            met: ratio.map(|x| x <= limit),
        }
    };
    let ms = |v: Option<f64>| v.map(|ms| format!("{} ms", report::number(ms)));
    let scaling = scaling(r, Kind::Ours);
    let death = death_row(r, s).ours.max();
    let mut targets = vec![
        ratio(
            "Launch ≤ 0.5× baseline".into(),
            both(String::new(), &r.warm),
            0.5,
        ),
        Target {
            goal: "Launch ≤ 1.35× a bare `tmux new-session` on the same server (ours)".into(),
            measured: over_bare(r, &r.warm[0]).map(report::times),
            met: over_bare(r, &r.warm[0]).map(|x| x <= 1.35),
        },
        Target {
            goal: format!(
                "Launch with {} running ≤ 1.5× launch on a warm server (ours)",
                s.scale
            ),
            measured: scaling.map(report::times),
            met: scaling.map(|x| x <= 1.5),
        },
    ];
    for (fs, v) in &r.cpu {
        targets.push(ratio(
            format!("Sidecar CPU per beat ≤ 0.03× baseline (heartbeat on {fs})"),
            cpu_row(fs, v),
            0.03,
        ));
    }
    targets.push(ratio(
        "Sidecar CPU per beat ≤ 0.03× baseline (agent printing continuously)".into(),
        cpu_printing_row(r),
        0.03,
    ));
    let wakeups = wakeups_row(r).ours.max();
    targets.push(Target {
        goal: "Sidecar wake-ups ≤ 1.5 per second, agent printing every 10 ms (ours, 30 s \
               interval, busiest window)"
            .into(),
        measured: wakeups.map(|w| format!("{} /s", report::number(w))),
        met: wakeups.map(|w| w <= 1.5),
    });
    targets.extend([
        ratio(
            format!("PSS of {} sidecars ≤ 0.30× baseline", s.pss),
            both(String::new(), &r.pss),
            0.30,
        ),
        Target {
            goal: format!(
                "Death seen ≤ 100 ms at a 30 s interval (ours, slowest of {} trials)",
                s.death_trials
            ),
            measured: ms(death),
            met: death.map(|ms| ms <= 100.0),
        },
    ]);
    for (command, on, size, values) in reads(r, s) {
        targets.push(Target {
            goal: format!("{command} {on} {size} ≤ 50 ms (median)"),
            measured: match values {
                Values::Unavailable(why) => Some(format!("unavailable ({why})")),
                _ => ms(values.median()),
            },
            met: values.median().map(|ms| ms <= 50.0),
        });
    }
    let top = r.top_cpu.max();
    targets.push(Target {
        goal: format!(
            "`mosaic-fleet top` with {} idle agents ≤ 2 % of a core (every window)",
            s.scale
        ),
        measured: match &r.top_cpu {
            Values::Unavailable(why) => Some(format!("unavailable ({why})")),
            _ => top.map(|p| format!("{} %", report::number(p))),
        },
        met: top.map(|p| p <= 2.0),
    });
    targets.extend(r.up.targets());
    targets.extend(r.transcript.targets());
    targets
}

/// The reads timed in milliseconds, each a row and a ≤ 50 ms target: what runs, over what
/// (`with`/`over` and the size, for the target's sentence), its timings.
fn reads<'a>(r: &'a Results, s: &Sizes) -> [(&'static str, &'static str, String, &'a Values); 3] {
    [
        (
            "`mosaic-fleet ls --json`",
            "with",
            format!("{} agents running", s.scale),
            &r.fleet_ls,
        ),
        (
            "`mosaic-hb status --json`",
            "over",
            format!("{} files", s.status_files),
            &r.status,
        ),
        (
            "`mosaic-hb exporter` GET /metrics",
            "over",
            format!("{} files", s.status_files),
            &r.exporter,
        ),
    ]
}

/// How each figure was taken, a paragraph each: the launches, then the sidecars and the reads.
pub(super) fn method(r: &Results, s: &Sizes, cpu: &procfs::Cpu) -> Vec<String> {
    let mut paragraphs = launch_method(r, s);
    paragraphs.extend(sidecar_method(r, s, cpu));
    paragraphs.push(r.up.method());
    paragraphs.push(r.transcript.method());
    paragraphs
}

fn launch_method(r: &Results, s: &Sizes) -> Vec<String> {
    vec![
        format!(
            "Ours is `mosaic-launcher` (which starts `mosaic-hb` through `setsid`), from the \
             directory named above; \
             the baseline is `bash bench/baseline/start-agent-session.sh`. Both get the same clean \
             environment (HOME in a temp dir, a runtime-bin dir, pane command `{}`) on one private \
             tmux server (`tmux -L mosaic-bench-<pid> -f /dev/null`) that keeps a keeper session \
             alive throughout. Heartbeat files are on {} (on tmpfs when there is one, as in \
             production: `$XDG_RUNTIME_DIR`, the launcher's default, else `/dev/shm`).",
            fleet::PANE_COMMAND,
            r.fs
        ),
        format!(
            "Launch: wall-clock time of one launcher process from spawn to exit, starting a new \
             agent with a 30 s heartbeat. {} launches of each kind, alternating, and which kind \
             goes first alternates too; one uncounted round first. Each agent is ended (session \
             and sidecar) after its first beat, outside the timing, so only the keeper (or the \
             {} agents of the scaled run) stays.",
            s.launches, s.scale
        ),
        "Launch against tmux itself: in each round of the warm launches, a bare \
         `tmux new-session -d -s NAME -c WORKDIR 'sleep 600'` on the same server, and \
         `mosaic-launcher NAME --no-heartbeat` (the session, remain-on-exit and the start \
         verdict, which waits until the pane's shell has executed the command, but no \
         sidecar); each session ended outside the timing. The verdict's cost is what the \
         launch without a sidecar takes over the bare new-session; the sidecar's is what the \
         full launch takes over that. The floor is what a launcher costs before it does \
         anything: in the same rounds, `mosaic-launcher --version` (a process of ours, spawned \
         and reaped like the others, that exits at once), added to the bare new-session."
            .to_string(),
        format!(
            "Launch with {} running: the same, after the server has been filled with {} agents \
             (half of each kind, each with its sidecar).",
            s.scale, s.scale
        ),
    ]
}

fn sidecar_method(r: &Results, s: &Sizes, cpu: &procfs::Cpu) -> Vec<String> {
    let own = match cpu.schedstat {
        true => "its own time from `/proc/PID/schedstat` (ns)",
        false => "its own `utime+stime` from `/proc/PID/stat`",
    };
    vec![
        format!(
            "CPU per beat: one agent of each kind with a 10 ms heartbeat, running at the same \
             time; the sidecar's CPU is {own} plus its reaped children's `cutime+cstime` (CLK_TCK \
             {}), over {} window(s) of {} s, divided by the beats written in the window (`seq=`). \
             The bash loop's `date`, `mv` and `sleep` are its children, so they count. Measured \
             with the heartbeat files on each of: {}.",
            cpu.ticks_per_sec,
            s.cpu_windows,
            s.cpu_window.as_secs_f64(),
            r.cpu
                .iter()
                .map(|(fs, _)| fs.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "Agent printing continuously: the pane runs `{}` (a line every 10 ms, as a chatty \
             agent or a spinner would). CPU per beat as above, heartbeat on {}. Wake-ups: one \
             agent of each kind with a 30 s heartbeat; the sidecar's `voluntary_ctxt_switches` \
             (`/proc/PID/status`: each is one sleep in `ppoll`, or in `wait` for the bash loop, \
             and one wake-up) over {} window(s) of {} s, per second. Ours is bound to about one \
             activity wake-up a second whatever the agent prints, plus its beats.",
            fleet::PRINTING_COMMAND,
            r.fs,
            s.cpu_windows,
            (s.cpu_window * 2).as_secs_f64(),
        ),
        format!(
            "PSS: `Pss:` of `/proc/PID/smaps_rollup` summed over {} sidecars of each kind (30 s \
             heartbeat) and their descendants: the bash loop spends its life waiting on a `sleep` \
             child; ours has none. Ours are found by the `hb_pid=` they write, the bash loops by \
             their argv. {PSS_SAMPLES} samples. PSS splits shared pages among every process \
             mapping them, so other bash and sleep processes on the machine lower the baseline's \
             figure.",
            s.pss
        ),
        format!(
            "Death to status: one agent of each kind with a 30 s heartbeat; after its first beat \
             both panes' processes get SIGKILL from one `kill` command, timed from just before it \
             is spawned, and both heartbeat files are read every 1 ms until they no longer say \
             `status=ok`, giving up (\"never\") after {} s. {} trial(s).",
            s.death_give_up.as_secs(),
            s.death_trials
        ),
        format!(
            "`mosaic-hb status --json DIR` over {} synthetic heartbeat files in our format (90% \
             fresh `ok`, the rest exited, stopped or an hour stale), spawn to exit, {} runs after \
             one uncounted. The bash original has no such report.",
            s.status_files, s.status_runs
        ),
        format!(
            "`mosaic-hb exporter` over the same {} files: `GET /metrics` on a fresh loopback \
             connection, timed from the connect to the answer's last byte (the exporter reads \
             the directory and renders at every request), {} requests after one uncounted.",
            s.status_files, s.status_runs
        ),
        format!(
            "`mosaic-fleet top` left open over the same running fleet, in an 80x24 pane of a \
             tmux server of its own (`-f /dev/null`), after {} s to settle: the CPU time of its \
             process and of its reaped children (the tmux calls it makes) over {} window(s) of \
             {} s, as a share of one core. The fleet's tmux server's work to answer them is \
             not counted.",
            super::top::SETTLE.as_secs(),
            s.top_windows,
            s.top_window.as_secs()
        ),
        "Noise: the machine's cores may be shared with other work (see the load average above); \
         alternating spreads it over both kinds but does not remove it. Medians are the figures \
         to compare; the bench asserts nothing."
            .into(),
    ]
}
