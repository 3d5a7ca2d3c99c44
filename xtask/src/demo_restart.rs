/*!
`cargo xtask demo-restart`: supervision, shown on a private tmux socket in about 30 seconds.

First one agent that crashes (exit 3) two seconds after each start, under `--restart
on-failure` with the default delays and guard: each record as it changes (ok, restarting with
its due time, ok again with `restarts=` one higher, finally `failed`), restarted after 1, 2 and
4 s (the guard does not space one agent's own restarts). Then the guard itself: three agents
that die at the same instant (a shared login token expired) come back one per guard period
(`--restart-guard 2` here, 10 s by default), not all at once. Then `mosaic-hb status`, and
clean up (even when a step fails).
*/

use std::process::Command;
use std::time::{Duration, Instant};

use crate::demo::{step, Stage};
use crate::util::{self, Result};

pub fn run() -> Result {
    let stage = Stage::new("demo-restart", "building release binaries")?;
    let hb_dir = &stage.hb_dir;
    let agent = "crashy";
    let file = hb_dir.join(format!("{agent}.hb"));
    let flags = ["--restart", "on-failure", "--restart-burst", "4"];
    step(&format!(
        "mosaic-launcher {agent} {}   (an agent that exits 3 after 2 s)",
        flags.join(" ")
    ));
    let mut launch = stage.command("mosaic-launcher", "0.5");
    launch.arg(agent).args(flags).env(
        "MOSAIC_AGENT_COMMAND",
        "sh -c 'echo working; sleep 2; echo crashing; exit 3'",
    );
    print!("{}", util::output(&mut launch)?);

    step("the record, each time its status or restart count changes");
    let start = Instant::now();
    let mut last = String::new();
    let gave_up = util::wait_for(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&file).ok()?;
        let key = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("-")
                .to_string()
        };
        let now = format!(
            "status={:<10} pid={:<7} restarts={} exit_status={} restart_at={}",
            key("status="),
            key("pid="),
            key("restarts="),
            key("exit_status="),
            key("restart_at="),
        );
        let changed = {
            let summary = format!("{} {} {}", key("status="), key("pid="), key("restarts="));
            let changed = summary != last;
            last = summary;
            changed
        };
        if changed {
            println!("{:>5.1}s  {now}", start.elapsed().as_secs_f64());
        }
        (key("status=") == "failed").then_some(text)
    })
    .ok_or_else(|| format!("{} did not say status=failed within 60 s", file.display()))?;
    step(&format!("{}: given up", file.display()));
    print!("{gave_up}");

    the_guard(&stage)?;

    step("mosaic-hb status");
    let mut status = Command::new(stage.bin.join("mosaic-hb"));
    status.arg("status").arg(hb_dir);
    match util::output(&mut status) {
        Ok(out) => print!("{out}"),
        Err(e) => println!("(status not available: {e})"),
    }
    step("cleaned up: tmux server killed, temp dir removed");
    Ok(())
}

/// Three agents that die at one instant, restarted one per guard period.
fn the_guard(stage: &Stage) -> Result {
    let agents = ["token-1", "token-2", "token-3"];
    let expired = stage.tmp.path().join("token-expired");
    // Each dies when the token expires, and once restarted, lives on.
    let command = "sh -c 'if [ -e restarted-$0 ]; then exec sleep 600; fi; \
        while [ ! -e token-expired ]; do sleep 0.05; done; : > restarted-$0; exit 1'";
    let flags = ["--restart", "on-failure", "--restart-guard", "2"];
    step(&format!(
        "mosaic-launcher token-N {}   (three agents that exit 1 when a shared token expires)",
        flags.join(" ")
    ));
    for agent in agents {
        let mut launch = stage.command("mosaic-launcher", "0.5");
        launch
            .arg(agent)
            .args(flags)
            .env("MOSAIC_AGENT_COMMAND", command.replace("$0", agent));
        print!("{}", util::output(&mut launch)?);
    }
    step("the token expires: all three die at once; when each runs again");
    std::fs::write(&expired, b"")
        .map_err(|e| format!("cannot write {}: {e}", expired.display()))?;
    let start = Instant::now();
    let mut back = Vec::new();
    util::wait_for(Duration::from_secs(30), || {
        for agent in agents {
            if back.contains(&agent) {
                continue;
            }
            let file = stage.hb_dir.join(format!("{agent}.hb"));
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let restarted = text.lines().any(|l| l == "restarts=1");
            if restarted && text.lines().any(|l| l == "status=ok") {
                println!(
                    "{:>5.1}s  {agent} runs again",
                    start.elapsed().as_secs_f64()
                );
                back.push(agent);
            }
        }
        (back.len() == agents.len()).then_some(())
    })
    .ok_or("the three agents did not all run again within 30 s")?;
    println!("one per guard period (2 s): a fleet does not come back in the same second");
    Ok(())
}
