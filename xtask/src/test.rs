/*!
`cargo xtask test`: unit tests, then the end-to-end suite against the release binaries.

The suite runs with `MOSAIC_E2E=1` and `--include-ignored` (each end-to-end test is ignored
under a plain `cargo test`). A test that cannot run here (no root, no mount) fails, unless
`MOSAIC_ALLOW_SKIP=1` asks for skips; skipped tests are then listed at the end, never counted
as passes.

Cargo is not `--quiet` (only the test harness is): the first build of the tests takes minutes,
and cargo's progress shows it is not stuck.
*/

use crate::util::{self, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Only run tests whose name contains this.
    filter: Option<String>,
    /// Test threads (default: `RUST_TEST_THREADS`, else one per CPU, as `cargo test` does).
    #[arg(long, value_name = "N")]
    threads: Option<std::num::NonZeroUsize>,
}

pub fn run(args: &Args) -> Result {
    if util::output(std::process::Command::new("tmux").arg("-V")).is_err() {
        return Err(
            "tmux is not installed: run `apt-get install tmux` (or `.ci/run`), then retry".into(),
        );
    }
    eprintln!("xtask: building release binaries");
    util::build_release()?;
    let filter: Vec<&str> = args.filter.as_deref().into_iter().collect();
    let threads: Vec<String> = args
        .threads
        .map(|n| format!("--test-threads={n}"))
        .into_iter()
        .collect();
    eprintln!("xtask: unit tests");
    util::run(
        util::cargo()
            .args([
                "test",
                "--workspace",
                "--exclude",
                "mosaic-tests",
                "--",
                "--quiet",
            ])
            .args(&threads)
            .args(&filter),
    )?;
    eprintln!("xtask: end-to-end tests (real tmux, release binaries)");
    let skip_log = util::target_dir().join("e2e-skipped.txt");
    match std::fs::remove_file(&skip_log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("cannot remove {}: {e}", skip_log.display()))
        }
        _ => {}
    }
    let mut e2e = util::cargo();
    e2e.args([
        "test",
        "-p",
        "mosaic-tests",
        "--",
        "--quiet",
        "--include-ignored",
    ])
    .args(&threads)
    .args(&filter)
    .env("MOSAIC_E2E", "1")
    .env("MOSAIC_BIN_DIR", util::release_dir())
    .env("MOSAIC_SKIP_LOG", &skip_log);
    let result = util::run(&mut e2e);
    if let Ok(skipped) = std::fs::read_to_string(&skip_log) {
        eprintln!(
            "xtask: {} end-to-end tests did NOT run (MOSAIC_ALLOW_SKIP=1):",
            skipped.lines().count()
        );
        for line in skipped.lines() {
            eprintln!("  skipped {line}");
        }
    }
    result
}
