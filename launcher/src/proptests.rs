/*!
Property tests: the pane command is safe by construction, whatever bytes a directory holds.

The unit tests in `pane.rs` try a handful of hand-picked names; these try thousands of generated
ones (arbitrary bytes, and strings stitched from shell and tmux metacharacters) and run every
result through a real `/bin/sh -c`, because the only proof that quoting works is the shell's
own reading of it. A shell test spawns a process per case, so it runs 64 cases by default;
`MOSAIC_SHELL_CASES` (else `PROPTEST_CASES`) raises that, and `cargo xtask fuzz` does.
Failures are not persisted to `proptest-regressions/`: the shrunk input is printed instead.
*/

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::fleet::plain::{plain, Printable};
use crate::pane;

/// The agent command every shell case runs: it prints PATH and a marker, so stdout shows both
/// that the exec'd command ran once with intact arguments and what PATH it saw.
const AGENT: &str = "printf '%s|MARKER' \"$PATH\"";
/// The PATH the pane's shell inherits in these tests.
const BASE_PATH: &str = "/usr/bin:/bin";

/// Cases for a property: `var` if set, else `PROPTEST_CASES`, else `default`.
fn cases(var: &str, default: u32) -> u32 {
    [var, "PROPTEST_CASES"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(default)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Fragments a hostile directory name is made of: shell expansions that would create a file
/// in the current directory if they ever ran, quotes, separators, tmux formats, bad UTF-8.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"$(touch pwned)".to_vec()),
        Just(b"`touch pwned`".to_vec()),
        Just(b";touch pwned;".to_vec()),
        Just(b"'$(touch pwned)'".to_vec()),
        Just(b"\"$(touch pwned)\"".to_vec()),
        Just(b"' ; touch pwned ; '".to_vec()),
        Just(b"'\\''".to_vec()),
        Just(b"\n touch pwned \n".to_vec()),
        Just(b"&& touch pwned".to_vec()),
        Just(b"| tee pwned".to_vec()),
        Just(b"> pwned".to_vec()),
        Just(b"${HOME}".to_vec()),
        Just(b"$PATH".to_vec()),
        Just(b"~".to_vec()),
        Just(b"*".to_vec()),
        Just(b"#".to_vec()),
        Just(b"#{pane_pid}".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\"".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"caf\xe9".to_vec()),
        Just("é".as_bytes().to_vec()),
        Just(b"/".to_vec()),
        "[a-z]{1,4}".prop_map(String::into_bytes),
    ]
}

/// A directory name: arbitrary bytes, or metacharacter soup, never `:` or NUL (a PATH entry
/// cannot hold `:`, and `runtime_bin_prefix` drops such candidates; no path holds NUL).
fn dir_name() -> impl Strategy<Value = Vec<u8>> {
    let arbitrary = prop::collection::vec(any::<u8>(), 0..48);
    let soup = prop::collection::vec(fragment(), 1..8).prop_map(|parts| parts.concat());
    prop_oneof![arbitrary, soup]
        .prop_filter("a PATH entry has no ':' or NUL", |b| {
            !b.contains(&b':') && !b.contains(&0)
        })
        .prop_map(|mut name| {
            // Absolute, like every prefix the launcher builds (it makes them absolute first).
            name.insert(0, b'/');
            name
        })
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes.to_vec()))
}

/// A fresh empty directory for one case: the shell runs in it, so any expansion that ran
/// (`touch pwned`, `> pwned`, ...) leaves a file behind.
struct Canary(PathBuf);

impl Canary {
    fn new() -> Canary {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "mosaic-launcher-proptest-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create canary dir");
        Canary(dir)
    }

    fn leftovers(&self) -> Vec<OsString> {
        std::fs::read_dir(&self.0)
            .expect("read canary dir")
            .map(|e| e.expect("canary entry").file_name())
            .collect()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `script` with `sh -c` in `cwd`, with a bare environment.
fn sh(script: &OsStr, cwd: &Path) -> std::process::Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", BASE_PATH)
        .env("HOME", cwd)
        .output()
        .expect("run /bin/sh")
}

proptest! {
    #![proptest_config(config(cases("MOSAIC_SHELL_CASES", 64)))]

    /// Every prefix directory reaches the pane's PATH byte for byte, in order, before the
    /// inherited PATH; the agent command runs once, intact; nothing else runs.
    #[test]
    fn shell_reads_the_prefix_back_exactly(
        dirs in prop::collection::vec(dir_name(), 1..4),
    ) {
        let prefix: Vec<PathBuf> = dirs.iter().map(|d| path(d)).collect();
        let script = pane::command(&prefix, OsStr::new(AGENT));
        let canary = Canary::new();
        let out = sh(&script, &canary.0);
        let mut want = dirs.join(&b':');
        want.extend_from_slice(b":");
        want.extend_from_slice(BASE_PATH.as_bytes());
        want.extend_from_slice(b"|MARKER");
        prop_assert!(
            out.status.success() && out.stderr.is_empty(),
            "sh failed on {:?}: {} {:?}",
            script, out.status, String::from_utf8_lossy(&out.stderr)
        );
        prop_assert_eq!(
            &out.stdout, &want,
            "script {:?} printed {:?}",
            script, String::from_utf8_lossy(&out.stdout)
        );
        let left = canary.leftovers();
        prop_assert!(left.is_empty(), "script {:?} created {:?}", script, left);
    }

    /// `quote` is exact for every byte string without NUL, `:` included: the shell's one word
    /// is the input.
    #[test]
    fn quote_is_one_exact_word(
        word in prop_oneof![
            prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 0..64),
            prop::collection::vec(fragment(), 0..8).prop_map(|p| p.concat()),
        ],
    ) {
        let mut script = b"printf '%s|' ".to_vec();
        pane::quote(&mut script, &word);
        let canary = Canary::new();
        let out = sh(OsStr::from_bytes(&script), &canary.0);
        let mut want = word.clone();
        want.push(b'|');
        prop_assert!(out.status.success(), "{:?}: {}", script, out.status);
        // One word: a split would print `a|b|`, not `a b|`.
        prop_assert_eq!(&out.stdout, &want, "script {:?}", OsStr::from_bytes(&script));
        prop_assert!(canary.leftovers().is_empty(), "script {:?} ran something", script);
    }
}

proptest! {
    #![proptest_config(config(cases("PROPTEST_CASES", 1024)))]

    /// The operator's command is forwarded byte for byte after `exec `, whatever it holds,
    /// and the prefix part is the same for every command.
    #[test]
    fn command_is_forwarded_byte_for_byte(
        dirs in prop::collection::vec(dir_name(), 0..4),
        command in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let prefix: Vec<PathBuf> = dirs.iter().map(|d| path(d)).collect();
        let built = pane::command(&prefix, OsStr::from_bytes(&command)).into_vec();
        let bare = pane::command(&prefix, OsStr::new("")).into_vec();
        prop_assert!(bare.ends_with(b"exec "));
        prop_assert_eq!(&built[..bare.len()], &bare[..]);
        prop_assert_eq!(&built[bare.len()..], &command[..]);
        if prefix.is_empty() {
            prop_assert_eq!(&bare[..], b"exec ");
        } else {
            prop_assert!(bare.starts_with(b"export PATH='"));
            prop_assert!(bare.ends_with(b":\"$PATH\"; exec "));
        }
    }

    /// The quoted prefix holds no byte outside quotes but the `:` separators, the `\'` escapes
    /// and the `"$PATH"` tail: a scanner that tracks single quotes finds nothing else.
    #[test]
    fn nothing_but_separators_is_unquoted(dirs in prop::collection::vec(dir_name(), 1..4)) {
        let prefix: Vec<PathBuf> = dirs.iter().map(|d| path(d)).collect();
        let built = pane::command(&prefix, OsStr::new("x")).into_vec();
        let body = built
            .strip_prefix(b"export PATH=".as_slice())
            .and_then(|b| b.strip_suffix(b"\"$PATH\"; exec x".as_slice()))
            .expect("shape");
        let mut unquoted = Vec::new();
        let mut inside = false;
        let mut bytes = body.iter().copied().peekable();
        while let Some(b) = bytes.next() {
            match (inside, b) {
                (_, b'\'') => inside = !inside,
                (false, b'\\') => {
                    // Outside quotes only the escaped quote of `'\''` may appear.
                    prop_assert_eq!(bytes.next(), Some(b'\''), "stray backslash in {:?}", body);
                }
                (false, other) => unquoted.push(other),
                (true, _) => {}
            }
        }
        prop_assert!(!inside, "unterminated quote in {:?}", body);
        prop_assert!(unquoted.iter().all(|&b| b == b':'), "unquoted {:?}", unquoted);
        prop_assert_eq!(unquoted.len(), prefix.len());
    }

    /// The candidates are the runtime bin then the two home directories, in that order.
    #[test]
    fn candidates_keep_their_order(
        runtime_bin in proptest::option::of(dir_name()),
        home in proptest::option::of(dir_name()),
    ) {
        let rb = runtime_bin.as_deref().map(path);
        let home_os = home.as_deref().map(|h| OsString::from_vec(h.to_vec()));
        let got = pane::candidates(rb.as_deref(), home_os.as_deref());
        let mut want: Vec<PathBuf> = rb.into_iter().collect();
        if let Some(h) = home.as_deref().map(path) {
            want.push(h.join(".npm-global/bin"));
            want.push(h.join(".local/bin"));
        }
        prop_assert_eq!(got, want);
    }
}

/// A directory tree of real candidates: some exist, some do not, some hold `:`; the prefix
/// keeps exactly the existing ones without `:`, first occurrence first.
#[test]
fn prefix_filters_real_directories() {
    let canary = Canary::new();
    let names: [&[u8]; 6] = [b"a b", b"x:y", b"$(q)", b"\xff", b"missing", b"'"];
    for name in names {
        if name != b"missing" {
            std::fs::create_dir_all(canary.0.join(OsStr::from_bytes(name))).unwrap();
        }
    }
    proptest!(config(cases("PROPTEST_CASES", 256)), |(picks in prop::collection::vec(0..names.len(), 0..10))| {
        let list: Vec<PathBuf> = picks.iter().map(|&i| canary.0.join(OsStr::from_bytes(names[i]))).collect();
        let got = pane::runtime_bin_prefix(&list);
        let mut want: Vec<PathBuf> = Vec::new();
        for (&i, p) in picks.iter().zip(&list) {
            let keep = names[i] != b"x:y" && names[i] != b"missing" && !want.contains(p);
            if keep {
                want.push(p.clone());
            }
        }
        prop_assert_eq!(got, want);
    });
}

/// What an agent may print: arbitrary bytes, stitched with pieces of escape sequences, C0 and
/// C1 controls (raw and as UTF-8), and whole and broken UTF-8.
fn terminal_output() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        Just(b"\x1b".to_vec()),
        Just(b"\x1b[".to_vec()),
        Just(b"\x1b]0;".to_vec()),
        Just(b"\x1bP".to_vec()),
        Just(b"\x1b\\".to_vec()),
        Just(b"\x07".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\x9b".to_vec()),
        Just("\u{9b}".as_bytes().to_vec()),
        Just("\u{85}".as_bytes().to_vec()),
        Just("é→".as_bytes().to_vec()),
        Just(b"\xe2\x86".to_vec()),
        Just(b"\xed\xa0\x80".to_vec()),
        "[a-z0-9;]{1,4}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// `bytes` fed to one [`Printable`] in the given chunks.
fn in_chunks(bytes: &[u8], cuts: &[usize]) -> String {
    let mut p = Printable::default();
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, bytes.len());
        p.push(&bytes[at..cut], &mut out);
        at = cut;
    }
    p.push(&bytes[at..], &mut out);
    String::from_utf8(out).expect("whole characters only")
}

proptest! {
    #![proptest_config(config(cases("PROPTEST_CASES", 1024)))]

    /// Whatever an agent prints: `logs` passes on UTF-8 with no control character but `\n` and
    /// `\t` (no ESC, no C1, no DEL) and no U+FFFD, however the reads cut it.
    #[test]
    fn logs_pass_on_plain_text_only(
        bytes in terminal_output(),
        mut cuts in prop::collection::vec(0..256usize, 0..4),
    ) {
        cuts.sort_unstable();
        // (Not always the same text: after a malformed sequence, vte may resume printing at
        // another byte depending on where a read ended. Plain either way.)
        for out in [plain(&bytes), in_chunks(&bytes, &cuts)] {
            for c in out.chars() {
                prop_assert!(
                    c == '\n' || c == '\t' || !(c.is_control() || c == char::REPLACEMENT_CHARACTER),
                    "{:?} in {:?}", c, out
                );
            }
        }
    }

    /// Text without controls passes unchanged.
    #[test]
    fn logs_pass_plain_text_unchanged(text in "[^\\p{Cc}\u{fffd}]*") {
        prop_assert_eq!(plain(text.as_bytes()), text);
    }
}
