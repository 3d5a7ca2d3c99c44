/*!
`cargo xtask test`: unit tests, then the end-to-end suite against the release binaries.

The suite runs with `MOSAIC_E2E=1`, so a missing tmux is a failure there, not a skip.
*/

use crate::util::{self, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Only run tests whose name contains this.
    filter: Option<String>,
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
    eprintln!("xtask: unit tests");
    util::run(
        util::cargo()
            .args([
                "test",
                "--workspace",
                "--exclude",
                "mosaic-tests",
                "--quiet",
                "--",
            ])
            .args(&filter),
    )?;
    eprintln!("xtask: end-to-end tests (real tmux, release binaries)");
    let mut e2e = util::cargo();
    e2e.args(["test", "-p", "mosaic-tests", "--quiet", "--"])
        .args(&filter)
        .env("MOSAIC_E2E", "1")
        .env("MOSAIC_BIN_DIR", util::release_dir());
    if std::env::var_os("RUST_TEST_THREADS").is_none() {
        // Two cores, and most tests wait on real processes: a few more threads than cores.
        e2e.env("RUST_TEST_THREADS", "4");
    }
    util::run(&mut e2e)
}
