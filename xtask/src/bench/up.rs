/*!
The fleet file's bench: `mosaic-fleet up` of many new agents against the ways to start as many
without it, in the same rounds.

Each round runs, in an order that rotates: `mosaic-fleet up -f mosaic.toml` of `n` new agents,
then (timed apart) the same `up` again, which has nothing to do; `n` `mosaic-launcher`
processes, 8 at a time (a shell's `xargs -P8`); `n` bare `new-session`s chained in one tmux
call, each pane the shell and agent ours run (no sidecar, no transcript, no verdict): what tmux
alone costs any launcher built on it, the floor; and, when `pm2` is installed, `pm2 start` of
an ecosystem file of the same `n` agents. Every agent runs `sleep 600`. Ours get a tmux server of
their own per round (with a keeper session, as a fleet's server has) and a heartbeat directory
on tmpfs; the server is killed after the round, outside the timing (each pane's death ends its
sidecar). pm2's daemon is started before the rounds (`pm2 ping`), as a warm tmux server is,
and its apps deleted after each.

Last, one `up` of `large` new agents, timed once, for the record.
*/

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::report::{self, Row, Target, Values};
use super::{millis, step};
use crate::procfs;
use crate::util::{self, Result, TempDir, TmuxServer};

/// What the agents run.
const AGENT_COMMAND: &str = "sleep 600";

/// How many launchers run at once in the launcher yardstick.
const PARALLEL: usize = 8;

pub struct UpResults {
    /// Agents per round.
    pub n: usize,
    /// `mosaic-fleet up` of `n` new agents (ms).
    pub up: Vec<f64>,
    /// The same `up` again, nothing to do (ms).
    pub noop: Vec<f64>,
    /// `n` `mosaic-launcher`s, 8 at a time (ms).
    pub launchers: Vec<f64>,
    /// `n` bare `new-session`s chained in one tmux call (ms): the floor.
    pub bare: Vec<f64>,
    /// `pm2 start` of an ecosystem of `n` (ms), or why not.
    pub pm2: Values,
    /// Agents in the large `up`.
    pub large: usize,
    /// `mosaic-fleet up` of `large` new agents, once (ms).
    pub up_large: Values,
}

/// Where one round's fleet lives: a tmux server with a keeper, a heartbeat dir, a HOME.
struct Place {
    // Dropped first: the panes die, and with them their sidecars, before the dirs go.
    _server: TmuxServer,
    tmp: TempDir,
    hb: TempDir,
    socket: String,
}

impl Place {
    fn new(tag: &str) -> Result<Place> {
        let tmp = TempDir::new(tag)?;
        let hb = tmpfs_or(&tmp, tag)?;
        let socket = format!("mosaic-bench-{tag}-{}", std::process::id());
        let server = TmuxServer(socket.clone());
        std::fs::create_dir_all(tmp.path().join("home"))
            .map_err(|e| format!("cannot create a HOME: {e}"))?;
        let place = Place {
            _server: server,
            tmp,
            hb,
            socket,
        };
        let mut keeper = Command::new("tmux");
        place
            .env(&mut keeper)
            .args(["-L", &place.socket, "-f", "/dev/null"])
            .args(["new-session", "-d", "-s", "keeper", "sleep", "100000"]);
        util::run(&mut keeper)?;
        Ok(place)
    }

    /// A clean environment for anything run here: our HOME, no `TMUX`, no `MOSAIC_*`.
    fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MOSAIC_") || key == "TMUX" {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.tmp.path().join("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
    }

    /// Ends the place (its server killed: each pane's death ends its sidecar and transcript
    /// writer) and waits until none of its processes is left, so that the next measurement
    /// does not share the machine with this one's aftermath (a hundred sidecars writing their
    /// final records, a hundred writers closing). Outside the timing.
    fn close(self) {
        let Place {
            _server,
            tmp,
            hb,
            socket,
        } = self;
        drop(_server);
        let ours = |p: &procfs::Process| p.args.iter().any(|a| a.contains(&socket));
        let quiet = util::wait_for(Duration::from_secs(15), || {
            (!procfs::processes().iter().any(ours)).then_some(())
        });
        if quiet.is_none() {
            procfs::end(ours);
        }
        // Last: a sidecar's final record would otherwise make its directory again.
        drop((tmp, hb));
    }

    fn write_file(&self, n: usize) -> Result<PathBuf> {
        let mut text = format!(
            "[fleet]\nsocket = \"{}\"\nhb_dir = \"{}\"\n\n[defaults]\ncommand = \"{AGENT_COMMAND}\"\n",
            self.socket,
            self.hb.path().display()
        );
        for i in 0..n {
            text += &format!("\n[agents.a{i:04}]\n");
        }
        let path = self.tmp.path().join("mosaic.toml");
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Milliseconds of `mosaic-fleet up -f FILE`, which must succeed.
    fn up(&self, bin: &Path, file: &Path) -> Result<f64> {
        let mut cmd = Command::new(bin.join("mosaic-fleet"));
        self.env(&mut cmd).arg("up").arg("-f").arg(file);
        timed(&mut cmd)
    }

    /// Milliseconds of `n` bare sessions, chained in one tmux call, each pane running
    /// `/bin/sh -c "exec sleep 600"` as ours do: tmux's own share of any launch.
    fn bare(&self, n: usize) -> Result<f64> {
        let mut cmd = Command::new("tmux");
        self.env(&mut cmd).args(["-L", &self.socket]);
        for i in 0..n {
            if i > 0 {
                cmd.arg(";");
            }
            cmd.args([
                "new-session",
                "-d",
                "-s",
                &format!("b{i:04}"),
                "/bin/sh",
                "-c",
            ])
            .arg(format!("exec {AGENT_COMMAND}"));
        }
        timed(&mut cmd)
    }

    /// Milliseconds of `n` launchers, [`PARALLEL`] at a time.
    fn launchers(&self, bin: &Path, n: usize) -> Result<f64> {
        let start = Instant::now();
        let mut running: Vec<(Child, Command)> = Vec::new();
        let mut next = 0;
        while next < n || !running.is_empty() {
            while next < n && running.len() < PARALLEL {
                let mut cmd = Command::new(bin.join("mosaic-launcher"));
                self.env(&mut cmd)
                    .arg(format!("l{next:04}"))
                    .env("MOSAIC_TMUX_SOCKET", &self.socket)
                    .env("MOSAIC_HEARTBEAT_RUN_DIR", self.hb.path())
                    .env("MOSAIC_AGENT_COMMAND", AGENT_COMMAND)
                    .env("MOSAIC_AGENT_WORKDIR", self.tmp.path());
                let child = cmd
                    .spawn()
                    .map_err(|e| format!("cannot run {}: {e}", util::show(&cmd)))?;
                running.push((child, cmd));
                next += 1;
            }
            // The oldest first: they finish in about the order they started.
            let (child, cmd) = running.remove(0);
            let out = child
                .wait_with_output()
                .map_err(|e| format!("cannot wait for {}: {e}", util::show(&cmd)))?;
            if !out.status.success() {
                return Err(format!(
                    "`{}` failed: {}",
                    util::show(&cmd),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(millis(start.elapsed()))
    }
}

/// A heartbeat directory on tmpfs, as production keeps them, else in `tmp`.
fn tmpfs_or(tmp: &TempDir, tag: &str) -> Result<TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = shm.join(format!("mosaic-bench-{tag}-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            return Ok(TempDir(dir));
        }
    }
    let dir = tmp.path().join("hb");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(TempDir(dir))
}

/// Milliseconds of `cmd`, spawn to exit; it must succeed.
fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", util::show(cmd)))?;
    let ms = millis(start.elapsed());
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            util::show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(ms)
}

/// pm2, when installed: its home in a temp dir, its daemon started, an ecosystem of `n`.
struct Pm2 {
    home: TempDir,
    eco: PathBuf,
}

impl Pm2 {
    fn start(n: usize) -> Option<Pm2> {
        let home = TempDir::new("pm2").ok()?;
        let eco = home.path().join("ecosystem.config.js");
        let mut text = String::from("module.exports = { apps: [\n");
        for i in 0..n {
            text += &format!(
                "  {{ name: \"p{i:04}\", script: \"/bin/sleep\", args: \"600\", interpreter: \"none\", autorestart: false }},\n"
            );
        }
        text += "] };\n";
        std::fs::write(&eco, text).ok()?;
        let pm2 = Pm2 { home, eco };
        // The daemon, warm before the rounds (as the tmux server is).
        pm2.run(&["ping"]).ok()?;
        Some(pm2)
    }

    fn run(&self, args: &[&str]) -> Result<f64> {
        let mut cmd = Command::new("pm2");
        cmd.args(args)
            .env("PM2_HOME", self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        timed(&mut cmd)
    }

    fn round(&self) -> Result<f64> {
        let eco = self.eco.to_string_lossy().into_owned();
        let ms = self.run(&["start", &eco])?;
        self.run(&["delete", "all"])?;
        Ok(ms)
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        let _ = self.run(&["kill"]);
    }
}

pub fn measure(bin: &Path, n: usize, rounds: usize, large: usize) -> Result<UpResults> {
    let pm2 = Pm2::start(n);
    let mut r = UpResults {
        n,
        up: Vec::new(),
        noop: Vec::new(),
        launchers: Vec::new(),
        bare: Vec::new(),
        pm2: match &pm2 {
            Some(_) => Values::Samples(Vec::new()),
            None => Values::Unavailable("pm2 is not installed (npm install -g pm2)".into()),
        },
        large,
        up_large: Values::Absent,
    };
    // One uncounted round of ours first: the page cache, tmux's first server.
    let place = Place::new("up-warm")?;
    place.up(bin, &place.write_file(n)?)?;
    place.close();
    for round in 0..rounds {
        for which in (0..4).map(|k| (k + round) % 4) {
            match which {
                0 => {
                    let place = Place::new("up")?;
                    let file = place.write_file(n)?;
                    r.up.push(place.up(bin, &file)?);
                    r.noop.push(place.up(bin, &file)?);
                    place.close();
                }
                1 => {
                    let place = Place::new("launchers")?;
                    r.launchers.push(place.launchers(bin, n)?);
                    place.close();
                }
                2 => {
                    let place = Place::new("bare")?;
                    r.bare.push(place.bare(n)?);
                    place.close();
                }
                _ => {
                    if let (Some(pm2), Values::Samples(v)) = (&pm2, &mut r.pm2) {
                        v.push(pm2.round()?);
                    }
                }
            }
        }
    }
    drop(pm2);
    step(&format!("mosaic-fleet up of {large} new agents, once"));
    let place = Place::new("up-large")?;
    r.up_large = Values::Samples(vec![place.up(bin, &place.write_file(large)?)?]);
    place.close();
    Ok(r)
}

impl UpResults {
    fn row(&self, what: String, ours: &[f64], baseline: Values) -> Row {
        Row {
            what,
            ours: Values::Samples(ours.to_vec()),
            compare: !matches!(baseline, Values::Absent),
            baseline,
        }
    }

    /// Its rows: `up` against the launchers, against pm2; the no-op `up`; the large `up`.
    pub fn rows(&self) -> Vec<Row> {
        let n = self.n;
        vec![
            self.row(
                format!("`mosaic-fleet up`, {n} new agents; baseline {n} launchers, {PARALLEL} at a time (ms)"),
                &self.up,
                Values::Samples(self.launchers.clone()),
            ),
            self.row(
                format!("`mosaic-fleet up`, {n} new agents; baseline `pm2 start` of {n} (ms)"),
                &self.up,
                self.pm2.clone(),
            ),
            self.row(
                format!("tmux alone: {n} bare `new-session`s chained in one call, the floor; baseline `pm2 start` of {n} (ms)"),
                &self.bare,
                self.pm2.clone(),
            ),
            self.row(
                format!("`mosaic-fleet up` with nothing to do, {n} running (ms)"),
                &self.noop,
                Values::Absent,
            ),
            Row {
                what: format!("`mosaic-fleet up`, {} new agents, once (ms)", self.large),
                ours: self.up_large.clone(),
                baseline: Values::Absent,
                compare: false,
            },
        ]
    }

    pub fn targets(&self) -> Vec<Target> {
        let rows = self.rows();
        let ratio = |goal: String, ratio: Option<f64>, limit: f64| Target {
            goal,
            measured: ratio.map(report::times),
            met: ratio.map(|x| x <= limit),
        };
        let n = self.n;
        let noop = Values::Samples(self.noop.clone()).median();
        let up = Values::Samples(self.up.clone()).median();
        let mut targets = vec![ratio(
            format!(
                "`mosaic-fleet up` of {n} new agents ≤ 0.5× {n} launchers {PARALLEL} at a time"
            ),
            rows[0].ratio(),
            0.5,
        )];
        targets.push(match &self.pm2 {
            Values::Unavailable(why) => Target {
                goal: format!("`mosaic-fleet up` of {n} ≤ 0.25× `pm2 start` of {n}"),
                measured: Some(format!("unavailable ({why})")),
                met: None,
            },
            _ => {
                let mut target = ratio(
                    format!("`mosaic-fleet up` of {n} ≤ 0.25× `pm2 start` of {n}"),
                    rows[1].ratio(),
                    0.25,
                );
                // What tmux alone takes of pm2's time: no launcher on tmux goes below it.
                if let (Some(measured), Some(floor)) = (&mut target.measured, rows[2].ratio()) {
                    *measured += &format!(
                        " (tmux's own {n} bare sessions, the floor: {})",
                        report::times(floor)
                    );
                }
                target
            }
        });
        targets.push(ratio(
            format!("`mosaic-fleet up` with nothing to do ≤ 0.15× the first `up` of {n}"),
            noop.zip(up).map(|(a, b)| a / b),
            0.15,
        ));
        targets
    }

    pub fn method(&self) -> String {
        format!(
            "`mosaic-fleet up`: wall-clock time of `mosaic-fleet up -f mosaic.toml` (spawn to \
             exit) starting {n} new agents (`{AGENT_COMMAND}`, each with its sidecar, heartbeat \
             files on tmpfs) on a tmux server of their own with a keeper session, then of the \
             same `up` again with nothing to do. In the same rounds: {n} `mosaic-launcher` \
             processes, {PARALLEL} at a time, on a server of their own; {n} bare `tmux \
             new-session -d -s NAME /bin/sh -c \"exec {AGENT_COMMAND}\"` chained with `;` in one \
             tmux call on a server of their own with a keeper (the pane as ours run it, without \
             sidecar, transcript or verdict: what tmux alone costs); and `pm2 start` of an \
             ecosystem file of {n} apps (`/bin/sleep 600`, no interpreter, no autorestart) \
             with its daemon started beforehand (`pm2 ping`), when pm2 is installed. {} rounds \
             after one uncounted `up`, the order rotating each round; servers are killed and pm2 \
             apps deleted between rounds, and each server's processes (sidecars, writers) waited for until \
             none is left, outside the timing. Last, one `up` of {} new agents.",
            self.up.len(),
            self.large,
            n = self.n,
        )
    }
}
