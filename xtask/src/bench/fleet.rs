/*!
The bench's private fleet: one tmux server on a socket of its own, a temp dir holding `HOME`
and the agents' workdir, heartbeat directories (one per implementation) on tmpfs where
production keeps them and again in the temp dir, and the two launchers that fill the server
with agents.

Both launchers get the same clean environment (nothing of ours leaks in: no `TMUX`, no
`MOSAIC_*`, no user config) and the same pane command, and every agent a launcher starts also
gets its sidecar, as in production. Dropping the fleet ends every sidecar and loop it started
(their argv names a heartbeat file in one of those directories), then the tmux server, then removes the
directories, whether the bench finished or failed half-way.
*/

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs;
use crate::util::{self, Result, TempDir, TmuxServer};

/// Which implementation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `mosaic-launcher` and `mosaic-hb`.
    Ours = 0,
    /// `bench/baseline/start-agent-session.sh` and its bash loop.
    Baseline = 1,
}

impl Kind {
    pub const BOTH: [Kind; 2] = [Kind::Ours, Kind::Baseline];

    /// Both kinds for iteration `i`, the first one alternating, so neither always goes first.
    pub fn alternate(i: usize) -> [Kind; 2] {
        match i % 2 {
            0 => [Kind::Ours, Kind::Baseline],
            _ => [Kind::Baseline, Kind::Ours],
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Kind::Ours => "o",
            Kind::Baseline => "b",
        }
    }

    fn hb_dir(self) -> &'static str {
        match self {
            Kind::Ours => "hb-ours",
            Kind::Baseline => "hb-baseline",
        }
    }
}

/// What an agent's pane runs: harmless, and alive for longer than any bench.
pub const PANE_COMMAND: &str = "sleep 600";

/// A chatty agent: a line on its terminal every 10 ms, for as long as any bench (the pane
/// `exec`s it, so it is one command).
pub const PRINTING_COMMAND: &str = "sh -c 'while :; do echo working; sleep 0.01; done'";

/// How long a sidecar may take to write its first `status=ok`.
const FIRST_BEAT: Duration = Duration::from_secs(5);

/// The argv[0] the baseline gives its heartbeat loop (`bash -c '...' mosaic-heartbeat ...`).
const BASELINE_LOOP: &str = "mosaic-heartbeat";

/// A place for heartbeat directories, and the filesystem it is on.
pub struct Storage {
    /// `tmpfs`, `ext4`, ...: what `df` says.
    pub fs: String,
    /// Holds `hb-ours` and `hb-baseline`.
    dir: PathBuf,
}

/// An agent a launcher started.
pub struct Agent {
    pub kind: Kind,
    pub name: String,
    /// Its heartbeat file.
    pub file: PathBuf,
}

impl Agent {
    /// Waits for the agent's first `status=ok` record.
    pub fn first_beat(&self) -> Result<Beat> {
        util::wait_for(FIRST_BEAT, || Beat::read(&self.file).filter(|b| b.ok)).ok_or_else(|| {
            format!(
                "no status=ok in {} within {} s; it holds {:?}",
                self.file.display(),
                FIRST_BEAT.as_secs(),
                std::fs::read_to_string(&self.file).unwrap_or_default()
            )
        })
    }
}

pub struct Fleet {
    pub socket: String,
    launcher: PathBuf,
    baseline: PathBuf,
    home: PathBuf,
    runtime_bin: PathBuf,
    workdir: PathBuf,
    /// Where heartbeat files go: tmpfs first when there is one, then the temp dir.
    pub storages: Vec<Storage>,
    /// Names of the agents started and not yet discarded.
    running: Vec<String>,
    /// Taken by `Drop::drop` once the sidecars are ended; it also removes the socket file.
    server: Option<TmuxServer>,
    // Removed on drop, after `Drop::drop`: the tmpfs storage, then the temp dir.
    _tmpfs: Option<TempDir>,
    _tmp: TempDir,
}

impl Fleet {
    /// Creates the directories and starts the tmux server with one `keeper` session, so that
    /// every measured launch finds a warm server.
    pub fn start(bin_dir: &Path) -> Result<Fleet> {
        let launcher = bin_dir.join("mosaic-launcher");
        let baseline = util::project_root().join("bench/baseline/start-agent-session.sh");
        for path in [&launcher, &baseline] {
            if !path.is_file() {
                return Err(format!("cannot find {}", path.display()));
            }
        }
        let tmp = TempDir::new("bench")?;
        let home = tmp.path().join("home");
        let runtime_bin = tmp.path().join("runtime-bin");
        let workdir = tmp.path().join("work");
        let tmpfs = util::tmpfs_dir("bench");
        let mut storages = Vec::new();
        for dir in tmpfs.iter().map(TempDir::path).chain([tmp.path()]) {
            for kind in Kind::BOTH {
                let hb = dir.join(kind.hb_dir());
                std::fs::create_dir_all(&hb)
                    .map_err(|e| format!("cannot create {}: {e}", hb.display()))?;
            }
            storages.push(Storage {
                fs: util::fs_type(dir),
                dir: dir.to_path_buf(),
            });
        }
        // Both launchers find these and put them first on the pane's PATH.
        for dir in [&home.join(".local/bin"), &runtime_bin, &workdir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let socket = format!("mosaic-bench-{}", std::process::id());
        let fleet = Fleet {
            server: Some(TmuxServer(socket.clone())),
            socket,
            launcher,
            baseline,
            home,
            runtime_bin,
            workdir,
            storages,
            running: Vec::new(),
            _tmpfs: tmpfs,
            _tmp: tmp,
        };
        // `-f /dev/null`: no tmux configuration, so the server is the same on every machine.
        let mut keeper = fleet.tmux();
        keeper.args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "keeper",
            "sleep 3600",
        ]);
        util::output(&mut keeper)?;
        Ok(fleet)
    }

    /// A command with the fleet's clean environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear().env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        );
        // The same socket directory as `TmuxServer`, which kills the server with our own env.
        if let Some(dir) = std::env::var_os("TMUX_TMPDIR") {
            cmd.env("TMUX_TMPDIR", dir);
        }
        cmd.env("HOME", &self.home)
            .env("MOSAIC_TMUX_SOCKET", &self.socket)
            .env("MOSAIC_AGENT_WORKDIR", &self.workdir)
            .env("MOSAIC_AGENT_COMMAND", PANE_COMMAND)
            .env("MOSAIC_RUNTIME_BIN", &self.runtime_bin)
            .stdin(Stdio::null());
        cmd
    }

    /// `mosaic-fleet` from `bin_dir` on this fleet's socket, reading our heartbeat directory
    /// (the first storage's).
    pub fn fleet_cli(&self, bin_dir: &Path) -> Command {
        let mut cmd = self.command(bin_dir.join("mosaic-fleet"));
        cmd.env(
            "MOSAIC_HEARTBEAT_RUN_DIR",
            self.storages[0].dir.join(Kind::Ours.hb_dir()),
        );
        cmd
    }

    fn tmux(&self) -> Command {
        let mut cmd = self.command("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    /// How many agents are running, besides the keeper.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Starts agent `name` with `kind`'s launcher and a heartbeat every `interval` seconds, its
    /// file on the first storage; returns it with the launcher's wall-clock time from spawn
    /// to exit.
    pub fn launch(
        &mut self,
        kind: Kind,
        name: String,
        interval: &str,
    ) -> Result<(Agent, Duration)> {
        self.launch_on(0, kind, name, interval)
    }

    /// [`Fleet::launch`], with the heartbeat file on `self.storages[storage]`.
    pub fn launch_on(
        &mut self,
        storage: usize,
        kind: Kind,
        name: String,
        interval: &str,
    ) -> Result<(Agent, Duration)> {
        self.launch_running(storage, kind, name, interval, PANE_COMMAND)
    }

    /// [`Fleet::launch_on`], the pane running `pane_command`.
    pub fn launch_running(
        &mut self,
        storage: usize,
        kind: Kind,
        name: String,
        interval: &str,
        pane_command: &str,
    ) -> Result<(Agent, Duration)> {
        let hb_dir = self.storages[storage].dir.join(kind.hb_dir());
        let mut cmd = match kind {
            Kind::Ours => self.command(&self.launcher),
            Kind::Baseline => {
                let mut cmd = self.command("bash");
                cmd.arg(&self.baseline);
                cmd
            }
        };
        cmd.arg(&name)
            .env("MOSAIC_AGENT_COMMAND", pane_command)
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &hb_dir)
            .env("MOSAIC_HEARTBEAT_INTERVAL", interval);
        let start = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", util::show(&cmd)))?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!(
                "`{}` failed ({}): {}",
                util::show(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.running.push(name.clone());
        let file = hb_dir.join(format!("{name}.hb"));
        Ok((Agent { kind, name, file }, took))
    }

    /// The yardstick for the launch's own cost: a bare `tmux new-session -d` of the same
    /// command on the same server, as a user would type it; its wall-clock time. The session
    /// is ended again.
    pub fn bare_new_session(&mut self, name: &str) -> Result<Duration> {
        let mut cmd = self.tmux();
        cmd.args(["new-session", "-d", "-s", name, "-c"])
            .arg(&self.workdir)
            .arg(PANE_COMMAND);
        let start = Instant::now();
        util::output(&mut cmd)?;
        let took = start.elapsed();
        self.end_session(name);
        Ok(took)
    }

    /// `mosaic-launcher --no-heartbeat`: the session and the start verdict, no sidecar; its
    /// wall-clock time. The session is ended again.
    pub fn launch_without_sidecar(&mut self, name: &str) -> Result<Duration> {
        let mut cmd = self.command(&self.launcher);
        cmd.arg(name).arg("--no-heartbeat");
        let start = Instant::now();
        util::output(&mut cmd)?;
        let took = start.elapsed();
        self.end_session(name);
        Ok(took)
    }

    /// `mosaic-launcher --version`: a process of ours that does nothing; its wall-clock time.
    pub fn launcher_version(&mut self) -> Result<Duration> {
        let mut cmd = self.command(&self.launcher);
        cmd.arg("--version");
        let start = Instant::now();
        util::output(&mut cmd)?;
        Ok(start.elapsed())
    }

    fn end_session(&self, name: &str) {
        let mut kill = self.tmux();
        kill.args(["kill-session", "-t", &format!("={name}")])
            .stderr(Stdio::null());
        let _ = kill.status();
    }

    /// Ends an agent: its tmux session, and its sidecar or loop (with the loop's `sleep`).
    pub fn discard(&mut self, agent: &Agent) {
        let mut kill = self.tmux();
        kill.args(["kill-session", "-t", &format!("={}", agent.name)])
            .stderr(Stdio::null());
        let _ = kill.status();
        let file = agent.file.to_string_lossy();
        procfs::end(|p| p.args.iter().any(|a| *a == file));
        self.running.retain(|name| *name != agent.name);
    }
}

/// The pid of each agent's sidecar, once it has written its first beat: ours from the
/// `hb_pid=` it writes, the baseline's loop from its argv.
pub fn sidecars(agents: &[Agent]) -> Result<Vec<u32>> {
    let beats = agents
        .iter()
        .map(Agent::first_beat)
        .collect::<Result<Vec<_>>>()?;
    let processes = procfs::processes();
    let mut pids = Vec::with_capacity(agents.len());
    for (agent, beat) in agents.iter().zip(beats) {
        let pid = match agent.kind {
            Kind::Ours => beat.hb_pid,
            Kind::Baseline => {
                let file = agent.file.to_string_lossy();
                processes
                    .iter()
                    .find(|p| {
                        p.args.iter().any(|a| a == BASELINE_LOOP)
                            && p.args.iter().any(|a| *a == file)
                    })
                    .map(|p| p.pid)
            }
        };
        pids.push(pid.ok_or_else(|| {
            format!(
                "cannot find the sidecar that writes {}",
                agent.file.display()
            )
        })?);
    }
    Ok(pids)
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let roots: Vec<String> = self
            .storages
            .iter()
            .map(|s| s.dir.to_string_lossy().into_owned())
            .collect();
        procfs::end(|p| p.args.iter().any(|a| roots.iter().any(|r| a.contains(r))));
        drop(self.server.take());
    }
}

/// The fields of a heartbeat record the bench reads; both kinds write these.
pub struct Beat {
    /// `pid=`: the watched process.
    pub pid: Option<u32>,
    /// `status=ok`.
    pub ok: bool,
    pub seq: Option<u64>,
    /// `hb_pid=`: ours only.
    pub hb_pid: Option<u32>,
}

impl Beat {
    pub fn read(path: &Path) -> Option<Beat> {
        let text = std::fs::read_to_string(path).ok()?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        };
        Some(Beat {
            pid: field("pid").and_then(|v| v.parse().ok()),
            ok: field("status") == Some("ok"),
            seq: field("seq").and_then(|v| v.parse().ok()),
            hb_pid: field("hb_pid").and_then(|v| v.parse().ok()),
        })
    }
}
