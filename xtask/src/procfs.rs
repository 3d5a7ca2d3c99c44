/*!
What xtask reads from `/proc` (CPU time, memory, argv, parentage, executables), and how the
bench ends the processes it started: by pid, with `kill`, never by name.
*/

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util;

/// One process: its pid and argv.
pub struct Process {
    pub pid: u32,
    pub args: Vec<String>,
}

/// Every live (not zombie) process and its argv, in one pass over `/proc`.
pub fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.state != 'Z'))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Process { pid, args })
        })
        .collect()
}

/// The fields of `/proc/PID/stat` the bench uses; times in clock ticks.
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    /// Start time, in clock ticks after boot.
    pub start: u64,
}

pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: num(1)? as u32,
        utime: num(11)?,
        stime: num(12)?,
        cutime: num(13)?,
        cstime: num(14)?,
        start: num(19)?,
    })
}

/// CPU time a process has used, itself plus the children it has reaped.
pub struct Cpu {
    /// Clock ticks per second, from `getconf CLK_TCK`.
    pub ticks_per_sec: u64,
    /// Whether `/proc/PID/schedstat` gives the process's own time in nanoseconds.
    pub schedstat: bool,
}

impl Cpu {
    pub fn probe() -> util::Result<Cpu> {
        let text = util::output(Command::new("getconf").arg("CLK_TCK"))?;
        let ticks_per_sec = text
            .trim()
            .parse()
            .map_err(|_| format!("`getconf CLK_TCK` printed {text:?}, not a number"))?;
        let schedstat = schedstat_ns(std::process::id()).is_some();
        Ok(Cpu {
            ticks_per_sec,
            schedstat,
        })
    }

    /// Nanoseconds of CPU used by `pid` and its reaped children. The process's own share comes
    /// from `schedstat` when the kernel has it: a beat of ours costs far less than one 10 ms
    /// tick, so tick counts alone would round a whole window to 0 or 1.
    pub fn used_ns(&self, pid: u32) -> Option<u64> {
        let s = stat(pid)?;
        let tick = 1_000_000_000 / self.ticks_per_sec;
        let own = match self.schedstat {
            true => schedstat_ns(pid)?,
            false => (s.utime + s.stime) * tick,
        };
        Some(own + (s.cutime + s.cstime) * tick)
    }
}

/// How many times `pid` has gone to sleep and been woken (`voluntary_ctxt_switches` of
/// `/proc/PID/status`): for a daemon that waits in one `ppoll`, its wake-ups.
pub fn wakeups(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// Time on CPU in nanoseconds: the first field of `/proc/PID/schedstat`.
fn schedstat_ns(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Proportional set size in KiB (`Pss:` of `/proc/PID/smaps_rollup`).
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `roots` and every live process descending from them.
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).filter(|s| s.state != 'Z').map(|s| (pid, s.ppid)))
        .collect();
    let mut all: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for &(pid, ppid) in &parents {
            if ppid == parent && !all.contains(&pid) {
                all.push(pid);
            }
        }
        i += 1;
    }
    all
}

/// Pids of live (not zombie) processes whose executable is `exe`.
pub fn processes_of(exe: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe))
        .filter(|&pid| alive(pid))
        .collect()
}

fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// Sends `signal` (a name such as "KILL") to `pids`; a pid that is already gone is no error.
pub fn kill(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Ends the processes for which `pick` is true, and their descendants (a bash loop spends its
/// life waiting on a `sleep`): SIGTERM, up to 2 s to go, then SIGKILL.
pub fn end(pick: impl Fn(&Process) -> bool) {
    let me = std::process::id();
    let roots: Vec<u32> = processes()
        .into_iter()
        .filter(|p| p.pid != me && pick(p))
        .map(|p| p.pid)
        .collect();
    if roots.is_empty() {
        return;
    }
    let pids = with_descendants(&roots);
    kill("TERM", &pids);
    let gone = util::wait_for(Duration::from_secs(2), || {
        pids.iter().all(|&p| !alive(p)).then_some(())
    });
    if gone.is_none() {
        let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
        kill("KILL", &left);
    }
}
