/*!
`cargo xtask demo`: the main job, shown on a private tmux socket. Starts one agent running a
harmless command, shows its heartbeat file saying `status=ok` and advancing, ends the agent,
shows `status=exited`, and cleans up (even when a step fails).
*/

use std::process::Command;
use std::time::Duration;

use crate::util::{self, Result, TempDir, TmuxServer};

pub fn run() -> Result {
    util::build_release()?;
    let bin = util::release_dir();
    let socket = format!("mosaic-demo-{}", std::process::id());
    let _server = TmuxServer(socket.clone());
    let tmp = TempDir::new("demo")?;
    let hb_dir = tmp.path().join("heartbeat");
    let agent = "demo-agent";
    let file = hb_dir.join(format!("{agent}.hb"));

    step(&format!(
        "mosaic-launcher {agent}   (socket {socket}, heartbeat every 0.5 s)"
    ));
    let launch = |extra: &[&str]| {
        let mut cmd = Command::new(bin.join("mosaic-launcher"));
        cmd.arg(agent)
            .args(extra)
            .env("MOSAIC_TMUX_SOCKET", &socket)
            .env("MOSAIC_AGENT_WORKDIR", tmp.path())
            .env(
                "MOSAIC_AGENT_COMMAND",
                "sh -c 'while :; do date; sleep 1; done'",
            )
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &hb_dir)
            .env("MOSAIC_HEARTBEAT_INTERVAL", "0.5")
            .env_remove("TMUX");
        util::output(&mut cmd)
    };
    print!("{}", launch(&[])?);

    for n in 1..=2 {
        let text = util::wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|t| t.contains("status=ok"))
        })
        .ok_or_else(|| format!("no heartbeat at {} within 5 s", file.display()))?;
        step(&format!("{} (read {n})", file.display()));
        print!("{text}");
        std::thread::sleep(Duration::from_millis(1100));
    }

    step("mosaic-launcher again: idempotent");
    print!("{}", launch(&[])?);

    step("mosaic-hb status");
    let mut status = Command::new(bin.join("mosaic-hb"));
    status.arg("status").arg(&hb_dir);
    match util::output(&mut status) {
        Ok(out) => print!("{out}"),
        Err(e) => println!("(status not available: {e})"),
    }

    step(&format!(
        "tmux -L {socket} kill-session -t ={agent}   (the agent ends)"
    ));
    util::output(Command::new("tmux").args([
        "-L",
        &socket,
        "kill-session",
        "-t",
        &format!("={agent}"),
    ]))?;
    let text = util::wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("status=exited"))
    })
    .ok_or_else(|| format!("{} did not say status=exited within 5 s", file.display()))?;
    step(&file.display().to_string());
    print!("{text}");
    step("cleaned up: tmux server killed, temp dir removed");
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}
