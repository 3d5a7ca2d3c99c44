/*! Helpers every task shares: where things are, and running commands loudly. */

use std::path::{Path, PathBuf};
use std::process::Command;

pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root: the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The `cargo` that runs us.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// Where `build_release` puts `mosaic-launcher`, `mosaic-fleet` and `mosaic-hb`.
pub fn release_dir() -> PathBuf {
    target_dir().join(host_triple()).join("release")
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let out = output(Command::new(rustc).arg("-vV")).unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .find_map(|l| l.strip_prefix("host: "))
            .expect("rustc -vV names the host")
            .to_string()
    })
}

/// Builds the release binaries (`mosaic-launcher`, `mosaic-fleet`, `mosaic-hb`, `mosaic-log`) as static,
/// non-PIE executables.
///
/// Why: a fleet runs one sidecar per agent for days, and its memory is mostly what dynamic
/// linking dirties per process (relocated GOTs of libc, ld.so and libgcc_s, and the PIE's own
/// relocations). Static non-PIE cuts a sidecar's PSS from about 165 kB to about 90 kB (see
/// BENCHMARKS.md). `--target` keeps the flags off build scripts and proc macros, which cannot
/// be static. The cost, image ASLR, is weighed in SECURITY.md.
///
/// Not `--quiet`: a first build takes minutes, and cargo's own progress (a bar on a terminal,
/// a line per crate elsewhere) says it is working.
pub fn build_release() -> Result {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", host_triple()])
        .args([
            "-p",
            "mosaic-launcher",
            "-p",
            "mosaic-hb",
            "-p",
            "mosaic-hb-exporter",
            "-p",
            "mosaic-log",
        ])
        .env("RUSTFLAGS", STATIC_RUSTFLAGS);
    run(&mut cmd)
}

/// The flags `build_release` builds with.
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// Runs `cmd` with inherited stdio; a failure names the command.
pub fn run(cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(cmd)))
    }
}

/// Runs `cmd` and returns its stdout; a failure names the command and shows its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn show(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mosaic-xtask-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory on tmpfs, where heartbeat files live in production: in
/// `$XDG_RUNTIME_DIR` (the launcher's default) or else `/dev/shm`; `None` if neither is tmpfs.
pub fn tmpfs_dir(tag: &str) -> Option<TempDir> {
    let candidates = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/dev/shm")]);
    for base in candidates {
        if base.is_dir() && fs_type(&base) == "tmpfs" {
            let dir = base.join(format!("mosaic-{tag}-{}", std::process::id()));
            if std::fs::create_dir_all(&dir).is_ok() {
                return Some(TempDir(dir));
            }
        }
    }
    None
}

/// The type of the filesystem holding `dir`, as `df` names it ("tmpfs", "ext4").
pub fn fs_type(dir: &Path) -> String {
    output(Command::new("df").arg("--output=fstype").arg(dir))
        .ok()
        .and_then(|out| out.lines().nth(1).map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// Kills a private tmux server on drop.
pub struct TmuxServer(pub String);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
        // tmux leaves its socket file behind (also when the server exits by itself).
        let _ = std::fs::remove_file(tmux_socket_path(&self.0));
    }
}

/// Where `tmux -L NAME` keeps its socket: `${TMUX_TMPDIR:-/tmp}/tmux-UID/NAME`.
pub fn tmux_socket_path(name: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
    // /proc/self belongs to our effective uid; xtask does without libc.
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    Path::new(&dir).join(format!("tmux-{uid}")).join(name)
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Starts `cmd` in the background with stdin and stdout closed and stderr in the file `log`
/// (created; `None`: discarded): a server we talk to over the network, whose log is the
/// only thing worth keeping. It is killed when the guard drops.
pub fn spawn_quiet(cmd: &mut Command, log: Option<&Path>) -> Result<KillOnDrop> {
    use std::process::Stdio;
    let stderr = match log {
        Some(log) => std::fs::File::create(log)
            .map_err(|e| format!("{}: {e}", log.display()))?
            .into(),
        None => Stdio::null(),
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    Ok(KillOnDrop(child))
}

/// A child process killed (and reaped) when this is dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address `mosaic-hb exporter` says it listens on, from its log (stderr), once it has
/// said so; `None` after `patience`.
pub fn exporter_addr(log: &Path, patience: std::time::Duration) -> Option<std::net::SocketAddr> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok());
        if addr.is_some() || std::time::Instant::now() >= deadline {
            return addr;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
