/*!
The launcher's library: everything that talks to tmux and starts agents, shared by
`mosaic-launcher` (the drop-in for `start-agent-session.sh`) and the fleet CLI.

- [`launch`]: one launch, validated (`plan`) then carried out (`launch`), all or nothing,
  and reported.
- [`tmux`]: the only code that runs tmux.
- [`pane`]: the pane command and the only shell quoting.
- [`sidecar`]: finding and starting `mosaic-hb` for a pane.
- [`transcript`]: an agent's transcript prepared, and its writer given to the session.
- [`cli`]: the launcher's flags and their `MOSAIC_*` variables.
- [`respawn`]: `mosaic-respawn`, the supervising sidecar's hands in tmux.
- [`verdict`]: the start verdict: started means the agent's command was executed.
- [`child`]: bounded waits for child processes, the stop signals, no leaked descriptors.
*/

pub mod child;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod launch;
pub mod pane;
#[cfg(test)]
mod proptests;
pub mod respawn;
pub mod sidecar;
pub mod tmux;
pub mod transcript;
pub mod verdict;
pub mod worktree;
