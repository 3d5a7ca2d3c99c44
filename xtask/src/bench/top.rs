/*!
The bench's measurement of `mosaic-fleet top`: the share of one core it takes over the running
fleet (its idle agents beating), shown in an 80x24 pane of a tmux server of its own, as an
operator would leave it open. What it spends in its tmux calls counts (they are its children,
reaped); what the fleet's tmux server spends answering them does not.
*/

use std::process::Command;
use std::time::{Duration, Instant};

use super::fleet::Fleet;
use super::report::Values;
use crate::procfs;
use crate::util::Result;

/// Time for top to start and draw before the first window.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The terminal's tmux server, ended on drop.
struct Terminal {
    socket: String,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

impl Terminal {
    fn tmux(&self, args: &[&std::ffi::OsStr]) -> std::io::Result<std::process::Output> {
        Command::new("tmux")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server".as_ref()]);
    }
}

/// Percent of one core used by `mosaic-fleet top` in each of `windows` windows of `window`.
pub fn cpu(
    fleet: &Fleet,
    bin: &std::path::Path,
    cpu: &procfs::Cpu,
    windows: usize,
    window: Duration,
) -> Result<Values> {
    let top = fleet.fleet_cli(bin);
    let env: Vec<_> = top
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let term = Terminal {
        socket: format!("{}-top", fleet.socket),
        env,
    };
    // `env` passes the fleet's variables and execs top: the pane's process is top itself.
    let mut args: Vec<std::ffi::OsString> = ["new-session", "-d", "-x", "80", "-y", "24"]
        .map(Into::into)
        .into();
    args.push("env".into());
    for (key, value) in &term.env {
        let mut pair = key.clone();
        pair.push("=");
        pair.push(value);
        args.push(pair);
    }
    args.push(top.get_program().to_owned());
    args.push("top".into());
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let out = term
        .tmux(&refs)
        .map_err(|e| format!("cannot run tmux for top: {e}"))?;
    if !out.status.success() {
        return Ok(Values::Unavailable(format!(
            "tmux new-session for top failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let out = term
        .tmux(&["display-message", "-p", "#{pane_pid}"].map(std::ffi::OsStr::new))
        .map_err(|e| format!("cannot run tmux for top: {e}"))?;
    let Ok(pid) = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>() else {
        return Ok(Values::Unavailable("no pane pid for top".into()));
    };
    std::thread::sleep(SETTLE);
    let mut samples = Vec::new();
    for _ in 0..windows {
        let (Some(before), start) = (cpu.used_ns(pid), Instant::now()) else {
            return Ok(Values::Unavailable("top is gone".into()));
        };
        std::thread::sleep(window);
        let Some(after) = cpu.used_ns(pid) else {
            return Ok(Values::Unavailable("top is gone".into()));
        };
        let wall = start.elapsed().as_nanos() as f64;
        samples.push(after.saturating_sub(before) as f64 * 100.0 / wall);
    }
    Ok(Values::Samples(samples))
}
