/*! `cargo xtask fuzz`: not built yet (see the hostile-input issue). */

use crate::util::Result;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> Result {
    Err("fuzz is not implemented yet".into())
}
