/*!
`cargo xtask <task>`: the project's one entry point for building, testing and showing it.

Every task runs from the workspace root wherever it is called from, spawns processes with
argument vectors (never a shell string), and uses the `cargo` that invoked it.
*/

mod bench;
mod compat;
mod demo;
mod demo_restart;
mod flood;
mod fuzz;
mod install;
mod procfs;
mod prometheus;
mod test;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, test, demo and measure mosaic-fleet"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Every test: unit tests, then the end-to-end suite against the release binaries and a real tmux.
    Test(test::Args),
    /// The operator's loop on a private socket: start two agents, ls, logs, stop one, ls.
    Demo(demo::Args),
    /// Build the binaries static and install them into ROOT/bin (default ~/.cargo/bin).
    Install(install::Args),
    /// Supervision: an agent that keeps crashing is restarted with growing delays, then given up.
    DemoRestart,
    /// Run an external start-agent-session.sh test suite against the built launcher.
    Compat(compat::Args),
    /// Measure the launcher and sidecar against the bash baseline; write BENCHMARKS.md.
    Bench(bench::Args),
    /// The exporter under connection floods and a 10,000-file directory: scrapes answered,
    /// scrape time, peak memory (quoted in SECURITY.md).
    Flood(flood::Args),
    /// Long property-based runs over the parser and validators (the suite replays a short one).
    Fuzz(fuzz::Args),
    /// The exporter and alert rules against a real Prometheus (installs it when missing).
    Prometheus,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = util::project_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let result = match cli.task {
        Task::Test(args) => test::run(&args),
        Task::Demo(args) => demo::run(&args),
        Task::Install(args) => install::run(&args),
        Task::DemoRestart => demo_restart::run(),
        Task::Compat(args) => compat::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Flood(args) => flood::run(&args),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Prometheus => prometheus::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
