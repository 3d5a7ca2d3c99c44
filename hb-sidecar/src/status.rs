/*!
`mosaic-hb status`: the fleet view, one row per heartbeat file in a directory.

```text
mosaic-hb status [DIR] [--format table|json|prometheus] [--json] [--check] [--stale-after N]
```

Every `NAME.hb` in DIR is one agent, `NAME`; dotfiles (the sidecars' `.NAME.hb.lock` and
`.NAME.hb.PID.tmp`) are not agents. Each agent is in exactly one [`State`]:

| state     | the file says   | and                                                        |
|-----------|-----------------|------------------------------------------------------------|
| `ok`      | `status=ok`     | `ts` is within N intervals of now (N = `--stale-after`)    |
| `stale`   | `status=ok`     | it is not: the sidecar is gone or stuck                    |
| `exited`  | `status=exited` |                                                            |
| `stopped` | `status=stopped`|                                                            |
| `invalid` | anything else   | with the reason: unreadable, too large, does not parse     |

The interval is the file's own `interval=`, else [`DEFAULT_INTERVAL`].

# Reading a shared directory safely

The directory is opened once and listed through that descriptor; each file is opened relative
to it with `O_NOFOLLOW | O_NONBLOCK`, so a symlink planted in the directory is reported, never
followed, and a planted FIFO cannot block the report. A file is read once, up to
[`READ_LIMIT`]; a bad file becomes an `invalid` row and never stops the listing. The clock is
read once, after every file has been read.

# Exit codes

0: the report was printed (and, with `--check`, every agent is `ok`; an empty directory is
`ok`: nothing in it is failing, and a fleet between runs is empty). 1: with `--check`, some
agent is not `ok`; or a read or write failed at run time. 2: DIR is missing or not a directory.
*/

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::exit::Exit;
use crate::record::{self, Record, Status};
use crate::sys::cvt;
use crate::why;

/// The largest heartbeat file we read: a real record is under 300 bytes, and a bigger file in
/// a shared directory must not cost a reader more than this.
pub const READ_LIMIT: usize = 64 * 1024;

/// Seconds between beats assumed for a record without `interval=` (the bash original wrote
/// none, and beat every 30 seconds, as the sidecar does by default).
pub const DEFAULT_INTERVAL: f64 = 30.0;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Heartbeat directory [default: $MOSAIC_HEARTBEAT_RUN_DIR, else the launcher's default]
    pub dir: Option<PathBuf>,
    /// Report format: an aligned table for people, JSON for scripts, Prometheus text for
    /// node_exporter's textfile collector.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Table)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Exit 1 unless every agent is ok (an empty directory is ok); the report is still printed.
    #[arg(long)]
    pub check: bool,
    /// An agent whose last `status=ok` beat is more than N of its intervals old is stale.
    #[arg(long, value_name = "N", default_value = "3", value_parser = stale_after)]
    pub stale_after: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Prometheus,
}

fn stale_after(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err("must be a positive number of intervals".into()),
    }
}

/// An agent's state. The order is the summary line's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Ok,
    Stale,
    Exited,
    Stopped,
    Invalid,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Ok,
        State::Stale,
        State::Exited,
        State::Stopped,
        State::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Stale => "stale",
            State::Exited => "exited",
            State::Stopped => "stopped",
            State::Invalid => "invalid",
        }
    }
}

/// A heartbeat file as read: its record, or why it has none.
pub type Reading = Result<Record, String>;

/// One agent: one heartbeat file.
#[derive(Clone, Debug)]
pub struct Row {
    /// The file name without `.hb`, as the directory holds it: the sort key, and lossless.
    pub name: Vec<u8>,
    /// The name for display; bytes that are not UTF-8 become U+FFFD.
    pub agent: String,
    pub state: State,
    /// The record, when the file parses.
    pub record: Option<Record>,
    /// Seconds from the record's `ts` to now; negative when `ts` is in the future.
    pub age: Option<f64>,
    /// Why the file is invalid.
    pub reason: Option<String>,
}

impl Row {
    /// The row for heartbeat file `name` (without `.hb`) as read at `now`.
    pub fn new(name: Vec<u8>, read: Reading, now: DateTime<Utc>, stale_after: f64) -> Row {
        let agent = String::from_utf8_lossy(&name).into_owned();
        match read {
            Ok(record) => Row {
                name,
                agent,
                state: classify(&record, now, stale_after),
                age: Some(age(record.ts, now)),
                record: Some(record),
                reason: None,
            },
            Err(reason) => Row {
                name,
                agent,
                state: State::Invalid,
                record: None,
                age: None,
                reason: Some(reason),
            },
        }
    }
}

/// Seconds from `ts` to `now`, to the millisecond.
fn age(ts: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    now.signed_duration_since(ts).num_milliseconds() as f64 / 1000.0
}

/// The state of a record that parses, read at `now`.
pub fn classify(record: &Record, now: DateTime<Utc>, stale_after: f64) -> State {
    match record.status {
        Status::Exited => State::Exited,
        Status::Stopped => State::Stopped,
        Status::Ok => {
            let window = stale_after * record.interval.unwrap_or(DEFAULT_INTERVAL);
            // A beat from further in the future than the window cannot be vouched for either:
            // a live sidecar (its timer is monotonic) would have replaced it within one
            // interval, so the clock was stepped back or no sidecar wrote it.
            if age(record.ts, now).abs() <= window {
                State::Ok
            } else {
                State::Stale
            }
        }
    }
}

/// Why the report could not be made, and the exit code that says so.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

/// Reads every heartbeat file in `dir` and classifies it; rows sorted by agent name (bytes).
pub fn report(dir: &Path, stale_after: f64) -> Result<Vec<Row>, Fail> {
    let files = read_dir(dir)?;
    // Once, and after the reads: every `ts` we saw was written before this instant, so a live
    // sidecar on this host never shows a negative age, and every row is judged by one clock.
    let now = Utc::now();
    let mut rows: Vec<Row> = files
        .into_iter()
        .map(|(name, read)| Row::new(name, read, now, stale_after))
        .collect();
    rows.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    // A directory that changes while it is listed may list a name twice (tmpfs gives the entry
    // a sidecar renames into place a new position); both reads are of one agent.
    rows.dedup_by(|a, b| a.name == b.name);
    Ok(rows)
}

/// The heartbeat files in `dir`: each name without `.hb`, with its record or why it has none.
fn read_dir(dir: &Path) -> Result<Vec<(Vec<u8>, Reading)>, Fail> {
    let fail = |e: io::Error| Fail {
        code: match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => Exit::Usage.code(),
            _ => Exit::Failed.code(),
        },
        message: format!("cannot read heartbeat dir {}: {}", dir.display(), why(&e)),
    };
    let fd = open_dir(dir).map_err(fail)?;
    let mut listing = Listing::new(&fd).map_err(fail)?;
    let mut files = Vec::new();
    // One buffer for every file: a fleet of small files costs no allocation per file.
    let mut buf = Vec::with_capacity(1024);
    while let Some(name) = listing.next().map_err(fail)? {
        let bytes = name.to_bytes();
        let Some(stem) = bytes.strip_suffix(b".hb") else {
            continue;
        };
        if stem.is_empty() || stem.starts_with(b".") {
            continue;
        }
        if let Some(read) = read_file(&fd, name, &mut buf) {
            files.push((stem.to_vec(), read));
        }
    }
    Ok(files)
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: path is a valid C string; the result is checked.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads heartbeat file `name` in directory `dir` into `buf`. `None` when it is gone.
fn read_file(dir: &OwnedFd, name: &CStr, buf: &mut Vec<u8>) -> Option<Reading> {
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: name is a valid C string relative to a live directory descriptor.
    let file = match cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) }) {
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(fd) => unsafe { File::from_raw_fd(fd) },
        // Skipped, not reported: a sidecar replaces its file by rename, which never leaves the
        // name missing, so a file that vanished since the listing was removed on purpose (its
        // agent left the fleet). A listing taken a moment later would not show it either, and
        // reporting it would fail `--check` for an agent that no longer exists.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return None,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Some(Err("not a regular file (a symlink, not followed)".into()))
        }
        Err(e) => return Some(Err(format!("cannot open: {}", why(&e)))),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => {}
        Ok(meta) => {
            return Some(Err(format!(
                "not a regular file (a {})",
                kind(meta.file_type())
            )))
        }
        Err(e) => return Some(Err(format!("cannot inspect: {}", why(&e)))),
    }
    buf.clear();
    if let Err(e) = (&file).take(READ_LIMIT as u64 + 1).read_to_end(buf) {
        return Some(Err(format!("cannot read: {}", why(&e))));
    }
    if buf.len() > READ_LIMIT {
        return Some(Err(format!("too large (over {} KiB)", READ_LIMIT / 1024)));
    }
    Some(record::parse(buf))
}

fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "device"
    } else {
        "special file"
    }
}

/// A directory's names, listed through a descriptor we hold: the names we list and the files
/// we open are in the same directory even if its path is renamed or replaced meanwhile.
struct Listing {
    stream: *mut libc::DIR,
}

impl Listing {
    fn new(dir: &OwnedFd) -> io::Result<Listing> {
        // fdopendir owns the descriptor it is given; hand it a duplicate so `dir` stays ours.
        // SAFETY: duplicating a live descriptor; the result is checked.
        let dup = cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: dup is a directory descriptor nobody else owns.
        let stream = unsafe { libc::fdopendir(dup) };
        if stream.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(err);
        }
        Ok(Listing { stream })
    }

    /// The next name, or `None` at the end; the name lives until the next call.
    fn next(&mut self) -> io::Result<Option<&CStr>> {
        // readdir reports its end and its errors alike with NULL; only errno tells them apart.
        nix::errno::Errno::clear();
        // SAFETY: the stream is open until drop.
        let entry = unsafe { libc::readdir(self.stream) };
        if entry.is_null() {
            return match nix::errno::Errno::last_raw() {
                0 => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        // SAFETY: a non-NULL entry is valid, and its name NUL-terminated, until the next
        // readdir on this stream, which the borrow of self prevents.
        Ok(Some(unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }))
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed only here.
        unsafe { libc::closedir(self.stream) };
    }
}

/// Runs the report; returns the process exit code.
pub fn run(args: &StatusArgs) -> u8 {
    let dir = args.dir.clone().unwrap_or_else(crate::dirs::dir_from_env);
    let rows = match report(&dir, args.stale_after) {
        Ok(rows) => rows,
        Err(Fail { code, message }) => {
            eprintln!("mosaic-hb: {message}");
            return code;
        }
    };
    let format = if args.json { Format::Json } else { args.format };
    let text = match format {
        Format::Table => table(&rows),
        Format::Json => json(&rows),
        Format::Prometheus => prometheus(&rows),
    };
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A reader that closed the pipe (`| head`) has what it wanted; say nothing, but the
        // report was not delivered whole, which is not success.
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("mosaic-hb: cannot write report to stdout: {}", why(&e));
        }
        return Exit::Failed.code();
    }
    exit_code(&rows, args.check)
}

/// 0, or with `check`, 1 unless every agent is ok.
pub fn exit_code(rows: &[Row], check: bool) -> u8 {
    if check && rows.iter().any(|row| row.state != State::Ok) {
        Exit::Failed.code()
    } else {
        0
    }
}

/// An age for people: whole seconds, minutes, hours or days, rounded down (`2s`, `4m`, `3h`,
/// `2d`). Negative ages (a `ts` in the future) keep their sign.
pub fn format_age(secs: f64) -> String {
    let sign = if secs <= -1.0 { "-" } else { "" };
    // `as` saturates, and NaN becomes 0: neither can come from a parsed `ts`.
    let s = secs.abs().floor() as u64;
    let (n, unit) = match s {
        0..60 => (s, "s"),
        60..3600 => (s / 60, "m"),
        3600..86400 => (s / 3600, "h"),
        _ => (s / 86400, "d"),
    };
    format!("{sign}{n}{unit}")
}

/// A name for a terminal: control characters (a newline, an escape sequence planted in a file
/// name) are shown escaped, never sent to the terminal.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The summary line: `5 agents: 3 ok, 1 stale, 1 exited` (states with no agent left out).
pub fn summary(rows: &[Row]) -> String {
    let mut out = format!(
        "{} agent{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    let mut sep = ": ";
    for state in State::ALL {
        let count = rows.iter().filter(|row| row.state == state).count();
        if count > 0 {
            let _ = write!(out, "{sep}{count} {}", state.as_str());
            sep = ", ";
        }
    }
    out
}

/// The table: AGENT, STATE, PID, AGE, INTERVAL (and REASON when a row is invalid), aligned,
/// then the summary line. An empty directory is just the summary, `0 agents`.
pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return format!("{}\n", summary(rows));
    }
    let with_reason = rows.iter().any(|row| row.reason.is_some());
    let header = ["AGENT", "STATE", "PID", "AGE", "INTERVAL", "REASON"];
    let columns = if with_reason { 6 } else { 5 };
    let mut cells: Vec<[String; 6]> = Vec::with_capacity(rows.len() + 1);
    cells.push(header.map(String::from));
    for row in rows {
        let dash = || "-".to_string();
        let record = row.record.as_ref();
        cells.push([
            printable(&row.agent),
            row.state.as_str().to_string(),
            record.map_or_else(dash, |r| r.pid.to_string()),
            row.age.map_or_else(dash, format_age),
            record
                .and_then(|r| r.interval)
                .map_or_else(dash, |secs| format!("{secs}s")),
            row.reason.as_deref().map(printable).unwrap_or_default(),
        ]);
    }
    let mut widths = [0; 6];
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &cells {
        let mut text = String::new();
        for (i, cell) in line[..columns].iter().enumerate() {
            if i + 1 == columns {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        // Rows without a reason would otherwise end in padding.
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// A JSON array, one object per agent: `agent`, `state`, `pid`, `ts`, `age_s`, `interval`,
/// `reason`; a field the file does not give is `null`.
pub fn json(rows: &[Row]) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        out.push_str(if i == 0 {
            "\n  {\"agent\": "
        } else {
            ",\n  {\"agent\": "
        });
        crate::json::string(&mut out, &row.agent);
        let _ = write!(out, ", \"state\": \"{}\"", row.state.as_str());
        let record = row.record.as_ref();
        out.push_str(", \"pid\": ");
        push_or_null(&mut out, record.map(|r| r.pid));
        out.push_str(", \"ts\": ");
        match record {
            Some(r) => {
                let ts = r.ts.to_rfc3339_opts(SecondsFormat::Millis, true);
                crate::json::string(&mut out, &ts);
            }
            None => out.push_str("null"),
        }
        // Rust prints a finite f64 as a plain decimal, never `inf` or `1e5`: valid JSON.
        out.push_str(", \"age_s\": ");
        push_or_null(&mut out, row.age);
        out.push_str(", \"interval\": ");
        push_or_null(&mut out, record.and_then(|r| r.interval));
        out.push_str(", \"reason\": ");
        match &row.reason {
            Some(reason) => crate::json::string(&mut out, reason),
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str(if rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}

fn push_or_null(out: &mut String, value: Option<impl std::fmt::Display>) {
    match value {
        Some(value) => {
            let _ = write!(out, "{value}");
        }
        None => out.push_str("null"),
    }
}

/// Appends `text` as a Prometheus label value, quotes included: backslash, double quote and
/// line feed escaped, as the text format (0.0.4) requires.
pub fn label_value(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The Prometheus text format (0.0.4) for node_exporter's textfile collector: three gauge
/// families, each with its HELP and TYPE lines and all its samples together. No timestamps:
/// the textfile collector refuses them.
pub fn prometheus(rows: &[Row]) -> String {
    // Two file names that differ only in bytes that are not UTF-8 can share a label value;
    // a duplicate series makes node_exporter drop the whole file, so only the first is kept.
    let mut seen = HashSet::new();
    let unique: Vec<&Row> = rows
        .iter()
        .filter(|row| seen.insert(row.agent.as_str()))
        .collect();
    let mut out = String::with_capacity(200 * (unique.len() + 1));
    family(
        &mut out,
        "mosaic_agent_up",
        "1 when the agent's heartbeat is current (state ok), else 0.",
        &unique,
        |row| Some((None, if row.state == State::Ok { 1.0 } else { 0.0 })),
    );
    family(
        &mut out,
        "mosaic_agent_heartbeat_age_seconds",
        "Seconds since the agent's last heartbeat record was written.",
        &unique,
        |row| row.age.map(|age| (None, age)),
    );
    family(
        &mut out,
        "mosaic_agent_state",
        "The agent's state (ok, stale, exited, stopped or invalid): 1 for the state it is in.",
        &unique,
        |row| Some((Some(row.state.as_str()), 1.0)),
    );
    out
}

/// One gauge family: HELP, TYPE, then a sample per row that `sample` gives a value (and
/// maybe a `state` label).
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    rows: &[&Row],
    sample: impl Fn(&Row) -> Option<(Option<&'static str>, f64)>,
) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
    for row in rows {
        let Some((state, value)) = sample(row) else {
            continue;
        };
        let _ = write!(out, "{name}{{agent=");
        label_value(out, &row.agent);
        if let Some(state) = state {
            let _ = write!(out, ",state=\"{state}\"");
        }
        let _ = writeln!(out, "}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::os::unix::fs::symlink;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 2, 21, 5).unwrap()
    }

    fn record(status: Status, age_ms: i64, interval: Option<f64>) -> Record {
        Record {
            ts: now() - chrono::Duration::milliseconds(age_ms),
            pid: 42,
            status,
            agent: None,
            interval,
            seq: None,
            hb_pid: None,
            started: None,
        }
    }

    #[test]
    fn ok_until_n_intervals_then_stale() {
        let state = |age_ms, interval, n| classify(&record(Status::Ok, age_ms, interval), now(), n);
        assert_eq!(state(0, Some(1.0), 3.0), State::Ok);
        assert_eq!(state(3000, Some(1.0), 3.0), State::Ok, "the boundary is ok");
        assert_eq!(state(3001, Some(1.0), 3.0), State::Stale);
        assert_eq!(
            state(3001, Some(1.0), 4.0),
            State::Ok,
            "--stale-after counts"
        );
        assert_eq!(state(600, Some(0.2), 3.0), State::Ok);
        assert_eq!(state(601, Some(0.2), 3.0), State::Stale);
    }

    #[test]
    fn records_without_an_interval_get_thirty_seconds() {
        let state = |age_ms| classify(&record(Status::Ok, age_ms, None), now(), 3.0);
        assert_eq!(state(90_000), State::Ok);
        assert_eq!(state(90_001), State::Stale);
    }

    #[test]
    fn a_beat_far_in_the_future_is_stale() {
        let state = |age_ms| classify(&record(Status::Ok, age_ms, Some(1.0)), now(), 3.0);
        assert_eq!(state(-2000), State::Ok);
        assert_eq!(state(-3_600_000), State::Stale);
    }

    #[test]
    fn exited_and_stopped_are_final_whatever_their_age() {
        for age_ms in [0, 10_000_000] {
            let rec = record(Status::Exited, age_ms, Some(1.0));
            assert_eq!(classify(&rec, now(), 3.0), State::Exited);
            let rec = record(Status::Stopped, age_ms, Some(1.0));
            assert_eq!(classify(&rec, now(), 3.0), State::Stopped);
        }
    }

    #[test]
    fn ages_read_like_people_say_them() {
        let cases = [
            (0.0, "0s"),
            (0.85, "0s"),
            (2.9, "2s"),
            (59.99, "59s"),
            (60.0, "1m"),
            (3599.0, "59m"),
            (3600.0, "1h"),
            (86_399.0, "23h"),
            (86_400.0, "1d"),
            (2.0 * 86_400.0 + 5.0, "2d"),
            (-0.5, "0s"),
            (-5.0, "-5s"),
            (-7200.0, "-2h"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_age(secs), text, "{secs}");
        }
    }

    #[test]
    fn stale_after_must_be_positive() {
        assert_eq!(stale_after("3"), Ok(3.0));
        assert_eq!(stale_after("1.5"), Ok(1.5));
        for bad in ["0", "-1", "nan", "inf", "three", ""] {
            assert!(stale_after(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        label_value(&mut out, "a\\b\"c\nd\té");
        assert_eq!(out, "\"a\\\\b\\\"c\\nd\té\"");
    }

    fn row(name: &[u8], read: Reading) -> Row {
        Row::new(name.to_vec(), read, now(), 3.0)
    }

    #[test]
    fn prometheus_groups_each_family() {
        let rows = [
            row(b"a\"b", Ok(record(Status::Ok, 1500, Some(1.0)))),
            row(b"c", Ok(record(Status::Exited, 2000, None))),
            row(b"d", Err("empty file".into())),
        ];
        let text = prometheus(&rows);
        let expected = "\
# HELP mosaic_agent_up 1 when the agent's heartbeat is current (state ok), else 0.
# TYPE mosaic_agent_up gauge
mosaic_agent_up{agent=\"a\\\"b\"} 1
mosaic_agent_up{agent=\"c\"} 0
mosaic_agent_up{agent=\"d\"} 0
# HELP mosaic_agent_heartbeat_age_seconds Seconds since the agent's last heartbeat record was written.
# TYPE mosaic_agent_heartbeat_age_seconds gauge
mosaic_agent_heartbeat_age_seconds{agent=\"a\\\"b\"} 1.5
mosaic_agent_heartbeat_age_seconds{agent=\"c\"} 2
# HELP mosaic_agent_state The agent's state (ok, stale, exited, stopped or invalid): 1 for the state it is in.
# TYPE mosaic_agent_state gauge
mosaic_agent_state{agent=\"a\\\"b\",state=\"ok\"} 1
mosaic_agent_state{agent=\"c\",state=\"exited\"} 1
mosaic_agent_state{agent=\"d\",state=\"invalid\"} 1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn prometheus_never_repeats_a_series() {
        let rows = [
            row(b"x\xfe", Ok(record(Status::Ok, 0, None))),
            row(b"x\xff", Err("empty file".into())),
        ];
        let text = prometheus(&rows);
        assert_eq!(text.matches("mosaic_agent_up{").count(), 1, "{text}");
    }

    #[test]
    fn table_aligns_and_summarizes() {
        let rows = [
            row(b"alpha", Ok(record(Status::Ok, 2500, Some(0.2)))),
            row(b"b", Err("empty file".into())),
            row(b"gamma-long", Ok(record(Status::Exited, 300_000, None))),
        ];
        let text = table(&rows);
        let expected = "\
AGENT       STATE    PID  AGE  INTERVAL  REASON
alpha       stale    42   2s   0.2s
b           invalid  -    -    -         empty file
gamma-long  exited   42   5m   -
3 agents: 1 stale, 1 exited, 1 invalid
";
        assert_eq!(text, expected);
        assert_eq!(table(&[]), "0 agents\n");
        assert_eq!(summary(&rows[..1]), "1 agent: 1 stale");
    }

    #[test]
    fn table_escapes_control_characters_in_names() {
        let rows = [row(b"evil\x1b[2J\n", Err("empty file".into()))];
        let text = table(&rows);
        assert!(text.contains("evil\\u{1b}[2J\\n "), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn json_has_every_field_and_escapes_names() {
        let rows = [
            row(b"q\"\xff", Ok(record(Status::Ok, 1250, Some(0.5)))),
            row(b"z", Err("not UTF-8 text".into())),
        ];
        let text = json(&rows);
        let expected = "[
  {\"agent\": \"q\\\"\u{fffd}\", \"state\": \"ok\", \"pid\": 42, \"ts\": \"2026-11-26T02:21:03.750Z\", \"age_s\": 1.25, \"interval\": 0.5, \"reason\": null},
  {\"agent\": \"z\", \"state\": \"invalid\", \"pid\": null, \"ts\": null, \"age_s\": null, \"interval\": null, \"reason\": \"not UTF-8 text\"}
]
";
        assert_eq!(text, expected);
        assert_eq!(json(&[]), "[]\n");
    }

    #[test]
    fn check_fails_unless_every_agent_is_ok() {
        let ok = row(b"a", Ok(record(Status::Ok, 0, None)));
        let stopped = row(b"b", Ok(record(Status::Stopped, 0, None)));
        assert_eq!(exit_code(&[], true), 0, "an empty fleet is ok");
        assert_eq!(exit_code(std::slice::from_ref(&ok), true), 0);
        let both = [ok, stopped];
        assert_eq!(exit_code(&both, true), 1);
        assert_eq!(exit_code(&both, false), 0);
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
        write(b"a.hb", fresh("stopped").as_bytes());
        write(b"C.hb", fresh("exited").as_bytes());
        write(b"\xff.hb", fresh("ok").as_bytes());
        write(b"big.hb", &vec![b'x'; READ_LIMIT + 1]);
        let mut at_limit = fresh("ok").into_bytes();
        at_limit.resize(READ_LIMIT, b'\n');
        write(b"limit.hb", &at_limit);
        // Not agents: the sidecars' lock and temp files, and other names.
        write(b".b.hb.lock", b"1\n");
        write(b".b.hb.123.tmp", b"garbage");
        write(b".hb", b"garbage");
        write(b"notes.txt", b"garbage");
        write(b"b.hb.old", b"garbage");
        let outside = dir.join("outside");
        std::fs::write(&outside, fresh("ok")).unwrap();
        symlink(&outside, dir.join("link.hb")).unwrap();
        std::fs::create_dir(dir.join("sub.hb")).unwrap();
        let fifo = CString::new(dir.join("pipe.hb").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; the result is checked.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

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
