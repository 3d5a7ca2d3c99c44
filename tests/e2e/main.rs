/*!
The end-to-end suite: the release binaries against a real tmux on a private socket per test,
real processes, real signals and real files. One test binary; one module per concern.
Run it with `cargo xtask test`.

Every end-to-end test is `#[ignore]`d with [`support::IGNORED`] as its reason, so a plain
`cargo test --workspace` lists each one as not run (they need tmux and the release binaries);
`cargo xtask test` builds the binaries and runs them with `--include-ignored`.
*/

mod support;

mod activity;
mod bells;
mod exporter;
mod first_hour;
mod fleet;
mod fleet_file;
mod hooks;
mod hostile;
mod launch_truth;
mod launcher;
mod races;
mod readers;
mod real_world;
mod send;
mod sidecar;
mod status;
mod supervise;
mod top;
mod transcripts;
mod worktrees;

/// Every `#[test]` in the suite's modules (but this one) carries the `#[ignore]` that keeps it from passing
/// unrun under a plain `cargo test`: a test added without it fails here.
#[test]
fn every_end_to_end_test_is_ignored_outside_xtask() {
    let ignore = format!("#[ignore = {:?}]", support::IGNORED);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    let main = dir.join("main.rs");
    let mut sources = Vec::new();
    // The modules' files, and those of their submodules (`hostile/races.rs`); not `support/`,
    // whose own unit tests (the Prometheus parser's) need nothing and run everywhere.
    let mut dirs = vec![dir.clone()];
    while let Some(at) = dirs.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != dir.join("support") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && path != main {
                let text = std::fs::read_to_string(&path).unwrap();
                let name = path.strip_prefix(&dir).unwrap().display().to_string();
                sources.push((name, text));
            }
        }
    }
    assert!(!sources.is_empty(), "no modules found in {}", dir.display());
    let mut missing = Vec::new();
    for (file, text) in &sources {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (at, pair) in lines.windows(2).enumerate() {
            if pair[0] == "#[test]" && pair[1] != ignore {
                missing.push(format!("{file}:{}", at + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "add `{ignore}` under `#[test]` at {missing:?}"
    );
}
