/*!
`mosaic-log`: an agent's transcript writer, the command of its pane's `pipe-pane -O`.

    mosaic-log [--bell MARK] DIR NAME CTL MAX_SIZE KEEP [OPENING]

tmux (3.3a) forks it once per pane, with the pane's output on its stdin (one end of a
socketpair) for as long as the pane lives: across its deaths and `respawn-pane`, until the
session or the server goes (then stdin ends). It appends what it reads to `DIR/NAME` as it
came (after OPENING, the first run's opening line, when given), and rotates by size: once the file holds `MAX_SIZE` bytes, `NAME.KEEP` is dropped,
`NAME.N` becomes `NAME.N+1` and `NAME` becomes `NAME.1` (`mosaic_core::transcript` reads them
back by the same rule). Files are created 0600, opened `O_NOFOLLOW` relative to the directory's
descriptor, and refused unless regular, singly linked and ours: a planted symlink is never
written through.

The lines of ours that open and close each run come through `DIR/CTL`, a control file others
only append to: `start LINE` (the launcher or the respawn helper, just before tmux starts a
run again: LINE is the opening line, already rendered) and `end STATUS:SIGNAL PID` (tmux's
`pane-died` hook, that helper, or `mosaic-fleet stop` before it removes the session; status
or signal may be empty). Several may say the same run ended: the first closes it, one naming
the pid already closed is ignored, so a late hook never closes the next run. tmux runs `pane-died` only once the
pane's last output is in this pipe (3.3a's `window_pane_destroy_ready` waits for it), so on a
change of CTL (inotify) the writer first reads its stdin to the end of what is there, then
writes the line: a run's closing line follows all of its output. A closing line is written
once per run; at the end of stdin a run still open is closed as "pane closed".

With `--bell MARK` (the sidecar's bell mark), it also parses what it reads as a terminal does
(vte) and appends `b` to MARK when a read ends in a bell, and `o` when output follows a bell it
marked: the sidecar, which sees the agent's writes but not their order against a bell, goes by
the mark's last byte ([`Bells`]).

Cost, the reason for its shape: one runs per logged agent for days. It links rustix and vte alone (no
clap, no `format!`), reads into one fixed buffer, and spawns nothing; `cargo xtask bench`
measures its private memory and its CPU per MB. It never blocks tmux: what it has not read yet
waits in tmux's buffer, so a burst is slowed, never lost. Exits 0 at the end of stdin, 2 on
bad arguments, 1 when its files cannot be used (tmux then closes the pipe; the agent runs on).
*/

use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{fstat, openat, renameat, unlinkat, AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::{read, write, Errno};

/// What one read takes from tmux: large enough that a burst costs few system calls, small
/// enough to stay a few pages of the writer's memory.
const CHUNK: usize = 16 * 1024;

fn main() {
    let code = match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => 0,
        Err((code, why)) => {
            let mut line = b"mosaic-log: ".to_vec();
            line.extend_from_slice(why.as_bytes());
            line.push(b'\n');
            let _ = write(std::io::stderr(), &line);
            code
        }
    };
    std::process::exit(code);
}

type Fail = (i32, String);

fn run(args: Vec<OsString>) -> Result<(), Fail> {
    let mut args = args;
    let bell = match args.first().map(|a| a.as_bytes()) {
        Some(b"--bell") if args.len() > 1 => Some(args.drain(..2).nth(1).expect("two")),
        _ => None,
    };
    let opening = (args.len() == 6).then(|| args.pop()).flatten();
    let [dir, name, ctl, max, keep] = <[OsString; 5]>::try_from(args).map_err(|_| {
        (
            2,
            "usage: mosaic-log [--bell MARK] DIR NAME CTL MAX_SIZE KEEP [OPENING]".to_string(),
        )
    })?;
    let number = |v: &OsString| -> Result<u64, Fail> {
        v.to_str()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| (2, "MAX_SIZE and KEEP are whole numbers".to_string()))
    };
    let (max, keep) = (number(&max)?.max(1), number(&keep)?.min(1000) as u32);
    let c = |v: OsString| CString::new(v.into_vec()).map_err(|_| (2, "NUL in an argument".into()));
    let (dir, name, ctl) = (c(dir)?, c(name)?, c(ctl)?);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = openat(CWD, dir.as_c_str(), flags, Mode::empty()).map_err(failed("open dir"))?;
    let mut log = Log::open(dir, name, max, keep)?;
    if let Some(mark) = bell {
        log.bells = Some(Bells::new(c(mark)?));
    }
    let ctl = Ctl::open(&log.dir, &ctl)?;
    if let Some(opening) = opening {
        log.line(&opening.into_vec())?;
    }
    log.serve(ctl)
}

fn failed(what: &'static str) -> impl Fn(Errno) -> Fail {
    move |e| (1, [what, ": ", &e.to_string()].concat())
}

/// The transcript: its directory, its current file, and what rotation needs.
struct Log {
    dir: OwnedFd,
    name: CString,
    file: OwnedFd,
    size: u64,
    max: u64,
    keep: u32,
    /// The last byte written ends a line (our lines start on a line of their own).
    at_line_start: bool,
    /// The current run has no closing line yet.
    open: bool,
    /// The pid named by the last `end` that closed a run: a second `end` for the same run
    /// (tmux's hook and the stop or respawn that also saw it die) closes nothing more.
    closed: Vec<u8>,
    /// With `--bell`: the bells in what is read, marked for the sidecar.
    bells: Option<Bells>,
}

impl Log {
    fn open(dir: OwnedFd, name: CString, max: u64, keep: u32) -> Result<Log, Fail> {
        let (file, size) = open_private(&dir, &name, OFlags::RDWR | OFlags::APPEND)?;
        let mut last = [b'\n'];
        if size > 0 {
            let _ = rustix::io::pread(&file, &mut last, size - 1);
        }
        Ok(Log {
            dir,
            name,
            file,
            size,
            max,
            keep,
            at_line_start: last[0] == b'\n',
            // A run is under way: the first (its opening line is OPENING), or a respawned
            // one whose writer had gone.
            open: true,
            closed: Vec::new(),
            bells: None,
        })
    }

    /// Copies stdin to the file until stdin ends, acting on the control file meanwhile.
    fn serve(&mut self, mut ctl: Ctl) -> Result<(), Fail> {
        let stdin = std::io::stdin();
        let stdin = stdin.as_fd();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut fds = [
                PollFd::new(&stdin, PollFlags::IN),
                PollFd::new(&ctl.inotify, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Err(Errno::INTR) => continue,
                Err(e) => return Err(failed("poll")(e)),
                Ok(_) => {}
            }
            let (input, control) = (fds[0].revents(), fds[1].revents());
            if control.contains(PollFlags::IN) {
                ctl.clear_events();
                if !self.drain(stdin, &mut buf, false)? {
                    return self.ended(&mut ctl);
                }
                self.control(&mut ctl)?;
            }
            if !input.is_empty() && !self.drain(stdin, &mut buf, true)? {
                return self.ended(&mut ctl);
            }
        }
    }

    /// Copies what stdin holds now (`once`: one read) to the file; `false` at its end.
    fn drain(&mut self, stdin: BorrowedFd, buf: &mut [u8], once: bool) -> Result<bool, Fail> {
        loop {
            // A zero-timeout look first, so the read never blocks (stdin is tmux's socket).
            if !once
                && matches!(
                    poll(&mut [PollFd::new(&stdin, PollFlags::IN)], Some(&ZERO)),
                    Ok(0)
                )
            {
                return Ok(true);
            }
            match read(stdin, &mut *buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.append(&buf[..n])?;
                    if let Some(bells) = &mut self.bells {
                        bells.read(&buf[..n]);
                    }
                }
                Err(Errno::INTR | Errno::AGAIN) => {}
                // tmux's end went away without a clean end (the server killed): the end.
                Err(_) => return Ok(false),
            }
            if once {
                return Ok(true);
            }
        }
    }

    /// The end of stdin: control lines still pending, then a run still open is closed.
    fn ended(&mut self, ctl: &mut Ctl) -> Result<(), Fail> {
        self.control(ctl)?;
        if self.open {
            self.ours(&[b"pane closed: its session or the tmux server is gone"])?;
        }
        Ok(())
    }

    /// Acts on the control file's new complete lines.
    fn control(&mut self, ctl: &mut Ctl) -> Result<(), Fail> {
        for line in ctl.new_lines() {
            if let Some(rest) = line.strip_prefix(b"end ") {
                // `end STATUS:SIGNAL PID`, the pid of the run that ended (absent: unknown).
                let (how, pid) = match rest.iter().position(|&b| b == b' ') {
                    Some(at) => (&rest[..at], &rest[at + 1..]),
                    None => (rest, &b""[..]),
                };
                let again = !pid.is_empty() && pid == self.closed.as_slice();
                if self.open && !again {
                    self.closed = pid.to_vec();
                    let mut words = how.split(|&b| b == b':');
                    let status = words.next().unwrap_or_default();
                    let signal = words.next().unwrap_or_default();
                    match (status, signal) {
                        (s, _) if !s.is_empty() => self.ours(&[b"run ended: exit status ", s])?,
                        (_, g) if !g.is_empty() => self.ours(&[b"run ended: signal ", g])?,
                        _ => self.ours(&[b"run ended (how, tmux did not say)"])?,
                    }
                }
            } else if let Some(opening) = line.strip_prefix(b"start ") {
                if self.open {
                    self.ours(&[b"run ended (how, tmux did not say)"])?;
                }
                self.line(opening)?;
                self.open = true;
            }
        }
        Ok(())
    }

    /// A closing line of ours: `[mosaic] TIME PARTS...`, on a line of its own.
    fn ours(&mut self, parts: &[&[u8]]) -> Result<(), Fail> {
        let mut line = b"[mosaic] ".to_vec();
        utc_now(&mut line);
        line.push(b' ');
        for part in parts {
            line.extend_from_slice(part);
        }
        self.open = false;
        self.line(&line)
    }

    fn line(&mut self, text: &[u8]) -> Result<(), Fail> {
        let mut bytes = Vec::with_capacity(text.len() + 2);
        if !self.at_line_start {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(text);
        bytes.extend_from_slice(b"\r\n");
        self.append(&bytes)
    }

    /// Writes `bytes`, rotating whenever the file reaches its size: no file grows past it.
    fn append(&mut self, mut bytes: &[u8]) -> Result<(), Fail> {
        if let Some(&last) = bytes.last() {
            self.at_line_start = last == b'\n';
        }
        while !bytes.is_empty() {
            if self.size >= self.max {
                self.rotate()?;
            }
            let room = (self.max - self.size).min(bytes.len() as u64) as usize;
            match write(&self.file, &bytes[..room]) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    self.size += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(failed("write")(e)),
            }
        }
        Ok(())
    }

    /// `NAME.KEEP` dropped, `NAME.N` to `NAME.N+1`, `NAME` to `NAME.1`, a fresh `NAME`.
    fn rotate(&mut self) -> Result<(), Fail> {
        let numbered = |n: u32| {
            let mut name = self.name.as_bytes().to_vec();
            name.push(b'.');
            name.extend_from_slice(n.to_string().as_bytes());
            CString::new(name).expect("no NUL in a name")
        };
        if self.keep == 0 {
            let _ = unlinkat(&self.dir, self.name.as_c_str(), AtFlags::empty());
        } else {
            let _ = unlinkat(&self.dir, numbered(self.keep).as_c_str(), AtFlags::empty());
            for n in (1..self.keep).rev() {
                let _ = renameat(
                    &self.dir,
                    numbered(n).as_c_str(),
                    &self.dir,
                    numbered(n + 1),
                );
            }
            renameat(&self.dir, self.name.as_c_str(), &self.dir, numbered(1))
                .map_err(failed("rotate"))?;
        }
        let flags = OFlags::RDWR | OFlags::APPEND | OFlags::EXCL;
        let (file, size) = open_private(&self.dir, &self.name, flags)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

/// The bells in the pane's output, told to the sidecar through its bell mark (`--bell`): a
/// byte `b` appended when a read ends with a bell as the last thing the agent did, and `o` when
/// output follows a bell marked so. The mark is closed after each byte: the sidecar watches its
/// closes (inotify) and goes by its last byte, so a bell then output reads busy and output then
/// a bell waiting, in the order of the bytes, which neither tmux's `alert-bell` hook (run after
/// the pane's output of one read, as a process, late) nor the terminal's writes can tell. A
/// BEL that ends an OSC string is no bell (vte parses the stream as a terminal would).
struct Bells {
    mark: CString,
    parser: vte::Parser,
    seen: Seen,
    /// The mark's last byte is ours and says `b`.
    marked: bool,
}

#[derive(Default)]
struct Seen {
    /// A bell, and nothing since.
    after_bell: bool,
    /// A bell in this read.
    rang: bool,
    /// Output after a bell in this read.
    spoke_after: bool,
}

impl Seen {
    fn spoke(&mut self) {
        if self.after_bell {
            self.after_bell = false;
            self.spoke_after = true;
        }
    }
}

impl vte::Perform for Seen {
    fn print(&mut self, _: char) {
        self.spoke();
    }
    fn execute(&mut self, byte: u8) {
        if byte == 0x07 {
            self.rang = true;
            self.after_bell = true;
        } else {
            self.spoke();
        }
    }
    fn hook(&mut self, _: &vte::Params, _: &[u8], _: bool, _: char) {
        self.spoke();
    }
    fn put(&mut self, _: u8) {
        self.spoke();
    }
    fn osc_dispatch(&mut self, _: &[&[u8]], _: bool) {
        self.spoke();
    }
    fn csi_dispatch(&mut self, _: &vte::Params, _: &[u8], _: bool, _: char) {
        self.spoke();
    }
    fn esc_dispatch(&mut self, _: &[u8], _: bool, _: u8) {
        self.spoke();
    }
}

impl Bells {
    fn new(mark: CString) -> Bells {
        Bells {
            mark,
            parser: vte::Parser::new(),
            seen: Seen::default(),
            marked: false,
        }
    }

    /// Takes in one read of the pane's output; marks what its end says.
    fn read(&mut self, bytes: &[u8]) {
        self.seen.rang = false;
        self.seen.spoke_after = false;
        self.parser.advance(&mut self.seen, bytes);
        if self.seen.rang && self.seen.after_bell {
            self.mark(b'b');
            self.marked = true;
        } else if self.seen.spoke_after && self.marked {
            self.mark(b'o');
            self.marked = false;
        }
    }

    /// Appends `byte` to the mark, created 0600, never through a symlink, only a regular file
    /// of ours (as the sidecar opens it). A mark that cannot be written is skipped: bells are
    /// the sidecar's business, the transcript goes on.
    fn mark(&self, byte: u8) {
        let flags = OFlags::WRONLY | OFlags::APPEND;
        let Ok((file, _)) = open_private(CWD, &self.mark, flags) else {
            return;
        };
        let _ = write(&file, &[byte]);
    }
}

const ZERO: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// Opens (creating it 0600) `name` in `dir`, never through a symlink, and only a regular,
/// singly linked file of ours; returns it and its size.
fn open_private(dir: impl AsFd, name: &CStr, flags: OFlags) -> Result<(OwnedFd, u64), Fail> {
    let flags = flags | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let file = openat(dir, name, flags, Mode::from_raw_mode(0o600)).map_err(failed("open"))?;
    let stat = fstat(&file).map_err(failed("stat"))?;
    let ours = stat.st_uid == rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile || stat.st_nlink != 1 || !ours
    {
        return Err((
            1,
            "refusing a file that is not a private regular file".into(),
        ));
    }
    Ok((file, stat.st_size as u64))
}

/// The control file: read from where it ended when we started, woken by inotify.
struct Ctl {
    file: OwnedFd,
    inotify: OwnedFd,
    pending: Vec<u8>,
}

impl Ctl {
    fn open(dir: &OwnedFd, name: &CStr) -> Result<Ctl, Fail> {
        use rustix::fs::inotify;
        let (file, size) = open_private(dir, name, OFlags::RDONLY)?;
        rustix::fs::seek(&file, rustix::fs::SeekFrom::Start(size)).map_err(failed("seek"))?;
        let flags = inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK;
        let inotify = inotify::init(flags).map_err(failed("inotify"))?;
        // The open descriptor's own inode, whatever its name becomes.
        let path = [
            "/proc/self/fd/",
            &rustix::fd::AsRawFd::as_raw_fd(&file).to_string(),
        ]
        .concat();
        inotify::add_watch(&inotify, path, inotify::WatchFlags::MODIFY)
            .map_err(failed("inotify watch"))?;
        Ok(Ctl {
            file,
            inotify,
            pending: Vec::new(),
        })
    }

    fn clear_events(&self) {
        let mut events = [0u8; 256];
        while matches!(read(&self.inotify, &mut events), Ok(n) if n > 0) {}
    }

    /// The complete lines appended since the last call.
    fn new_lines(&mut self) -> Vec<Vec<u8>> {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = read(&self.file, &mut chunk) {
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let done: Vec<u8> = self.pending.drain(..=end).collect();
        done.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// Appends the time now, UTC, as `2026-12-03T06:30:00.123Z`.
fn utc_now(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |v: u64, sep: u8| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8, sep];
    out.extend_from_slice(&two(year as u64 / 100, 0)[..2]);
    for (v, sep) in [
        (year as u64 % 100, b'-'),
        (month as u64, b'-'),
        (day as u64, b'T'),
        (rem / 3600, b':'),
        (rem / 60 % 60, b':'),
        (rem % 60, b'.'),
    ] {
        out.extend_from_slice(&two(v, sep));
    }
    let ms = u64::from(now.subsec_millis());
    out.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}
