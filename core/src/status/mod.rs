/*!
`mosaic-hb status`: the fleet view, one row per heartbeat file in a directory.

```text
mosaic-hb status [DIR] [--format table|json|prometheus] [--json] [--check] [--stale-after N]
```

Every `NAME.hb` in DIR is one agent, `NAME`, in exactly one [`State`]. The work is split by
job, and the first two are a library for any other reader of a fleet (`mosaic-fleet ls`):

- [`scan`]: the directory scanner, safe on a shared directory (no symlink followed, no FIFO
  blocks it, no file read past a limit);
- [`classify`]: a record read at one instant becomes a [`Row`] with a [`State`];
- [`render`]: table and JSON; [`metrics`]: Prometheus text, shared with the exporter;
- this module: [`report`] (scan, then classify at one clock reading), the arguments, and the
  exit code.

# Exit codes, and what `--check` calls failing

0: the report was printed (and, with `--check`, no agent is failing; an empty directory is
not failing: a fleet between runs is empty). 1: with `--check`, some agent is failing; or a
read or write failed at run time. 2: DIR is missing or not a directory, or bad arguments;
but the default directory (no DIR given) that no launch has made yet is an empty fleet, 0.

An agent is failing when it is `stale`, `exited`, `failed` or `invalid`: something happened
to it that nobody asked for; but not when it exited by itself with status 0 (done, as
systemd's `inactive`, not `failed`). `ok` is not, nor `stopped` (someone stopped it on purpose:
`mosaic-fleet stop`, or SIGTERM to its sidecar), nor `restarting` (its restart policy is
already on it; if it gives up, the agent is `failed`). The Prometheus metrics and the alert
rules in `contrib/prometheus` follow the same rule ([`Row::is_failing`]).
*/

pub mod classify;
pub mod metrics;
pub mod render;
pub mod scan;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;

pub use classify::{classify, Row, State, DEFAULT_INTERVAL};
pub use scan::{Keeper, Reading, READ_LIMIT};

use crate::exit::{Exit, Fail};
use crate::why;

/// The end of `mosaic-hb status --help`: where the directory comes from, and the exit codes.
pub const HELP: &str = "\
Environment:
  MOSAIC_HEARTBEAT_RUN_DIR  the heartbeat directory when DIR is not given (empty = unset)
  XDG_RUNTIME_DIR           else the directory is $XDG_RUNTIME_DIR/mosaic/heartbeat,
                            and without it /tmp/mosaic-<uid>/heartbeat (the launcher's rule)

States: ok, stale, restarting, exited, failed, stopped, invalid. Failing (for --check) are
stale, exited (but not with exit status 0: done), failed and invalid; a stopped agent was
stopped on purpose and is not failing.

Exit codes:
  0  the report was printed (with --check: no agent is failing; an empty directory is fine)
  1  with --check, some agent is failing; or the directory could not be read, or the
     report not written
  2  bad input: DIR is missing or not a directory, or a bad argument (a missing default
     directory, before any launch made it, is an empty fleet: 0 agents, exit 0)";

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Heartbeat directory [default: $MOSAIC_HEARTBEAT_RUN_DIR, else
    /// $XDG_RUNTIME_DIR/mosaic/heartbeat, else /tmp/mosaic-<uid>/heartbeat]
    pub dir: Option<PathBuf>,
    /// Report format: an aligned table for people, JSON for scripts, Prometheus text (for
    /// node_exporter's textfile collector; `mosaic-hb exporter` serves the same live).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Table)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Exit 1 when some agent is failing (stale, exited, failed or invalid; a stopped agent
    /// is not); the report is still printed.
    #[arg(long)]
    pub check: bool,
    /// An agent whose last `status=ok` beat is more than N of its intervals old is stale.
    #[arg(long, value_name = "N", default_value_t = classify::STALE_AFTER, value_parser = stale_after)]
    pub stale_after: f64,
    /// The `fleet` label of the Prometheus metrics [default: the heartbeat directory]: two
    /// fleets on one host stay apart even with the same agent names.
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Prometheus,
}

/// Parses `--stale-after N`: a positive, finite number of intervals.
pub fn stale_after(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err("must be a positive number of intervals".into()),
    }
}

/// Reads every heartbeat file in `dir` and classifies it; rows sorted by agent name (bytes).
pub fn report(dir: &Path, stale_after: f64) -> Result<Vec<Row>, Fail> {
    let files = scan::scan(dir).map_err(|e| {
        let message = crate::dirs::cannot("read", dir, &e);
        match e.raw_os_error().map(nix::errno::Errno::from_raw) {
            Some(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Fail::usage(message),
            _ => Fail::failed(message),
        }
    })?;
    // Once, and after the reads: every `ts` we saw was written before this instant, so a live
    // sidecar on this host never shows a negative age, and every row is judged by one clock.
    let now = Utc::now();
    let mut rows: Vec<Row> = files
        .into_iter()
        .map(|found| Row::new(found.name, found.reading, found.keeper, now, stale_after))
        .collect();
    rows.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    // A directory that changes while it is listed may list a name twice (tmpfs gives the entry
    // a sidecar renames into place a new position); both reads are of one agent.
    rows.dedup_by(|a, b| a.name == b.name);
    Ok(rows)
}

/// Runs the report; returns the process exit code.
pub fn run(args: &StatusArgs) -> u8 {
    let dir = args.dir.clone().unwrap_or_else(crate::dirs::dir_from_env);
    let rows = match report(&dir, args.stale_after) {
        Ok(rows) => rows,
        // The default directory is made by the first launch: before it, the fleet is empty
        // (as `mosaic-fleet ls` says), not a mistake. A DIR named here must exist.
        Err(_) if args.dir.is_none() && missing(&dir) => Vec::new(),
        Err(fail) => {
            let _ = writeln!(std::io::stderr(), "mosaic-hb: {}", fail.message);
            return fail.code;
        }
    };
    let format = if args.json { Format::Json } else { args.format };
    let text = match format {
        Format::Table => render::table(&rows),
        Format::Json => render::json(&rows),
        Format::Prometheus => {
            let label = match &args.fleet {
                Some(name) => name.clone(),
                None => dir.to_string_lossy().into_owned(),
            };
            metrics::prometheus(&[metrics::Fleet {
                label: &label,
                rows: Some(&rows),
            }])
        }
    };
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A reader that closed the pipe (`| head`) has what it wanted; say nothing, but the
        // report was not delivered whole, which is not success.
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = writeln!(
                std::io::stderr(),
                "mosaic-hb: cannot write report to stdout: {}",
                why(&e)
            );
        }
        return Exit::Failed.code();
    }
    exit_code(&rows, args.check)
}

/// Whether nothing at all is at `path` (not even a dangling symlink).
fn missing(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
}

/// 0, or with `check`, 1 when some agent is failing.
pub fn exit_code(rows: &[Row], check: bool) -> u8 {
    if check && rows.iter().any(Row::is_failing) {
        Exit::Failed.code()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::classify::tests::{record, row};
    use super::*;
    use crate::record::Status;
    use chrono::SecondsFormat;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    #[test]
    fn stale_after_must_be_positive() {
        assert_eq!(stale_after("3"), Ok(3.0));
        assert_eq!(stale_after("1.5"), Ok(1.5));
        for bad in ["0", "-1", "nan", "inf", "three", ""] {
            assert!(stale_after(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_fails_on_a_failing_agent_and_a_stop_is_not_one() {
        let ok = row(b"a", Ok(record(Status::Ok, 0, None)));
        let stopped = row(b"b", Ok(record(Status::Stopped, 0, None)));
        let restarting = row(b"c", Ok(record(Status::Restarting, 0, None)));
        assert_eq!(exit_code(&[], true), 0, "an empty fleet is fine");
        let calm = [ok.clone(), stopped.clone(), restarting];
        assert_eq!(exit_code(&calm, true), 0, "stopped on purpose, restarting");
        for status in [Status::Exited, Status::Failed] {
            let dead = row(b"d", Ok(record(status, 0, None)));
            let fleet = [ok.clone(), stopped.clone(), dead];
            assert_eq!(exit_code(&fleet, true), 1, "{status:?}");
            assert_eq!(exit_code(&fleet, false), 0);
        }
        let stale = row(b"e", Ok(record(Status::Ok, 3_600_000, Some(1.0))));
        assert_eq!(exit_code(&[stale], true), 1);
        let invalid = row(b"f", Err("empty file".into()));
        assert_eq!(exit_code(&[invalid], true), 1);
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mosaic-status-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fresh(status: &str) -> String {
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        format!("ts={ts}\npid=7\nstatus={status}\ninterval=30\n")
    }

    #[test]
    fn report_reads_a_directory_sorted_and_safely() {
        use std::ffi::OsStr;
        let dir = scratch("report");
        let write = |name: &[u8], body: &[u8]| {
            std::fs::write(dir.join(OsStr::from_bytes(name)), body).unwrap()
        };
        write(b"b.hb", fresh("ok").as_bytes());
        // b's sidecar is there (we hold its lock); d's lock is free: d's sidecar is gone.
        write(b".b.hb.lock", b"1\n");
        let held = std::fs::File::open(dir.join(".b.hb.lock")).unwrap();
        let _held = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
        write(b"d.hb", fresh("ok").as_bytes());
        write(b".d.hb.lock", b"1\n");
        write(b"a.hb", fresh("stopped").as_bytes());
        write(b"C.hb", fresh("exited").as_bytes());
        write(b"\xff.hb", fresh("ok").as_bytes());
        write(b"big.hb", &vec![b'x'; READ_LIMIT + 1]);
        let mut at_limit = fresh("ok").into_bytes();
        at_limit.resize(READ_LIMIT, b'\n');
        write(b"limit.hb", &at_limit);
        // Not agents: the sidecars' lock and temp files, and other names.
        write(b".b.hb.123.tmp", b"garbage");
        write(b".hb", b"garbage");
        write(b"notes.txt", b"garbage");
        write(b"b.hb.old", b"garbage");
        let outside = dir.join("outside");
        std::fs::write(&outside, fresh("ok")).unwrap();
        symlink(&outside, dir.join("link.hb")).unwrap();
        std::fs::create_dir(dir.join("sub.hb")).unwrap();
        let fifo = dir.join("pipe.hb");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();

        let rows = report(&dir, 3.0).unwrap();
        let got: Vec<(&str, State, Option<&str>)> = rows
            .iter()
            .map(|r| (r.agent.as_str(), r.state, r.reason.as_deref()))
            .collect();
        let link = Some("not a regular file (a symlink, not followed)");
        assert_eq!(
            got,
            [
                ("C", State::Exited, None),
                ("a", State::Stopped, None),
                ("b", State::Ok, None),
                ("big", State::Invalid, Some("too large (over 64 KiB)")),
                ("d", State::Stale, Some("sidecar gone (its lock is free)")),
                ("limit", State::Ok, None),
                ("link", State::Invalid, link),
                ("pipe", State::Invalid, Some("not a regular file (a FIFO)")),
                (
                    "sub",
                    State::Invalid,
                    Some("not a regular file (a directory)")
                ),
                ("\u{fffd}", State::Ok, None),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_dir_is_bad_input_and_names_the_path() {
        let dir = scratch("missing");
        let missing = dir.join("nope");
        let err = report(&missing, 3.0).unwrap_err();
        assert_eq!(err.code, Exit::Usage.code());
        assert_eq!(
            err.message,
            format!(
                "cannot read heartbeat dir {}: no such file or directory",
                missing.display()
            )
        );
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = report(&file, 3.0).unwrap_err();
        assert_eq!(err.code, Exit::Usage.code());
        assert!(
            err.message.ends_with(": not a directory"),
            "{}",
            err.message
        );
        assert!(report(&dir, 3.0).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
