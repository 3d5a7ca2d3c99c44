/*!
`cargo xtask demo [--keep]`: the operator's loop, shown on a private tmux socket.

It says what it builds while it builds, then starts two harmless agents with `mosaic-fleet
start` (one of them leaves a background child, as agents' tool servers do), lists the fleet,
shows one agent's output, stops the other (its child goes with it, its record says
`stopped`), and lists the fleet again. It ends by printing the `mosaic-fleet` commands to look
around: with `--keep` the fleet stays up for them; without, everything is removed (also when a
step fails) and the commands say how to keep it next time.
*/

use std::path::Path;
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

pub fn run(args: &Args) -> Result {
    eprintln!(
        "xtask: building mosaic-launcher, mosaic-fleet and mosaic-hb (release, static; the first \
         build takes a few minutes)"
    );
    util::build_release()?;
    let bin = util::release_dir();
    let socket = format!("mosaic-demo-{}", std::process::id());
    let server = TmuxServer(socket.clone());
    let tmp = TempDir::new("demo")?;
    let hb_dir = tmp.path().join("heartbeat");
    let fleet_bin = bin.join("mosaic-fleet");
    let fleet = |args: &[&str]| {
        let mut cmd = Command::new(&fleet_bin);
        cmd.args(args)
            .env("MOSAIC_TMUX_SOCKET", &socket)
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &hb_dir)
            .env("MOSAIC_HEARTBEAT_INTERVAL", "1")
            .env("MOSAIC_AGENT_WORKDIR", tmp.path())
            .env_remove("TMUX");
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
    for (agent, command) in AGENTS {
        step(&format!("mosaic-fleet start {agent} --command {command:?}"));
        print!(
            "{}",
            util::output(fleet(&["start", agent]).env("MOSAIC_AGENT_COMMAND", command))?
        );
    }
    for (agent, _) in AGENTS {
        let file = hb_dir.join(format!("{agent}.hb"));
        util::wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|t| t.contains("status=ok"))
        })
        .ok_or_else(|| format!("no heartbeat at {} within 5 s", file.display()))?;
    }
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
    let env = format!(
        "MOSAIC_TMUX_SOCKET={socket} MOSAIC_HEARTBEAT_RUN_DIR={}",
        quote(&hb_dir)
    );
    let f = quote(&fleet_bin);
    let commands = [
        format!("export {env}"),
        format!("{f} ls                 # the fleet, live agents first"),
        format!("{f} logs builder -n 20 # its last output"),
        format!("{f} attach builder     # its terminal (detach: Ctrl-b d)"),
        format!("{f} restart builder    # stop, then start with the same configuration"),
        format!("{f} stop --all         # SIGTERM, grace, SIGKILL; records say stopped"),
        format!("{f} prune              # remove the records of agents gone"),
        format!(
            "{} status                # the tmux-free view",
            quote(&bin.join("mosaic-hb"))
        ),
    ];
    if args.keep {
        step("kept: the fleet is still running; look around with");
        for line in &commands {
            println!("  {line}");
        }
        println!(
            "  # when done:\n  {f} stop --all; tmux -L {socket} kill-server; rm -rf {}",
            quote(tmp.path())
        );
        // Keep them: no kill-server, no removal.
        std::mem::forget(server);
        std::mem::forget(tmp);
    } else {
        step("cleaned up: tmux server killed, temp dir removed");
        println!("`cargo xtask demo --keep` leaves the fleet running to try these:");
        for line in &commands[1..] {
            println!("  {line}");
        }
    }
    Ok(())
}

fn step(what: &str) {
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
