/*!
`mosaic-core`: the fleet's contract, what the binaries share on disk and on their pipes.

Nothing here runs for long or owns a process: it is the vocabulary that the sidecar
(`mosaic-hb`, a daemon), the launcher and the fleet CLI (`mosaic-launcher`, `mosaic-fleet`), the
respawn helper and the exporter all speak, so that each rule is written once.

- On disk: the heartbeat directory's [`layout`] (every file's name), the [`record`] format,
  the one-writer [`lock`] and its probes, the default directory and its checks ([`dirs`]),
  agents' transcripts and their writer's control lines ([`transcript`]).
- On pipes: the launcher-sidecar hand-over ([`handover`]) and the sidecar-helper restart
  protocol ([`supervise`], with its policy, the fleet-wide guard and its flags).
- About processes: how one died ([`death`]), `/proc` reading ([`proc`]), ending a session's process tree ([`teardown`]),
  and the few raw system calls `nix` lacks ([`sys`]).
- The status model: reading a directory at one instant and classifying each record, with the
  one staleness rule ([`status`]), its renderings, and the Prometheus families.
- Checks and words: every validation of a value crossing a binary boundary ([`validate`]), the
  exit codes ([`exit`]), [`activity`]'s names, the JSON writer ([`json`]).

The sidecar's theory of operation, the daemon itself, lives in `hb-sidecar/src/main.rs`.
*/

pub mod activity;
pub mod death;
pub mod dirs;
pub mod exit;
pub mod handover;
pub mod json;
pub mod layout;
pub mod lock;
pub mod proc;
pub mod record;
pub mod status;
pub mod supervise;
pub mod sys;
pub mod teardown;
pub mod transcript;
pub mod validate;

#[cfg(test)]
mod proptests;

/// An I/O error as a short lowercase reason: "permission denied", not
/// "Permission denied (os error 13)".
pub fn why(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}
