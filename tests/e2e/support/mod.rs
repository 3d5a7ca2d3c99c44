/*!
Test support: sandboxes with a private tmux server, commands that explain their failures, and
polling with deadlines.

Every test gets its own [`Sandbox`]: a temp directory, a unique tmux socket name, `HOME` pointed
inside it (so no user's `~/.tmux.conf` or `~/.local/bin` leaks in), and a `Drop` that kills the
tmux server, every process the test registered, and the directory, even when the test panics.
*/
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use mosaic_core::record::{parse, Record, Status};

pub mod prometheus;
pub use prometheus::{parse_prometheus, Family};

/// `text` parsed as one JSON document; panics with the text when it is not one.
#[track_caller]
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// The reason every end-to-end test carries as `#[ignore = ...]`, so that a plain `cargo test`
/// lists each one as not run instead of passing it in 0.00 s; `cargo xtask test` runs them with
/// `--include-ignored`. A test in `main.rs` checks that no test lacks it.
pub const IGNORED: &str = "end-to-end: run `cargo xtask test`";

/// Panics unless `MOSAIC_E2E=1` (set by `cargo xtask test`, which also builds the binaries)
/// and tmux runs: an end-to-end test that cannot run fails, it never passes unrun.
#[track_caller]
pub fn require_e2e(test: &str) {
    assert!(
        std::env::var_os("MOSAIC_E2E").as_deref() == Some(OsStr::new("1")),
        "{test} is an end-to-end test: run it with `cargo xtask test` (MOSAIC_E2E=1)"
    );
    let tmux = Command::new("tmux").arg("-V").output();
    assert!(
        tmux.is_ok_and(|o| o.status.success()),
        "{test}: MOSAIC_E2E=1 but tmux is not installed"
    );
}

/// The calling test's name, without the crate prefix (`hostile::full_disk`).
#[macro_export]
macro_rules! test_name {
    () => {{
        fn f() {}
        let name = std::any::type_name_of_val(&f);
        let name = name.trim_end_matches("::f");
        name.split_once("::").map_or(name, |(_, rest)| rest)
    }};
}

/// Fails the calling test unless the end-to-end suite is enabled and tmux runs.
#[macro_export]
macro_rules! e2e {
    () => {
        $crate::support::require_e2e($crate::test_name!())
    };
}

/// Gives up on a test that cannot run on this machine (no root, no mount): a failure, unless
/// `MOSAIC_ALLOW_SKIP=1` asks for skips, and then the skip is appended to `MOSAIC_SKIP_LOG`,
/// which `cargo xtask test` lists at the end. Call it as `return skip(test_name!(), why);`.
#[track_caller]
pub fn skip(test: &str, why: impl std::fmt::Display) {
    if std::env::var_os("MOSAIC_ALLOW_SKIP").as_deref() != Some(OsStr::new("1")) {
        panic!("{test} cannot run here: {why} (MOSAIC_ALLOW_SKIP=1 skips it, and says so)");
    }
    let line = format!("{test}: {why}\n");
    eprint!("SKIPPED {line}");
    if let Some(log) = std::env::var_os("MOSAIC_SKIP_LOG") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open skip log {}: {e}", Path::new(&log).display()));
        // One write per line: appends from parallel tests do not interleave.
        file.write_all(line.as_bytes()).unwrap();
    }
}

/// A release binary built by `cargo xtask test`.
pub fn bin(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("MOSAIC_BIN_DIR").expect("MOSAIC_BIN_DIR names the release binaries");
    let path = Path::new(&dir).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test`",
        path.display()
    );
    path
}

pub struct Sandbox {
    pub dir: PathBuf,
    pub socket: String,
    children: Mutex<Vec<Child>>,
    /// Tracked pids, each with its start time then (`None`: already gone when tracked).
    pids: Mutex<Vec<(i32, Option<u64>)>>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("mosaic-e2e-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Sandbox {
            dir,
            socket: format!("mosaic-e2e-{id}"),
            children: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The heartbeat directory the launcher is pointed at.
    pub fn hb_dir(&self) -> PathBuf {
        self.dir.join("hb")
    }

    pub fn hb_file(&self, agent: &str) -> PathBuf {
        self.hb_dir().join(format!("{agent}.hb"))
    }

    /// `mosaic-launcher AGENT` with this sandbox's socket, workdir, heartbeat dir and HOME, and
    /// no `MOSAIC_*` or `TMUX` from the outside.
    pub fn launcher(&self, agent: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.isolated("mosaic-launcher");
        cmd.arg(agent);
        cmd.env("MOSAIC_TMUX_SOCKET", &self.socket)
            .env("MOSAIC_AGENT_WORKDIR", self.path("work"))
            .env("MOSAIC_AGENT_COMMAND", "sleep 600")
            .env("MOSAIC_HEARTBEAT_RUN_DIR", self.hb_dir())
            .env("MOSAIC_HEARTBEAT_INTERVAL", "0.2");
        cmd
    }

    /// Our binary `name` with this sandbox's HOME, stdin on /dev/null, and no `MOSAIC_*`,
    /// `TMUX`, `XDG_RUNTIME_DIR` or `XDG_STATE_HOME` from the outside (transcripts go under
    /// HOME): where its fleet is, the caller says.
    pub fn isolated(&self, name: &str) -> Command {
        let mut cmd = Command::new(bin(name));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MOSAIC_")
                || key == "TMUX"
                || key == "XDG_RUNTIME_DIR"
                || key == "XDG_STATE_HOME"
            {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.path("home")).stdin(Stdio::null());
        cmd
    }

    /// `mosaic-hb` with no `MOSAIC_*` from the outside.
    pub fn hb(&self) -> Command {
        let mut cmd = Command::new(bin("mosaic-hb"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MOSAIC_") {
                cmd.env_remove(key);
            }
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `tmux -L <socket> ARGS...` (test-side observation; `-f /dev/null` is not needed: HOME
    /// is ours).
    pub fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("HOME", self.path("home"))
            .env_remove("TMUX")
            .output()
            .expect("tmux runs")
    }

    /// Whether session `agent` exists (exact match).
    pub fn has_session(&self, agent: &str) -> bool {
        self.tmux(&["has-session", "-t", &format!("={agent}")])
            .status
            .success()
    }

    /// How many sessions the sandbox's tmux server has.
    pub fn session_count(&self) -> usize {
        let out = self.tmux(&["list-sessions", "-F", "#{session_name}"]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// The pid of `agent`'s first pane, as tmux reports it.
    #[track_caller]
    pub fn pane_pid(&self, agent: &str) -> i32 {
        let out = self.tmux(&[
            "list-panes",
            "-t",
            &format!("={agent}:0.0"),
            "-F",
            "#{pane_pid}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pane pid for {agent}: {out:?}"))
    }

    /// `agent`'s pane's current path as tmux reports it, raw bytes, without the final newline.
    /// Polled: tmux reports an empty path until the pane's process has started (seen under
    /// load right after `new-session`).
    #[track_caller]
    pub fn pane_path(&self, agent: &str) -> Vec<u8> {
        let target = format!("={agent}:0.0");
        let query = || {
            self.tmux(&[
                "display-message",
                "-p",
                "-t",
                &target,
                "#{pane_current_path}",
            ])
        };
        wait_until(
            &format!("a pane path for {agent}"),
            Duration::from_secs(5),
            || {
                let mut out = query().stdout;
                (out.pop() == Some(b'\n') && !out.is_empty()).then_some(out)
            },
            || format!("{:?}", query()),
        )
    }

    /// Starts a daemonized `mosaic-hb --pid TARGET --file FILE --interval SECS EXTRA...`, waits
    /// for its first ok record and returns the daemon's pid (killed when the sandbox drops).
    #[track_caller]
    pub fn start_sidecar<I, A>(&self, target: i32, file: &Path, interval: &str, extra: I) -> i32
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut cmd = self.hb();
        cmd.args([
            "--pid",
            &target.to_string(),
            "--interval",
            interval,
            "--file",
        ])
        .arg(file)
        .args(extra);
        expect_success(&mut cmd);
        let rec = wait_for_status(file, Status::Ok, Duration::from_secs(10));
        let hb = rec.hb_pid.expect("records carry hb_pid");
        self.track(hb);
        hb
    }

    /// A long-running process to watch, killed when the sandbox drops.
    pub fn spawn_target(&self) -> i32 {
        // No terminal of ours: run from one (`cargo xtask test` typed in a shell), a target on
        // it would turn on the sidecar's activity watch, which the tests do not expect.
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sleep runs");
        let pid = child.id() as i32;
        self.children.lock().unwrap().push(child);
        pid
    }

    /// Kills and reaps a target started by [`Sandbox::spawn_target`].
    pub fn kill_target(&self, pid: i32) {
        let mut children = self.children.lock().unwrap();
        if let Some(child) = children.iter_mut().find(|c| c.id() as i32 == pid) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Registers a pid (a sidecar, say) to SIGKILL when the sandbox drops, if it is still the
    /// same process then: pid numbers wrap (`pid_max` is 32768 here, and the suite spawns tens
    /// of thousands), so a number killed blindly once hit another test's tmux server.
    pub fn track(&self, pid: i32) {
        self.pids
            .lock()
            .unwrap()
            .push((pid, mosaic_core::proc::start_time(pid)));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        // tmux leaves its socket file behind; hundreds of tests would litter /tmp/tmux-UID.
        let tmpdir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        let uid = nix::unistd::geteuid();
        let _ = std::fs::remove_file(
            Path::new(&tmpdir)
                .join(format!("tmux-{uid}"))
                .join(&self.socket),
        );
        // Targets and tracked sidecars go next; then the sidecars of dead targets are given
        // time to write their final record and leave before the directory goes.
        for child in self.children.lock().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for &(pid, started) in self.pids.lock().unwrap().iter() {
            // A tracked pid that led its own group (a `setsid sh -c` run) may have forked the
            // real work into that group: it goes too, or it outlives the test. The number is
            // ours while the process is (same start time), or while nothing has it: a group
            // keeps its number from being given to a new process.
            let now = mosaic_core::proc::start_time(pid);
            if pid <= 1 || (now.is_some() && now != started) {
                continue;
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !sidecars_writing_under(&self.dir).is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Live `mosaic-hb` processes (by executable, or by argv[0] for a copy elsewhere) whose command
/// line has `flag` followed by a value that passes `keep`.
pub fn sidecars_with(flag: &str, keep: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_hb = args.first().is_some_and(|a| a.ends_with(b"mosaic-hb"));
        if is_hb
            && args
                .windows(2)
                .any(|w| w[0] == flag.as_bytes() && keep(w[1]))
            && alive(pid)
        {
            found.push(pid);
        }
    }
    found
}

/// Live `mosaic-hb` processes watching `pid`: named on their command line (`--pid PID`), or
/// holding a pidfd for it (the launcher hands the pid over stdin, `--pid -`).
pub fn sidecars_watching(pid: i32) -> Vec<i32> {
    let text = pid.to_string();
    let mut found = sidecars_with("--pid", |v| v == text.as_bytes());
    for hb in sidecars_with("--pid", |v| v == b"-") {
        if holds_pidfd_for(hb, pid) && !found.contains(&hb) {
            found.push(hb);
        }
    }
    found
}

/// Whether process `holder` has a pidfd open for `pid` (its fdinfo says `Pid:\tPID`).
fn holds_pidfd_for(holder: i32, pid: i32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{holder}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let is_pidfd =
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:[pidfd]");
        is_pidfd
            && std::fs::read_to_string(format!(
                "/proc/{holder}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .is_ok_and(|info| info.lines().any(|l| l == format!("Pid:\t{pid}")))
    })
}

/// Live `mosaic-hb` processes whose heartbeat file lies under `dir`.
pub fn sidecars_writing_under(dir: &Path) -> Vec<i32> {
    sidecars_with("--file", |v| {
        Path::new(OsStr::from_bytes(v)).starts_with(dir)
    })
}

/// Root-only tools (mount, namespaces) usable here, or why not.
pub fn root_with_unshare(why: &str) -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    let unshare = Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && unshare {
        Ok(())
    } else {
        Err(format!("needs root and unshare(1) {why}"))
    }
}

/// Runs `cmd`, returning its output; panics only if it cannot be started.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Describes a finished command for a failure message.
pub fn explain(cmd: &Command, out: &Output) -> String {
    format!(
        "command: {cmd:?}\nstatus: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` and asserts it exits with `code`; returns stdout as text.
#[track_caller]
pub fn expect_exit(cmd: &mut Command, code: i32) -> (String, String) {
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected exit\n{}",
        explain(cmd, &out)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd` and asserts success; returns stdout.
#[track_caller]
pub fn expect_success(cmd: &mut Command) -> String {
    expect_exit(cmd, 0).0
}

/// Polls `check` every 10 ms until it returns `Some`; panics after `timeout` with `what` and
/// the last thing `describe` reported.
#[track_caller]
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last seen: {}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` to `pid`, which must exist.
#[track_caller]
pub fn signal(pid: i32, sig: i32) {
    let sig = Signal::try_from(sig).unwrap_or_else(|e| panic!("signal {sig}: {e}"));
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Waits until `pid` is gone (a zombie counts as gone).
#[track_caller]
pub fn wait_gone(pid: i32) {
    wait_until(
        &format!("pid {pid} to be gone"),
        Duration::from_secs(5),
        || (!alive(pid)).then_some(()),
        || std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(),
    );
}

/// The heartbeat record at `path`, when it exists and parses.
pub fn read_record(path: &Path) -> Option<Record> {
    mosaic_core::record::read(path)
}

/// What is at `path` now, for failure messages.
pub fn show_file(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => format!("{}: {:?}", path.display(), String::from_utf8_lossy(&bytes)),
        Err(e) => format!("{}: {e}", path.display()),
    }
}

/// Waits until the heartbeat file at `path` says `status`; returns the record.
#[track_caller]
pub fn wait_for_status(path: &Path, status: Status, timeout: Duration) -> Record {
    wait_until(
        &format!("{} to say status={}", path.display(), status.as_str()),
        timeout,
        || read_record(path).filter(|r| r.status == status),
        || show_file(path),
    )
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with(['Z', 'X']),
        Err(_) => false,
    }
}

/// Writes an executable shell script.
///
/// A child process writes it, not this one. This process runs tests on many threads, and any of
/// them may fork at any moment: a child forked while this process holds the script open for
/// writing inherits that descriptor until it execs (CLOEXEC), and for that instant executing
/// the script fails with `ETXTBSY` ("text file busy"). Closing before exec does not help, the
/// forked copy still holds it; renaming does not either, it is the same inode. A descriptor
/// that exists only in `sh` (which forks nothing while it holds it) cannot leak into our forks.
#[track_caller]
pub fn write_script(path: &Path, body: &str) {
    use std::io::Write;
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "cannot write script {}", path.display());
}

/// A directory of fakes for the contract's shim cases: a `tmux` that records `new-session`'s
/// own arguments (one per line) to `tmux-args` and those of the commands chained after it with
/// `;` (the bell hook) to `tmux-chained`, says no session exists, and prints `list_panes`
/// for `list-panes`; and a `setsid` that records its arguments (NUL-separated) to
/// `setsid-args` and exits 0.
pub fn fake_bin(dir: &Path, list_panes: &str) -> PathBuf {
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tmux_args = dir.join("tmux-args");
    let setsid_args = dir.join("setsid-args");
    write_script(
        &bin.join("tmux"),
        &format!(
            "#!/bin/sh\ncase \"$3\" in\n  has-session) exit 1 ;;\n  new-session)\n    out='{}'; : > \"$out\"\n    for a in \"$@\"; do\n      if [ \"$a\" = ';' ]; then out='{}'; : > \"$out\"; continue; fi\n      printf '%s\\n' \"$a\" >> \"$out\"\n    done\n    exit 0 ;;\n  list-panes) echo '{list_panes}'; exit 0 ;;\nesac\nexit 0\n",
            tmux_args.display(),
            dir.join("tmux-chained").display()
        ),
    );
    write_script(
        &bin.join("setsid"),
        &format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > '{}'\nexit 0\n",
            setsid_args.display()
        ),
    );
    bin
}

/// `PATH` with `first` in front of the current one.
pub fn path_with(first: &[&Path]) -> std::ffi::OsString {
    let mut parts: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
    if let Some(path) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(parts).unwrap()
}

/// Lets `file` survive into the child of `cmd` (clears its close-on-exec flag in the child,
/// before exec): a caller that leaks a descriptor on purpose.
pub fn inherit(cmd: &mut Command, file: &std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::os::unix::process::CommandExt;
    let fd = file.as_raw_fd();
    // SAFETY: in the child between fork and exec, where `fd` is the child's copy of a
    // descriptor `file` keeps open in the parent; fcntl is async-signal-safe and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            fcntl(
                BorrowedFd::borrow_raw(fd),
                FcntlArg::F_SETFD(FdFlag::empty()),
            )?;
            Ok(())
        });
    }
}

/// `mosaic-fleet ARGS...` with the sandbox's socket, heartbeat dir and HOME, and nothing of
/// the caller's environment that would point it elsewhere.
pub fn fleet(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = sb.isolated("mosaic-fleet");
    cmd.args(args)
        .env("MOSAIC_TMUX_SOCKET", &sb.socket)
        .env("MOSAIC_HEARTBEAT_RUN_DIR", sb.hb_dir());
    cmd
}

/// A small random generator (xorshift): a test's rounds are random, and a failing one is
/// replayed from its printed seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
