/*!
`cargo xtask flood`: `mosaic-hb exporter` under connection floods and big directories, measured
(SECURITY.md quotes it). Three figures, each on its own exporter:

1. scrapes answered while 300 idle sockets are held and 300 more are reopened as soon as the
   exporter cuts them (a local user keeping Prometheus out): 20 scrapes, 250 ms apart, each
   given Prometheus's default 10 s;
2. the time of one scrape of a directory of 10,000 heartbeat files, and the answer's size;
3. the exporter's peak RSS (`VmHWM`) while 40 clients, one every 100 ms, ask for that answer
   and never read it, and whether an honest scrape meanwhile is answered (and how fast).

It reports; it never asserts a timing. `--bin-dir DIR` measures the `mosaic-hb-exporter` in
DIR (an older build, say) instead of building target/release. Everything talks to 127.0.0.1
only; every loop is bounded in count and time.
*/

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::util::{self, KillOnDrop, Result, TempDir};

/// Prometheus's default `scrape_timeout`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE: usize = 300;
const RENEWING: usize = 300;
const FLOOD_SCRAPES: usize = 20;
const FILES: usize = 10_000;
const SILENT: usize = 40;

#[derive(clap::Args)]
pub struct Args {
    /// Measure the mosaic-hb-exporter in DIR instead of building target/release.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result {
    let bin = match &args.bin_dir {
        Some(dir) => dir.join("mosaic-hb-exporter"),
        None => {
            util::build_release()?;
            util::release_dir().join("mosaic-hb-exporter")
        }
    };
    if !bin.is_file() {
        return Err(format!("{} is missing", bin.display()));
    }
    // On tmpfs where there is one, as the run directory is in production.
    let tmp = match util::tmpfs_dir("flood") {
        Some(dir) => dir,
        None => TempDir::new("flood")?,
    };
    println!("exporter floods: {}", bin.display());

    let small = tmp.path().join("small");
    fill(&small, 10)?;
    let exporter = Exporter::start(&bin, &small, &tmp.path().join("flood.log"))?;
    let flood = flood(exporter.addr)?;
    let times = match flood.answered {
        0 => String::new(),
        _ => format!(
            " (median {}, slowest {})",
            ms(flood.median),
            ms(flood.slowest)
        ),
    };
    println!(
        "- {IDLE} idle + {RENEWING} renewing sockets: {} of {FLOOD_SCRAPES} scrapes answered\
         {times}; {} sockets reopened",
        flood.answered, flood.renewed
    );
    drop(exporter);

    let big = tmp.path().join("big");
    fill(&big, FILES)?;
    let exporter = Exporter::start(&bin, &big, &tmp.path().join("big.log"))?;
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let (took, body) = scrape(exporter.addr).map_err(|e| format!("scrape: {e}"))?;
        times.push(took);
        size = body;
        // Long enough that the next scrape is read afresh, not shared.
        std::thread::sleep(Duration::from_secs(1));
    }
    times.sort();
    println!(
        "- one scrape of {FILES} files: median {} of 5 ({:.1} MB)",
        ms(times[2]),
        size as f64 / 1e6
    );
    drop(exporter);

    let exporter = Exporter::start(&bin, &big, &tmp.path().join("silent.log"))?;
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        if let Ok(mut s) = TcpStream::connect_timeout(&exporter.addr, SCRAPE_TIMEOUT) {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            silent.push(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let honest = scrape(exporter.addr);
    let peak = exporter.peak_rss_kib();
    drop(silent);
    println!(
        "- {SILENT} clients that never read, one every 100 ms, on {FILES} files: peak RSS {:.1} \
         MiB; an honest scrape meanwhile: {}",
        peak as f64 / 1024.0,
        match honest {
            Ok((took, _)) => format!("answered in {}", ms(took)),
            Err(e) => format!("FAILED ({e})"),
        }
    );
    Ok(())
}

/// `dir` with `n` fresh records (a one-day interval: they stay `ok`).
fn fill(dir: &Path, n: usize) -> Result {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Civil time from days since the epoch (Howard Hinnant's algorithm): xtask has no chrono.
    let (days, secs) = (now / 86_400, now % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let ts = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    for i in 0..n {
        let record = format!("ts={ts}\npid=1\nstatus=ok\nagent=agent-{i:05}\ninterval=86400\n");
        let path = dir.join(format!("agent-{i:05}.hb"));
        std::fs::write(&path, record).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

struct Exporter {
    child: KillOnDrop,
    addr: SocketAddr,
}

impl Exporter {
    fn start(bin: &Path, dir: &Path, log: &Path) -> Result<Exporter> {
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0"]).arg(dir);
        let child = util::spawn_quiet(&mut cmd, Some(log))?;
        let addr = util::exporter_addr(log, Duration::from_secs(10))
            .ok_or_else(|| format!("{} never said where it listens", util::show(&cmd)))?;
        Ok(Exporter { child, addr })
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One scrape as Prometheus makes it: its time and the body's length, if the answer is a 200
/// whose body is as long as its Content-Length, within [`SCRAPE_TIMEOUT`].
fn scrape(addr: SocketAddr) -> std::result::Result<(Duration, usize), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).map_err(|e| e.to_string())?;
    let deadline = started + SCRAPE_TIMEOUT;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("no answer within {SCRAPE_TIMEOUT:?}"))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("no answer ({} bytes)", answer.len()));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok());
    if length != Some(body.len()) {
        return Err(format!("a cut answer: {} of {length:?} bytes", body.len()));
    }
    Ok((took, body.len()))
}

struct Flood {
    answered: usize,
    median: Duration,
    slowest: Duration,
    renewed: u64,
}

/// [`FLOOD_SCRAPES`] scrapes while [`IDLE`] sockets sit idle and [`RENEWING`] are reopened as
/// soon as they are cut.
fn flood(addr: SocketAddr) -> Result<Flood> {
    let idle: Vec<TcpStream> = (0..IDLE)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let renewed = Arc::new(AtomicU64::new(0));
    let renewer = {
        let (stop, renewed) = (stop.clone(), renewed.clone());
        std::thread::spawn(move || renew(addr, &stop, &renewed))
    };
    // Let the flood take hold before the first scrape.
    std::thread::sleep(Duration::from_millis(500));
    let mut times = Vec::new();
    for _ in 0..FLOOD_SCRAPES {
        if let Ok((took, _)) = scrape(addr) {
            times.push(took);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    renewer
        .join()
        .map_err(|_| "the renewing thread panicked".to_string())?;
    drop(idle);
    times.sort();
    Ok(Flood {
        answered: times.len(),
        median: times.get(times.len() / 2).copied().unwrap_or_default(),
        slowest: times.last().copied().unwrap_or_default(),
        renewed: renewed.load(Ordering::Relaxed),
    })
}

/// Holds [`RENEWING`] idle sockets, reopening each as soon as the exporter cuts it, until
/// `stop` (or two minutes, whichever first).
fn renew(addr: SocketAddr, stop: &AtomicBool, renewed: &AtomicU64) {
    let open = || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut sockets: Vec<Option<TcpStream>> = (0..RENEWING).map(|_| open()).collect();
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut byte = [0u8; 1];
    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
        for slot in &mut sockets {
            let cut = match slot {
                Some(s) => {
                    !matches!(s.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
                }
                None => true,
            };
            if cut {
                *slot = open();
                renewed.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
