/*!
The end-to-end suite: the release binaries against a real tmux on a private socket per test,
real processes, real signals and real files. One test binary; one module per concern.
Run it with `cargo xtask test`.
*/

mod support;

mod hostile;
mod launcher;
mod sidecar;
mod status;
