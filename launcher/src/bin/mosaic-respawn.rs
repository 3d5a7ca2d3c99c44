/*!
`mosaic-respawn`: not for people. A supervising sidecar (`mosaic-hb --restart ...`) runs it once
per death of its agent, to learn how the agent's tmux pane died and, on the sidecar's word, to
restart it; see [`mosaic_launcher::respawn`]. It lives next to `mosaic-hb`, where the sidecar
looks for it.
*/

// The binary shares its package's dependency list with the library, where the lint does its
// job; here it would only flag the library's dependencies (rustc checks each target against
// the whole list: rust-lang/rust#95513), and Cargo has no per-target dependencies.
#![allow(unused_crate_dependencies)]

use clap::Parser;

/// The sidecar's hands in tmux: how the pane died, then (on `go` from stdin) its restart.
#[derive(Parser)]
#[command(
    name = "mosaic-respawn",
    version,
    about = "Internal: a supervising mosaic-hb's restart of its agent's tmux pane.",
    after_help = "Run by mosaic-hb under --restart, with pipes on stdin and stdout: it prints how \
        the pane died, then restarts it when stdin says `go`.\n\
        Environment: PATH (where `tmux` is found).\n\
        Exit codes: 0 done (or nothing to do), 1 tmux failed, 2 bad input."
)]
struct Cli {
    #[command(flatten)]
    args: mosaic_launcher::respawn::RespawnArgs,
}

fn main() -> std::process::ExitCode {
    let cli: Cli = mosaic_core::exit::parse_args("mosaic-respawn");
    mosaic_launcher::respawn::run(&cli.args)
}
