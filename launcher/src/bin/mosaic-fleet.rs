/*!
`mosaic-fleet`: the operator's CLI (start, ls, logs, attach, stop, restart, prune); see
[`mosaic_launcher::fleet`].
*/

// The binary shares its package's dependency list with the library, where the lint does its
// job; here it would only flag the library's dependencies (rustc checks each target against
// the whole list: rust-lang/rust#95513), and Cargo has no per-target dependencies.
#![allow(unused_crate_dependencies)]

use std::process::ExitCode;

fn main() -> ExitCode {
    mosaic_launcher::fleet::run(mosaic_core::exit::parse_args("mosaic-fleet"))
}
