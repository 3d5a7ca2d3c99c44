/*!
The bench's measurement of transcripts (issue 27): what a logged agent costs over an unlogged
one. The only process that differs is the agent's `mosaic-log` (the pane's pipe; the pane, its
sidecar and the tmux server are the same), so:

- its private memory (`Private_Clean` + `Private_Dirty` of `/proc/PID/smaps_rollup`) and PSS,
  with several logged agents running (their writers share the binary's pages, as a fleet's
  do);
- CPU per MB logged: an agent prints a given number of MB and exits; the writer's CPU time,
  and the tmux server's, against the same agent run with `--no-log` on a server of its own
  (tmux copies every byte into the pipe: that share is the transcript's too).
*/

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::report::{Row, Target, Values};
use crate::procfs;
use crate::util::{self, Result, TempDir, TmuxServer};

/// The budget: a logged agent's extra private memory (KiB).
const BUDGET_KIB: f64 = 120.0;

pub struct TranscriptResults {
    /// Logged agents running while the memory is read.
    pub agents: usize,
    /// Per writer: private KiB, and PSS KiB.
    pub private_kib: Values,
    pub pss_kib: Values,
    /// MB printed per CPU measurement.
    pub mb: usize,
    /// Milliseconds of CPU per MB logged: the writer's, and tmux's extra over `--no-log`.
    pub writer_ms_per_mb: Values,
    pub tmux_ms_per_mb: Values,
}

/// A tmux server and a HOME of their own (transcripts go under it), removed on drop.
struct Place {
    _server: TmuxServer,
    tmp: TempDir,
    socket: String,
}

impl Place {
    fn new(tag: &str) -> Result<Place> {
        let tmp = TempDir::new(tag)?;
        let socket = format!("mosaic-bench-{tag}-{}", std::process::id());
        for dir in ["home", "hb"] {
            std::fs::create_dir_all(tmp.path().join(dir))
                .map_err(|e| format!("cannot create {dir}: {e}"))?;
        }
        Ok(Place {
            _server: TmuxServer(socket.clone()),
            tmp,
            socket,
        })
    }

    fn launch(&self, bin: &Path, agent: &str, command: &str, log: bool) -> Result {
        let mut cmd = Command::new(bin.join("mosaic-launcher"));
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("MOSAIC_") || key == "TMUX" || key_text.starts_with("XDG_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg(agent)
            .args(["--socket", &self.socket, "--command", command])
            .arg("--hb-dir")
            .arg(self.tmp.path().join("hb"))
            .env("HOME", self.tmp.path().join("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if !log {
            cmd.arg("--no-log");
        }
        util::run(&mut cmd)
    }

    fn tmux(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn server_pid(&self) -> Option<u32> {
        self.tmux(&["display-message", "-p", "#{pid}"])?
            .parse()
            .ok()
    }

    /// Waits until `agent`'s pane is dead (its command printed all and exited).
    fn wait_dead(&self, agent: &str, patience: Duration) -> Result {
        let target = format!("={agent}:");
        util::wait_for(patience, || {
            (self.tmux(&["display-message", "-p", "-t", &target, "#{pane_dead}"])? == "1")
                .then_some(())
        })
        .ok_or_else(|| format!("agent {agent} did not finish printing in {patience:?}"))
    }
}

pub fn measure(bin: &Path, agents: usize, mb: usize, rounds: usize) -> Result<TranscriptResults> {
    let (private_kib, pss_kib) = memory(bin, agents)?;
    let (mut writer, mut tmux) = (Vec::new(), Vec::new());
    let cpu = procfs::Cpu::probe()?;
    for round in 0..rounds {
        let (w, t) = cpu_per_mb(bin, &cpu, mb, round)?;
        writer.push(w);
        tmux.push(t);
    }
    Ok(TranscriptResults {
        agents,
        private_kib,
        pss_kib,
        mb,
        writer_ms_per_mb: Values::Samples(writer),
        tmux_ms_per_mb: Values::Samples(tmux),
    })
}

/// Private and PSS KiB of each writer, with `agents` logged agents running.
fn memory(bin: &Path, agents: usize) -> Result<(Values, Values)> {
    let place = Place::new("log-mem")?;
    for i in 0..agents {
        place.launch(bin, &format!("m{i}"), "sleep 600", true)?;
    }
    let exe = bin.join("mosaic-log");
    let writers = util::wait_for(Duration::from_secs(10), || {
        let pids = procfs::processes_of(&exe);
        (pids.len() >= agents).then_some(pids)
    })
    .ok_or("the agents' transcript writers did not all start")?;
    // Settled: the writers have read their first output and wait.
    std::thread::sleep(Duration::from_millis(300));
    let field = |pid: u32, names: &[&str]| -> Option<f64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
        let mut sum = 0.0;
        for name in names {
            let line = text.lines().find_map(|l| l.strip_prefix(name))?;
            sum += line
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()?;
        }
        Some(sum)
    };
    let private = writers
        .iter()
        .filter_map(|&p| field(p, &["Private_Clean:", "Private_Dirty:"]))
        .collect();
    let pss = writers
        .iter()
        .filter_map(|&p| field(p, &["Pss:"]))
        .collect();
    Ok((Values::Samples(private), Values::Samples(pss)))
}

/// CPU ms per MB: the writer's, and the tmux server's over the same output unlogged.
fn cpu_per_mb(bin: &Path, cpu: &procfs::Cpu, mb: usize, round: usize) -> Result<(f64, f64)> {
    // Lines of 100 bytes, `mb` MB of them, then the agent exits.
    let command = format!(
        "sh -c 'yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -c {}; sleep 0.2'",
        mb * 1_000_000
    );
    let patience = Duration::from_secs(120);
    let mut tmux_ns = [0u64; 2];
    let mut writer_ns = 0;
    for (i, log) in [true, false].into_iter().enumerate() {
        let place = Place::new(&format!("log-cpu{round}{i}"))?;
        place.launch(bin, "keeper", "sleep 600", false)?;
        let server = place.server_pid().ok_or("no tmux server pid")?;
        let before = cpu.used_ns(server).unwrap_or(0);
        place.launch(bin, "printer", &command, log)?;
        place.wait_dead("printer", patience)?;
        if log {
            let exe = bin.join("mosaic-log");
            let writer = procfs::processes_of(&exe)
                .into_iter()
                .find(|&p| procfs::stat(p).is_some_and(|s| s.ppid == server))
                .ok_or("the printer's writer is not running")?;
            let logs = place.tmp.path().join("home/.local/state/mosaic/logs");
            let file = logs.join(&place.socket).join("printer.log");
            // Done when the closing line is written (after all of the run's output).
            util::wait_for(patience, || {
                let text = std::fs::read(&file).ok()?;
                let tail = &text[text.len().saturating_sub(200)..];
                String::from_utf8_lossy(tail)
                    .contains("run ended")
                    .then_some(())
            })
            .ok_or("the transcript never got its closing line")?;
            writer_ns = cpu.used_ns(writer).unwrap_or(0);
        }
        tmux_ns[i] = cpu.used_ns(server).unwrap_or(0).saturating_sub(before);
    }
    let per_mb = |ns: u64| ns as f64 / 1e6 / mb as f64;
    Ok((
        per_mb(writer_ns),
        per_mb(tmux_ns[0].saturating_sub(tmux_ns[1])),
    ))
}

impl TranscriptResults {
    pub fn rows(&self) -> Vec<Row> {
        let row = |what: String, ours: &Values| Row {
            what,
            ours: ours.clone(),
            baseline: Values::Absent,
            compare: false,
        };
        vec![
            row(
                format!(
                    "Transcript writer's private memory, {} running (KiB each)",
                    self.agents
                ),
                &self.private_kib,
            ),
            row(
                format!(
                    "Transcript writer's PSS, {} running (KiB each)",
                    self.agents
                ),
                &self.pss_kib,
            ),
            row(
                format!("Transcript writer's CPU per MB logged, {} MB (ms)", self.mb),
                &self.writer_ms_per_mb,
            ),
            row(
                format!("tmux's extra CPU per MB logged, {} MB (ms)", self.mb),
                &self.tmux_ms_per_mb,
            ),
        ]
    }

    pub fn targets(&self) -> Vec<Target> {
        let max = match &self.private_kib {
            Values::Samples(v) if !v.is_empty() => Some(v.iter().cloned().fold(0.0, f64::max)),
            _ => None,
        };
        vec![Target {
            goal: format!(
                "A logged agent ≤ {BUDGET_KIB} kB more private memory than an unlogged one"
            ),
            measured: max.map(|kib| format!("{kib:.0} kB (its writer, the largest)")),
            met: max.map(|kib| kib <= BUDGET_KIB),
        }]
    }

    pub fn method(&self) -> String {
        format!(
            "Transcripts: a logged agent differs from an unlogged one by one process, its \
             pane's `mosaic-log` (static, rustix and vte alone); its memory is `Private_Clean` + \
             `Private_Dirty` (and `Pss`) of `/proc/PID/smaps_rollup` for each of {} writers of \
             `sleep 600` agents running on one server. CPU per MB: an agent prints {} MB of \
             100-byte lines and exits; the writer's CPU time (schedstat) once the transcript has \
             its closing line, and the tmux server's CPU over that run minus the same run with \
             `--no-log` on a server of its own (what tmux spends copying into the pipe), each \
             divided by the MB. {} round(s).",
            self.agents,
            self.mb,
            match &self.writer_ms_per_mb {
                Values::Samples(v) => v.len(),
                _ => 0,
            }
        )
    }
}
