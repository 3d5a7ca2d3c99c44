/*!
`mosaic-launcher AGENT`: a drop-in for `start-agent-session.sh`; see [`mosaic_launcher::launch`].
*/

// The binary shares its package's dependency list with the library, where the lint does its
// job; here it would only flag the library's dependencies (rustc checks each target against
// the whole list: rust-lang/rust#95513), and Cargo has no per-target dependencies.
#![allow(unused_crate_dependencies)]

use std::process::ExitCode;

fn main() -> ExitCode {
    mosaic_launcher::launch::run(mosaic_core::exit::parse_args("mosaic-launcher"))
}
