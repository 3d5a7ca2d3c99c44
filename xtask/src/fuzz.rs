/*!
`cargo xtask fuzz`: long property runs over everything that reads hostile bytes.

cargo-fuzz (libFuzzer) needs a nightly toolchain, which this project does not require and its
CI does not have, so the fuzzing here is proptest's: the three `proptests` modules the unit
suite replays with a few cases (`core/src/proptests.rs`: the record, validators, `/proc`;
`launcher/src/proptests.rs`: the pane command, `logs`' escape stripping;
`hb-sidecar/src/proptests.rs`: Claude Code's session file), run in release mode with many
more. See SECURITY.md.

The shell properties spawn `/bin/sh` per case, so they get their own, smaller count
(`MOSAIC_SHELL_CASES`). A failure prints the shrunk input; `--seed` fixes proptest's random
seed, so a run can be repeated exactly. Inputs worth keeping go to `core/corpus/record/`,
the corpus that every `cargo xtask test` replays.
*/

use crate::util::{self, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Cases per pure property (parser, validators, command builder).
    #[arg(long, default_value_t = 200_000)]
    cases: u32,
    /// Cases per property that runs a real `/bin/sh` (a process each).
    #[arg(long, default_value_t = 2_000)]
    shell_cases: u32,
    /// Fix the random seed (`PROPTEST_RNG_SEED`), to repeat a run exactly.
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(args: &Args) -> Result {
    eprintln!(
        "xtask: property runs in release mode: {} cases per property, {} per shell property \
         (proptest; cargo-fuzz would need nightly)",
        args.cases, args.shell_cases
    );
    let mut cmd = util::cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "mosaic-core",
        "-p",
        "mosaic-launcher",
        "-p",
        "mosaic-hb",
        "proptests",
    ])
    .env("PROPTEST_CASES", args.cases.to_string())
    .env("MOSAIC_SHELL_CASES", args.shell_cases.to_string());
    if let Some(seed) = args.seed {
        cmd.env("PROPTEST_RNG_SEED", seed.to_string());
    }
    util::run(&mut cmd).map_err(|e| {
        format!("{e}: the shrunk failing input is printed above; save it under core/corpus/record/ (ok-* or bad-*), which every test run replays, or add it to the unit tests of the module that failed")
    })
}
