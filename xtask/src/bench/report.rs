/*!
The bench's report: summary statistics, the results table, the targets, and the machine they
were measured on, rendered as the Markdown of `BENCHMARKS.md` (which is also what is printed).
*/

use std::fmt::Write;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util;

/// What one implementation measured for one row.
#[derive(Clone)]
pub enum Values {
    /// One number per run; `f64::INFINITY` is a run that never saw the event.
    Samples(Vec<f64>),
    /// The measurement could not be taken, and why.
    Unavailable(String),
    /// The implementation has nothing to measure here.
    Absent,
}

impl Values {
    /// The median, or `None` when there is nothing to summarize.
    pub fn median(&self) -> Option<f64> {
        match self {
            Values::Samples(v) if !v.is_empty() => {
                let v = sorted(v);
                let mid = v.len() / 2;
                Some(match v.len() % 2 {
                    1 => v[mid],
                    _ => (v[mid - 1] + v[mid]) / 2.0,
                })
            }
            _ => None,
        }
    }

    pub fn max(&self) -> Option<f64> {
        match self {
            Values::Samples(v) => sorted(v).last().copied(),
            _ => None,
        }
    }

    fn min(&self) -> Option<f64> {
        match self {
            Values::Samples(v) => sorted(v).first().copied(),
            _ => None,
        }
    }

    fn count(&self) -> usize {
        match self {
            Values::Samples(v) => v.len(),
            _ => 0,
        }
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// One row of the results table.
pub struct Row {
    /// What was measured, with its unit: "Launch, warm server (ms)".
    pub what: String,
    pub ours: Values,
    pub baseline: Values,
    /// Whether ours over the baseline means anything here.
    pub compare: bool,
}

impl Row {
    /// Ours over the baseline, median against median.
    pub fn ratio(&self) -> Option<f64> {
        if !self.compare {
            return None;
        }
        let (ours, base) = (self.ours.median()?, self.baseline.median()?);
        (base.is_finite() && base > 0.0 && ours.is_finite()).then(|| ours / base)
    }
}

/// A goal the project set itself, and whether this run met it.
pub struct Target {
    pub goal: String,
    /// The number compared with the goal, as shown ("0.42×", "3.1 ms").
    pub measured: Option<String>,
    pub met: Option<bool>,
}

/// Where the numbers were measured.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub tmux: String,
    pub bash: String,
    pub load: String,
    pub commit: String,
    pub date: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".into(), |(_, m)| m.trim().to_string());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1);
        let first_line = |cmd: &mut Command| {
            util::output(cmd).map_or("unknown".into(), |o| {
                o.lines().next().unwrap_or_default().trim().to_string()
            })
        };
        let bash = first_line(Command::new("bash").arg("--version"));
        let bash = bash
            .split_once("version ")
            .map_or(bash.clone(), |(_, v)| v.to_string());
        let commit = first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
        let dirty = util::output(Command::new("git").args(["status", "--porcelain"]))
            .is_ok_and(|s| !s.trim().is_empty());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Machine {
            cpu,
            cores,
            kernel: first_line(Command::new("uname").arg("-r")),
            tmux: first_line(Command::new("tmux").arg("-V")),
            bash,
            load: load
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            commit: match dirty {
                true => format!("{commit} with uncommitted changes"),
                false => commit,
            },
            date: utc(SystemTime::now()),
        }
    }
}

/// Everything `BENCHMARKS.md` says.
pub struct Report<'a> {
    pub command: &'a str,
    /// Where `mosaic-launcher` and `mosaic-hb` came from.
    pub bin: &'a std::path::Path,
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    /// How each row was measured, one bullet each.
    pub method: Vec<String>,
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "`mosaic-launcher` and `mosaic-hb` against the bash original they replace \
             (`bench/baseline/start-agent-session.sh`), measured side by side in one run on one \
             private tmux server. Written by `cargo xtask bench`; rerun it rather than edit this \
             file (`cargo xtask bench --quick` writes `target/bench/BENCHMARKS-quick.md` instead).\n"
        );
        let _ = writeln!(out, "- Command: `{}`", self.command);
        let root = util::project_root();
        let bin = self.bin.strip_prefix(&root).unwrap_or(self.bin);
        let _ = writeln!(out, "- Binaries: `{}`", bin.display());
        let _ = writeln!(out, "- Date: {}", m.date);
        let _ = writeln!(out, "- Commit: {}", m.commit);
        let _ = writeln!(
            out,
            "- Machine: {}, {} cores, kernel {}, {}, bash {}; load average at start {}",
            m.cpu, m.cores, m.kernel, m.tmux, m.bash, m.load
        );
        let _ = writeln!(out, "\n## Results\n");
        let _ = writeln!(
            out,
            "| Measurement | n | Ours median | Ours min–max | Baseline median | Baseline min–max | Ours / baseline |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
        for row in &self.rows {
            let n = row.ours.count().max(row.baseline.count());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.what,
                n,
                median_cell(&row.ours),
                range_cell(&row.ours),
                median_cell(&row.baseline),
                range_cell(&row.baseline),
                row.ratio().map_or("—".into(), times),
            );
        }
        let _ = writeln!(out, "\n## Targets\n");
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "**met**",
                Some(false) => "**missed**",
                None => "**not measured**",
            };
            let measured = t.measured.as_deref().unwrap_or("no figure");
            let _ = writeln!(out, "- {}: {measured}: {verdict}", t.goal);
        }
        let _ = writeln!(out, "\n## How it is measured\n");
        for line in &self.method {
            let _ = writeln!(out, "- {line}");
        }
        out
    }
}

fn median_cell(v: &Values) -> String {
    match v {
        Values::Samples(_) => v.median().map_or("—".into(), number),
        Values::Unavailable(why) => format!("unavailable: {}", why.replace('|', "\\|")),
        Values::Absent => "—".into(),
    }
}

fn range_cell(v: &Values) -> String {
    match (v.min(), v.max()) {
        (Some(lo), Some(hi)) if v.count() > 1 => format!("{}–{}", number(lo), number(hi)),
        _ => "—".into(),
    }
}

/// A number with the precision that matters at its size; infinity is an event never seen.
pub fn number(v: f64) -> String {
    match v {
        v if v.is_infinite() => "never".into(),
        v if v.abs() < 10.0 => format!("{v:.2}"),
        v if v.abs() < 100.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

/// A ratio: "0.42×" (three decimals below 0.1, where the targets are).
pub fn times(r: f64) -> String {
    match r {
        r if r < 0.1 => format!("{r:.3}×"),
        r => format!("{r:.2}×"),
    }
}

/// `t` as UTC RFC 3339 with milliseconds: `2026-11-26T03:50:07.123Z`.
pub fn utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = (d.as_secs() / 86_400, d.as_secs() % 86_400);
    let (y, m, day) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates() {
        let at = |secs: u64, ms: u64| {
            utc(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_795_663_267, 123), "2026-11-26T03:21:07.123Z");
    }

    #[test]
    fn medians_and_never() {
        let v = Values::Samples(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(v.median(), Some(2.5));
        assert_eq!(v.max(), Some(10.0));
        let never = Values::Samples(vec![f64::INFINITY, f64::INFINITY]);
        assert_eq!(number(never.median().unwrap()), "never");
        let row = Row {
            what: String::new(),
            ours: Values::Samples(vec![2.0]),
            baseline: never,
            compare: true,
        };
        assert_eq!(row.ratio(), None);
    }
}
