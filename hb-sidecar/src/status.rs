/*! `mosaic-hb status`: the fleet view. Not built yet: see the status issue. */

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Heartbeat directory [default: $MOSAIC_HEARTBEAT_RUN_DIR, else the launcher's default]
    pub dir: Option<PathBuf>,
}

/// Runs the report; returns the process exit code.
pub fn run(_args: &StatusArgs) -> u8 {
    eprintln!("mosaic-hb: status is not implemented yet");
    1
}
