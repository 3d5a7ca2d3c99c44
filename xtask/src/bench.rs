/*!
`cargo xtask bench`: `mosaic-launcher` and `mosaic-hb` against the bash original they replace,
measured side by side in one run, reported in `BENCHMARKS.md` at the workspace root.

The yardstick is `bench/baseline/start-agent-session.sh`, a bash launcher and heartbeat loop in
the original's style. Both implementations run on one private tmux server ([`fleet`]) and take
turns: every iteration runs both, and which goes first alternates, so whatever else the machine
is doing (two cores shared with builds) falls on both alike. In the order they run:

1. launch latency on a warm server (only a keeper session running);
2. sidecar CPU per beat at a 10 ms interval, once per filesystem (tmpfs, and the temp dir's):
   a beat is mostly filesystem work, and ext4 charges far more for it than tmpfs; then again
   on tmpfs with an agent that prints continuously (the activity watch at work), and the
   sidecar's wake-ups per second for such an agent at a 30 s interval;
3. death-to-status latency at a 30 s interval;
4. PSS of many sidecars of each kind (they stay running, for 5);
5. launch latency with about 200 agents running;
6. `mosaic-fleet ls --json` with those 200 agents running (ours only): one tmux round trip and
   one pass over the heartbeat directory; then `mosaic-fleet top` left open over them, its
   share of a core ([`top`]);
7. `mosaic-hb status --json` over 1,000 heartbeat files (ours only: bash had no such report);
8. `mosaic-fleet up` ([`up`]) and what a transcript costs ([`transcript`]).

Heartbeat files live on tmpfs when there is one, as in production (the launcher's default is
`$XDG_RUNTIME_DIR/mosaic/heartbeat`).

The bench reports; it never asserts a timing. A missed target is a finding, listed under
"Targets", not a failure. It fails only when a measurement cannot run at all (a launcher fails,
a heartbeat never appears); a `mosaic-hb status` that cannot report is shown as unavailable.

Only a full run of the project's own build writes `BENCHMARKS.md`, so the committed report
always holds full-size figures. `--quick` is CI's smoke test: every measurement at a small size,
in about fifteen seconds, printed and written to `target/bench/BENCHMARKS-quick.md`.
`--bin-dir DIR` measures another build (to try a fix out) and writes
`target/bench/BENCHMARKS-bin-dir.md`.
*/

mod fleet;
mod report;
mod summary;
mod top;
mod transcript;
mod up;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use self::fleet::{Beat, Fleet, Kind};
use self::report::{Machine, Report, Values};
use crate::procfs;
use crate::util::{self, Result, TempDir};

#[derive(clap::Args)]
pub struct Args {
    /// A short run for CI: checks that every measurement works, asserts no timing, and writes
    /// target/bench/BENCHMARKS-quick.md instead of BENCHMARKS.md.
    #[arg(long)]
    quick: bool,
    /// Measure the mosaic-launcher and mosaic-hb in DIR instead of building target/release, to
    /// try a change out; writes target/bench/BENCHMARKS-bin-dir.md instead of BENCHMARKS.md.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// How much of each measurement to run.
struct Sizes {
    /// Timed launches of each kind, per launch measurement.
    launches: usize,
    /// Agents running during the second launch measurement.
    scale: usize,
    cpu_windows: usize,
    cpu_window: Duration,
    /// Sidecars of each kind whose memory is summed.
    pss: usize,
    death_trials: usize,
    death_give_up: Duration,
    status_files: usize,
    status_runs: usize,
    /// Windows in which `mosaic-fleet top`'s CPU is measured, and their length.
    top_windows: usize,
    top_window: Duration,
    /// Agents per `mosaic-fleet up` round, the rounds, and the agents of the one large `up`.
    up: (usize, usize, usize),
    /// Logged agents whose writers' memory is read; MB logged per CPU round; rounds.
    transcript: (usize, usize, usize),
}

const FULL: Sizes = Sizes {
    launches: 30,
    scale: 200,
    cpu_windows: 5,
    cpu_window: Duration::from_secs(1),
    pss: 50,
    death_trials: 3,
    death_give_up: Duration::from_secs(5),
    status_files: 1000,
    status_runs: 15,
    top_windows: 3,
    top_window: Duration::from_secs(10),
    up: (100, 3, 1000),
    transcript: (10, 20, 3),
};

const QUICK: Sizes = Sizes {
    launches: 5,
    scale: 20,
    cpu_windows: 1,
    cpu_window: Duration::from_secs(1),
    pss: 5,
    death_trials: 1,
    death_give_up: Duration::from_secs(2),
    status_files: 100,
    status_runs: 3,
    top_windows: 1,
    top_window: Duration::from_secs(2),
    up: (10, 1, 20),
    transcript: (3, 2, 1),
};

/// Samples of PSS taken per kind; memory barely moves, a few show that it does not.
const PSS_SAMPLES: usize = 3;

/// Every measurement, indexed by `Kind as usize` where there are two.
struct Results {
    warm: [Vec<f64>; 2],
    /// On the warm server, in the same rounds: a bare `tmux new-session -d`, our launch
    /// without a sidecar (`--no-heartbeat`: the session and the start verdict), and a process
    /// of ours that does nothing (`mosaic-launcher --version`: what any launcher costs).
    bare: [Vec<f64>; 3],
    scaled: [Vec<f64>; 2],
    /// Per storage: the filesystem's name, and the figures with heartbeat files on it.
    cpu: Vec<(String, [Vec<f64>; 2])>,
    /// CPU per beat with an agent that prints continuously (heartbeat on the first storage).
    cpu_printing: [Vec<f64>; 2],
    /// Wake-ups per second of a sidecar whose agent prints continuously, 30 s interval.
    wakeups: [Vec<f64>; 2],
    /// The filesystem of the heartbeat files of every other measurement.
    fs: String,
    death: [Vec<f64>; 2],
    pss: [Vec<f64>; 2],
    status: Values,
    exporter: Values,
    /// `mosaic-fleet ls --json` with `scale` agents running (ms).
    fleet_ls: Values,
    /// The size of the `mosaic-hb` measured (KiB): what every agent's sidecar maps.
    sidecar_kib: Values,
    /// `mosaic-fleet top` left open with `scale` agents running (% of a core).
    top_cpu: Values,
    /// `mosaic-fleet up` and its yardsticks.
    up: up::UpResults,
    /// What a transcript costs.
    transcript: transcript::TranscriptResults,
}

pub fn run(args: &Args) -> Result {
    let sizes = if args.quick { &QUICK } else { &FULL };
    let mut command = String::from("cargo xtask bench");
    if args.quick {
        command += " --quick";
    }
    let bin = match &args.bin_dir {
        Some(dir) => {
            command += &format!(" --bin-dir {}", dir.display());
            std::path::absolute(dir)
                .map_err(|e| format!("invalid --bin-dir {}: {e}", dir.display()))?
        }
        None => {
            eprintln!("xtask: building release binaries");
            util::build_release()?;
            util::release_dir()
        }
    };
    if Command::new("tmux").arg("-V").output().is_err() {
        return Err(
            "tmux is not installed: run `apt-get install tmux` (or `.ci/run`), then retry".into(),
        );
    }
    let machine = Machine::probe();
    let cpu = procfs::Cpu::probe()?;
    let clock = Instant::now();
    let results = measure(&bin, sizes, &cpu)?;
    let report = Report {
        command: &command,
        bin: &bin,
        machine,
        rows: summary::rows(&results, sizes),
        targets: summary::targets(&results, sizes),
        method: summary::method(&results, sizes, &cpu),
    };
    let text = report.markdown();
    print!("{text}");
    let out = match (args.quick, &args.bin_dir) {
        (true, _) => util::target_dir().join("bench/BENCHMARKS-quick.md"),
        (false, Some(_)) => util::target_dir().join("bench/BENCHMARKS-bin-dir.md"),
        (false, None) => util::project_root().join("BENCHMARKS.md"),
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "xtask: bench done in {:.0} s; report written to {}",
        clock.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn measure(bin: &Path, sizes: &Sizes, cpu: &procfs::Cpu) -> Result<Results> {
    let mut fleet = Fleet::start(bin)?;
    let n = sizes.launches;
    step(&format!(
        "launch on a warm server, {n} each (tmux socket {})",
        fleet.socket
    ));
    let (warm, bare) = launches_and_bare(&mut fleet, "warm", n, true)?;
    let mut cpu_on = Vec::new();
    for storage in 0..fleet.storages.len() {
        let fs = fleet.storages[storage].fs.clone();
        step(&format!(
            "sidecar CPU per beat at a 10 ms interval, heartbeat files on {fs}"
        ));
        cpu_on.push((
            fs,
            cpu_per_beat(&mut fleet, storage, cpu, sizes, fleet::PANE_COMMAND)?,
        ));
    }
    step("sidecar CPU per beat at a 10 ms interval, agent printing continuously");
    let cpu_printing = cpu_per_beat(&mut fleet, 0, cpu, sizes, fleet::PRINTING_COMMAND)?;
    step("sidecar wake-ups per second at a 30 s interval, agent printing continuously");
    let wakeups = wakeups(&mut fleet, sizes)?;
    step("death to status at a 30 s interval");
    let death = death(&mut fleet, sizes)?;
    step(&format!("PSS of {} sidecars of each kind", sizes.pss));
    let pss = pss(&mut fleet, sizes)?;
    step(&format!(
        "launch with {} agents running, {n} each",
        sizes.scale
    ));
    fill(&mut fleet, sizes.scale)?;
    let scaled = launches(&mut fleet, "scaled", n)?;
    step(&format!(
        "mosaic-fleet ls --json with {} agents running",
        fleet.running()
    ));
    let fleet_ls = fleet_ls(&fleet, bin, sizes)?;
    step(&format!(
        "mosaic-fleet top's CPU with {} agents running",
        fleet.running()
    ));
    let top_cpu = top::cpu(&fleet, bin, cpu, sizes.top_windows, sizes.top_window)?;
    let fs = fleet.storages[0].fs.clone();
    drop(fleet);
    step(&format!(
        "mosaic-hb status --json over {} files",
        sizes.status_files
    ));
    let status = status(bin, sizes)?;
    step(&format!(
        "mosaic-hb exporter GET /metrics over {} files",
        sizes.status_files
    ));
    let exporter = exporter(bin, sizes)?;
    let (n, rounds, large) = sizes.up;
    step(&format!(
        "mosaic-fleet up of {n} new agents against {n} launchers and pm2 start, {rounds} rounds"
    ));
    let up = up::measure(bin, n, rounds, large)?;
    let (agents, mb, rounds) = sizes.transcript;
    step(&format!(
        "transcripts: the writers of {agents} agents, CPU per MB over {mb} MB, {rounds} rounds"
    ));
    let transcript = transcript::measure(bin, agents, mb, rounds)?;
    Ok(Results {
        transcript,
        warm,
        bare,
        scaled,
        cpu: cpu_on,
        cpu_printing,
        wakeups,
        fs,
        death,
        pss,
        status,
        exporter,
        fleet_ls,
        sidecar_kib: match std::fs::metadata(bin.join("mosaic-hb")) {
            Ok(meta) => Values::Samples(vec![meta.len() as f64 / 1024.0]),
            Err(_) => Values::Absent,
        },
        top_cpu,
        up,
    })
}

/// Milliseconds per `mosaic-fleet ls --json` over the running fleet (every session on the
/// socket, both kinds, joined with our heartbeat directory), or why it cannot run.
fn fleet_ls(fleet: &Fleet, bin: &Path, sizes: &Sizes) -> Result<Values> {
    let mut cmd = fleet.fleet_cli(bin);
    cmd.args(["ls", "--json"]);
    time_runs(&mut cmd, sizes.status_runs, |out| !out.status.success())
}

fn step(what: &str) {
    eprintln!("xtask: bench: {what}");
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times `n` launches of each kind (after one uncounted round that warms the page cache).
/// Each agent is ended once its sidecar has written, so the server's load stays as it was.
fn launches(fleet: &mut Fleet, phase: &str, n: usize) -> Result<[Vec<f64>; 2]> {
    Ok(launches_and_bare(fleet, phase, n, false)?.0)
}

/// Milliseconds, one list per kind.
type PerKind = [Vec<f64>; 2];

/// [`launches`], and with `bare`, in the same rounds, a bare `tmux new-session`, a launch
/// without a sidecar (`--no-heartbeat`) and a process of ours that does nothing:
/// `[bare, no sidecar, nothing]`.
fn launches_and_bare(
    fleet: &mut Fleet,
    phase: &str,
    n: usize,
    bare: bool,
) -> Result<(PerKind, [Vec<f64>; 3])> {
    let mut ms = [Vec::new(), Vec::new()];
    let mut yard = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..=n {
        if bare {
            let took = fleet.bare_new_session(&format!("{phase}-t-{i}"))?;
            let plain = fleet.launch_without_sidecar(&format!("{phase}-n-{i}"))?;
            let nothing = fleet.launcher_version()?;
            if i > 0 {
                yard[0].push(millis(took));
                yard[1].push(millis(plain));
                yard[2].push(millis(nothing));
            }
        }
        for kind in Kind::alternate(i) {
            let name = format!("{phase}-{}-{i}", kind.tag());
            let (agent, took) = fleet.launch(kind, name, "30")?;
            // Also proves the launch worked, and the loop is past its fork before it is ended.
            agent.first_beat()?;
            fleet.discard(&agent);
            if i > 0 {
                ms[kind as usize].push(millis(took));
            }
        }
    }
    Ok((ms, yard))
}

/// Microseconds of CPU per beat for one sidecar of each kind, running at the same time, with
/// their heartbeat files on `fleet.storages[storage]` and their panes running `pane_command`.
fn cpu_per_beat(
    fleet: &mut Fleet,
    storage: usize,
    cpu: &procfs::Cpu,
    sizes: &Sizes,
    pane_command: &str,
) -> Result<[Vec<f64>; 2]> {
    let mut agents = Vec::new();
    let printing = if pane_command == fleet::PANE_COMMAND {
        ""
    } else {
        "-printing"
    };
    for kind in Kind::BOTH {
        let name = format!("cpu{printing}-{}-{storage}", kind.tag());
        agents.push(
            fleet
                .launch_running(storage, kind, name, "0.01", pane_command)?
                .0,
        );
    }
    let pids = fleet::sidecars(&agents)?;
    std::thread::sleep(Duration::from_millis(300));
    let sample = |i: usize| -> Result<(u64, u64)> {
        let agent = &agents[i];
        let used = cpu
            .used_ns(pids[i])
            .ok_or_else(|| format!("the sidecar of {} (pid {}) is gone", agent.name, pids[i]))?;
        let seq = Beat::read(&agent.file)
            .and_then(|b| b.seq)
            .ok_or_else(|| format!("no seq= in {}", agent.file.display()))?;
        Ok((used, seq))
    };
    let mut per_beat = [Vec::new(), Vec::new()];
    for _ in 0..sizes.cpu_windows {
        let before = [sample(0)?, sample(1)?];
        std::thread::sleep(sizes.cpu_window);
        let after = [sample(0)?, sample(1)?];
        for (i, values) in per_beat.iter_mut().enumerate() {
            let beats = after[i].1.saturating_sub(before[i].1);
            if beats == 0 {
                return Err(format!("{} wrote no beat in a window", agents[i].name));
            }
            values.push((after[i].0 - before[i].0) as f64 / beats as f64 / 1e3);
        }
    }
    for agent in &agents {
        fleet.discard(agent);
    }
    Ok(per_beat)
}

/// Wake-ups per second (voluntary context switches) of one sidecar of each kind at a 30 s
/// interval, their agents printing a line every 10 ms: the activity watch's bound at work.
fn wakeups(fleet: &mut Fleet, sizes: &Sizes) -> Result<[Vec<f64>; 2]> {
    let mut agents = Vec::new();
    for kind in Kind::BOTH {
        let name = format!("wake-{}", kind.tag());
        let printing = fleet::PRINTING_COMMAND;
        agents.push(fleet.launch_running(0, kind, name, "30", printing)?.0);
    }
    let pids = fleet::sidecars(&agents)?;
    // Past start-up: the first activity records, the loops' first beat.
    std::thread::sleep(Duration::from_millis(1500));
    let sample = |i: usize| {
        procfs::wakeups(pids[i]).ok_or_else(|| {
            format!(
                "the sidecar of {} (pid {}) is gone",
                agents[i].name, pids[i]
            )
        })
    };
    let mut per_sec = [Vec::new(), Vec::new()];
    for _ in 0..sizes.cpu_windows {
        let before = [sample(0)?, sample(1)?];
        let start = Instant::now();
        std::thread::sleep(sizes.cpu_window * 2);
        let after = [sample(0)?, sample(1)?];
        let secs = start.elapsed().as_secs_f64();
        for (i, values) in per_sec.iter_mut().enumerate() {
            values.push(after[i].saturating_sub(before[i]) as f64 / secs);
        }
    }
    for agent in &agents {
        fleet.discard(agent);
    }
    Ok(per_sec)
}

/// Milliseconds from killing each agent's process to its file no longer saying `status=ok`;
/// infinity when that is not seen within the give-up time.
fn death(fleet: &mut Fleet, sizes: &Sizes) -> Result<[Vec<f64>; 2]> {
    let mut seen_ms = [Vec::new(), Vec::new()];
    for trial in 0..sizes.death_trials {
        let mut agents = Vec::new();
        for kind in Kind::BOTH {
            let name = format!("death-{}-{trial}", kind.tag());
            agents.push(fleet.launch(kind, name, "30")?.0);
        }
        let mut targets = Vec::new();
        for agent in &agents {
            let pid = agent.first_beat()?.pid;
            targets.push(pid.ok_or_else(|| format!("no pid= in {}", agent.file.display()))?);
        }
        let start = Instant::now();
        procfs::kill("KILL", &targets);
        let mut seen: [Option<Duration>; 2] = [None, None];
        while seen.iter().any(Option::is_none) && start.elapsed() < sizes.death_give_up {
            for (when, agent) in seen.iter_mut().zip(&agents) {
                if when.is_none() && Beat::read(&agent.file).is_some_and(|b| !b.ok) {
                    *when = Some(start.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for (values, when) in seen_ms.iter_mut().zip(seen) {
            values.push(when.map_or(f64::INFINITY, millis));
        }
        for agent in &agents {
            fleet.discard(agent);
        }
    }
    Ok(seen_ms)
}

/// MiB of PSS summed over `sizes.pss` sidecars of each kind, and their descendants. The agents
/// stay running: they count towards the fleet of the scaled launch measurement.
fn pss(fleet: &mut Fleet, sizes: &Sizes) -> Result<[Vec<f64>; 2]> {
    let mut agents = Vec::new();
    for i in 0..sizes.pss {
        for kind in Kind::alternate(i) {
            let name = format!("pss-{}-{i}", kind.tag());
            agents.push(fleet.launch(kind, name, "30")?.0);
        }
    }
    let pids = fleet::sidecars(&agents)?;
    // The loops fork for their first beat; let every one get back into its `sleep`.
    std::thread::sleep(Duration::from_millis(500));
    let mut mib = [Vec::new(), Vec::new()];
    for sample in 0..PSS_SAMPLES {
        if sample > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        for kind in Kind::BOTH {
            let roots: Vec<u32> = agents
                .iter()
                .zip(&pids)
                .filter(|(agent, _)| agent.kind == kind)
                .map(|(_, &pid)| pid)
                .collect();
            if let Some(gone) = roots.iter().find(|&&p| procfs::pss_kib(p).is_none()) {
                return Err(format!(
                    "sidecar pid {gone} ended during the PSS measurement"
                ));
            }
            let kib: u64 = procfs::with_descendants(&roots)
                .into_iter()
                .filter_map(procfs::pss_kib)
                .sum();
            mib[kind as usize].push(kib as f64 / 1024.0);
        }
    }
    Ok(mib)
}

/// Starts agents, the two kinds in turn, until `count` are running.
fn fill(fleet: &mut Fleet, count: usize) -> Result {
    let mut i = 0;
    while fleet.running() < count {
        let kind = Kind::alternate(i)[0];
        fleet.launch(kind, format!("fill-{}-{i}", kind.tag()), "30")?;
        i += 1;
    }
    // Let the last sidecars' first beats finish before anything is timed.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// Milliseconds per `mosaic-hb status --json` over synthetic files, or why it cannot run.
fn status(bin: &Path, sizes: &Sizes) -> Result<Values> {
    let tmp = TempDir::new("bench-status")?;
    write_status_files(tmp.path(), sizes.status_files)?;
    let mut cmd = Command::new(bin.join("mosaic-hb"));
    cmd.args(["status", "--json"])
        .arg(tmp.path())
        .stdin(Stdio::null());
    // A report with a non-zero exit is a fleet with problems, not a missing command.
    time_runs(&mut cmd, sizes.status_runs, |out| {
        out.stdout.is_empty() && !out.status.success()
    })
}

/// Milliseconds per run of `cmd`, spawn to exit, over `runs` runs after one uncounted (it
/// warms the page cache); or, at the first run that `failed` judges a failure, why.
fn time_runs(
    cmd: &mut Command,
    runs: usize,
    failed: impl Fn(&std::process::Output) -> bool,
) -> Result<Values> {
    let mut ms = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", util::show(cmd)))?;
        let took = start.elapsed();
        if failed(&out) {
            let err = String::from_utf8_lossy(&out.stderr);
            return Ok(Values::Unavailable(format!(
                "{}: {}",
                out.status,
                err.lines().next().unwrap_or_default().trim()
            )));
        }
        if run > 0 {
            ms.push(millis(took));
        }
    }
    Ok(Values::Samples(ms))
}

/// Milliseconds per `GET /metrics` from `mosaic-hb exporter` over synthetic files, from the
/// request's first byte to the answer's last; or why it cannot run.
fn exporter(bin: &Path, sizes: &Sizes) -> Result<Values> {
    use std::io::{Read, Write};
    let tmp = TempDir::new("bench-exporter")?;
    let dir = tmp.path().join("hb");
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_status_files(&dir, sizes.status_files)?;
    let log = tmp.path().join("exporter.log");
    let _guard = util::spawn_quiet(
        Command::new(bin.join("mosaic-hb"))
            .args(["exporter", "--listen", "127.0.0.1:0"])
            .arg(&dir),
        Some(&log),
    )?;
    let Some(addr) = util::exporter_addr(&log, Duration::from_secs(10)) else {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        return Ok(Values::Unavailable(
            text.lines()
                .next()
                .unwrap_or("no address")
                .trim()
                .to_string(),
        ));
    };
    let mut ms = Vec::new();
    for run in 0..=sizes.status_runs {
        let start = Instant::now();
        let mut stream = std::net::TcpStream::connect(addr)
            .map_err(|e| format!("cannot connect to the exporter at {addr}: {e}"))?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
            .map_err(|e| format!("cannot ask the exporter: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .map_err(|e| format!("cannot read the exporter's answer: {e}"))?;
        let took = start.elapsed();
        if !answer.starts_with(b"HTTP/1.1 200") {
            let head = String::from_utf8_lossy(&answer[..answer.len().min(80)]).into_owned();
            return Ok(Values::Unavailable(head));
        }
        // Run 0 warms the page cache and is not counted.
        if run > 0 {
            ms.push(millis(took));
        }
    }
    Ok(Values::Samples(ms))
}

/// `count` heartbeat files in our format: 90% fresh `ok`, the rest exited, stopped or stale.
/// They name this process, which is alive, as both target and sidecar.
fn write_status_files(dir: &Path, count: usize) -> Result {
    let me = std::process::id();
    let started = procfs::stat(me).map_or(0, |s| s.start);
    let now = SystemTime::now();
    for i in 0..count {
        let (status, age) = match i % 50 {
            0..=44 => ("ok", 0),
            45 | 46 => ("exited", 60),
            47 => ("stopped", 60),
            _ => ("ok", 3600),
        };
        let ts = report::utc(now - Duration::from_secs(age));
        let agent = format!("agent-{i:04}");
        let file = dir.join(format!("{agent}.hb"));
        let text = format!(
            "ts={ts}\npid={me}\nstatus={status}\nagent={agent}\ninterval=30\nseq={}\nhb_pid={me}\nstarted={started}\n",
            i + 1
        );
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(())
}
