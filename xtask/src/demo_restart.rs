/*!
`cargo xtask demo-restart`: supervision, shown on a private tmux socket in about 20 seconds.
Starts an agent that crashes (exit 3) two seconds after each start, under `--restart
on-failure` with short limits; prints each record as it changes (ok, restarting with its due
time, ok again with `restarts=` one higher, and finally `failed`), then `mosaic-hb status`, and
cleans up (even when a step fails).
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
    let flags = [
        "--restart",
        "on-failure",
        "--restart-delay",
        "1",
        "--restart-burst",
        "4",
        "--restart-guard",
        "0",
    ];
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
