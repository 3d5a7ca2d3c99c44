/*!
`mosaic-launcher AGENT`: a drop-in for `start-agent-session.sh`; see [`mosaic_launcher::launch`].
*/

use std::process::ExitCode;

fn main() -> ExitCode {
    mosaic_launcher::launch::run(mosaic_hb::exit::parse_args("mosaic-launcher"))
}
