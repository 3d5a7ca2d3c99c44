/*! `cargo xtask bench`: not built yet (see the benchmark issue). */

use crate::util::Result;

#[derive(clap::Args)]
pub struct Args {
    /// A short run for CI: checks that every measurement works, asserts no timing.
    #[arg(long)]
    quick: bool,
}

pub fn run(args: &Args) -> Result {
    let _ = args.quick;
    Err("bench is not implemented yet".into())
}
