/*!
`cargo xtask demo [--keep]`: the operator's loop, shown on a private tmux socket.

It says what it builds while it builds, then writes a fleet file (`mosaic.toml`) with two
harmless agents (one of them leaves a background child, as agents' tool servers do), shows the
plan (`mosaic-fleet diff`), starts them (`mosaic-fleet up`), changes one key and shows that only
that agent is restarted and why, lists the fleet,
shows one agent's output, stops the other (its child goes with it, its record says
`stopped`), and lists the fleet again. It ends by printing the `mosaic-fleet` commands to look
around: with `--keep` the fleet stays up for them; without, everything is removed (also when a
step fails) and the commands say how to keep it next time.
*/

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{self, Result, TempDir, TmuxServer};

#[derive(clap::Args)]
pub struct Args {
    /// Leave the demo fleet running (its socket, heartbeat dir and agents) to explore it with
    /// the commands printed at the end.
    #[arg(long)]
    keep: bool,
}

/// The agents: a builder that prints a line a second, and a reviewer that leaves a child in
/// the background (`sleep 1000 &`) before it settles.
const AGENTS: [(&str, &str); 2] = [
    (
        "builder",
        "sh -c 'i=0; while :; do i=$((i+1)); echo \"builder: step $i\"; sleep 1; done'",
    ),
    (
        "reviewer",
        "sh -c 'sleep 1000 & echo \"reviewer: started a helper, pid $!\"; while :; do sleep 1; done'",
    ),
];

/// What each demo stands on: the release binaries, built; a tmux server on a private socket;
/// a heartbeat dir in a temp dir. On drop the temp dir is removed, then the server killed.
pub struct Stage {
    pub bin: PathBuf,
    pub socket: String,
    pub hb_dir: PathBuf,
    pub tmp: TempDir,
    _server: TmuxServer,
}

impl Stage {
    /// Says `building` (what is built and how long it takes), builds, and sets up a stage
    /// whose socket and temp dir are named after `tag`.
    pub fn new(tag: &str, building: &str) -> Result<Stage> {
        eprintln!("xtask: {building}");
        util::build_release()?;
        let socket = format!("mosaic-{tag}-{}", std::process::id());
        let server = TmuxServer(socket.clone());
        let tmp = TempDir::new(tag)?;
        Ok(Stage {
            bin: util::release_dir(),
            socket,
            hb_dir: tmp.path().join("heartbeat"),
            tmp,
            _server: server,
        })
    }

    /// Release binary `name`, run on this stage: its socket and heartbeat dir, a beat every
    /// `interval` seconds, the temp dir as the agents' workdir, outside any tmux.
    pub fn command(&self, name: &str, interval: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.env("MOSAIC_TMUX_SOCKET", &self.socket)
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &self.hb_dir)
            .env("MOSAIC_HEARTBEAT_INTERVAL", interval)
            .env("MOSAIC_AGENT_WORKDIR", self.tmp.path())
            .env_remove("TMUX");
        cmd
    }
}

pub fn run(args: &Args) -> Result {
    let stage = Stage::new(
        "demo",
        "building mosaic-launcher, mosaic-fleet and mosaic-hb (release, static; the first build \
         takes a few minutes)",
    )?;
    let Stage {
        socket,
        hb_dir,
        tmp,
        ..
    } = &stage;
    let fleet = |args: &[&str]| {
        let mut cmd = stage.command("mosaic-fleet", "1");
        cmd.args(args);
        cmd
    };
    let show = |args: &[&str]| -> Result {
        step(&format!("mosaic-fleet {}", args.join(" ")));
        print!("{}", util::output(&mut fleet(args))?);
        Ok(())
    };
    println!(
        "A private fleet: tmux socket {socket}, heartbeat dir {}",
        hb_dir.display()
    );
    // The fleet file: the fleet's place, defaults, and the agents.
    let file = tmp.path().join("mosaic.toml");
    let write_file = |reviewer_interval: &str| -> Result {
        let text = fleet_file(socket, reviewer_interval);
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))
    };
    write_file("1")?;
    step("cat mosaic.toml");
    print!("{}", fleet_file(socket, "1"));
    let plan = |cmd: &mut Command| -> Result<String> {
        // `diff` exits 3 when `up` would change something: the answer, not a failure.
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", util::show(cmd)))?;
        match out.status.code() {
            Some(0 | 3) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            _ => Err(format!(
                "`{}` failed ({}): {}",
                util::show(cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    };
    let in_tmp = |args: &[&str]| {
        let mut cmd = fleet(args);
        cmd.current_dir(tmp.path());
        cmd
    };
    step("mosaic-fleet diff");
    print!("{}", plan(&mut in_tmp(&["diff"]))?);
    step("mosaic-fleet up");
    print!("{}", util::output(&mut in_tmp(&["up"]))?);
    for (agent, _) in AGENTS {
        let file = hb_dir.join(format!("{agent}.hb"));
        util::wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|t| t.contains("status=ok"))
        })
        .ok_or_else(|| format!("no heartbeat at {} within 5 s", file.display()))?;
    }
    step("mosaic-fleet up  # again: nothing to do, nothing touched");
    print!("{}", util::output(&mut in_tmp(&["up"]))?);
    write_file("2")?;
    step("edit mosaic.toml: the reviewer's hb_interval = 2");
    step("mosaic-fleet diff");
    print!("{}", plan(&mut in_tmp(&["diff"]))?);
    step("mosaic-fleet up");
    print!("{}", util::output(&mut in_tmp(&["up"]))?);
    // A few lines of output to show.
    std::thread::sleep(Duration::from_millis(2500));
    show(&["ls"])?;
    show(&["logs", "builder", "-n", "3"])?;
    show(&["stop", "reviewer", "--grace", "2"])?;
    show(&["ls"])?;
    let record = hb_dir.join("reviewer.hb");
    step(&format!("cat {}", record.display()));
    print!(
        "{}",
        std::fs::read_to_string(&record)
            .map_err(|e| format!("cannot read {}: {e}", record.display()))?
    );
    try_these(stage, args.keep);
    Ok(())
}

/// The commands to try next; with `--keep`, the fleet is left running for them.
fn try_these(stage: Stage, keep: bool) {
    let Stage {
        bin,
        socket,
        hb_dir,
        tmp,
        ..
    } = &stage;
    let fleet_bin = bin.join("mosaic-fleet");
    let env = format!(
        "MOSAIC_TMUX_SOCKET={socket} MOSAIC_HEARTBEAT_RUN_DIR={}",
        quote(hb_dir)
    );
    let f = quote(&fleet_bin);
    let commands = [
        format!("export {env}"),
        format!(
            "cd {}; {f} diff        # the fleet file against what runs",
            quote(tmp.path())
        ),
        format!(
            "{f} up                 # converge: start, restart what changed, touch nothing else"
        ),
        format!("{f} down               # stop the file's agents"),
        format!("{f} ls                 # the fleet, live agents first"),
        format!("{f} logs builder -n 20 # its last output"),
        format!("{f} logs builder -f    # then its output as it comes (Ctrl-C to stop)"),
        format!("{f} attach builder     # its terminal (detach: Ctrl-b d)"),
        format!("{f} restart builder    # stop, then start with the same configuration"),
        format!("{f} stop --all         # SIGTERM, grace, SIGKILL; records say stopped"),
        format!("{f} prune              # remove the records of agents gone"),
        format!(
            "{} status                # the tmux-free view",
            quote(&bin.join("mosaic-hb"))
        ),
    ];
    if keep {
        step("kept: the fleet is still running; look around with");
        for line in &commands {
            println!("  {line}");
        }
        println!(
            "  # when done:\n  {f} stop --all; tmux -L {socket} kill-server; rm -rf {}",
            quote(tmp.path())
        );
        // Keep them: no kill-server, no removal.
        std::mem::forget(stage);
    } else {
        step("cleaned up: tmux server killed, temp dir removed");
        println!("`cargo xtask demo --keep` leaves the fleet running to try these:");
        for line in &commands[1..] {
            println!("  {line}");
        }
    }
}

/// The demo's fleet file; the reviewer's heartbeat interval is what the demo changes.
fn fleet_file(socket: &str, reviewer_interval: &str) -> String {
    let [(builder, builder_cmd), (reviewer, reviewer_cmd)] = AGENTS;
    format!(
        "[fleet]\nsocket = \"{socket}\"\nhb_dir = \"heartbeat\"  # relative to this file\n\n\
         [defaults]\nhb_interval = 1\nrestart = \"on-failure\"\n\n\
         [agents.{builder}]\ncommand = {}\nlabels = {{ role = \"build\" }}\n\n\
         [agents.{reviewer}]\ncommand = {}\nhb_interval = {reviewer_interval}\nenv = {{ REVIEW_DEPTH = \"2\" }}\n",
        toml_quote(builder_cmd),
        toml_quote(reviewer_cmd)
    )
}

/// A TOML basic string.
fn toml_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn step(what: &str) {
    println!("\n== {what}");
}

/// A path for a shell line the user may paste: single-quoted unless plainly safe.
fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b))
    {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
