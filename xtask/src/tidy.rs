/*!
Tidy: the rules ARCHITECTURE.md states about the source, as tests that fail (rust-analyzer's
`tidy`). Run by `cargo xtask test` with the unit tests; each failure names the file and line.

- No raw `libc` call outside `core/src/sys.rs`, in any crate: a `libc::` path to a function
  (lowercase, then `(`) and `use libc` appear nowhere else. (`libc`'s constants and types are
  not calls.)
- In the binaries (`core/`, `launcher/`, `hb-sidecar/`, `exporter/`), only
  `launcher/src/tmux.rs` runs tmux: no other file has a `"tmux"` (or `"tmux -..."`) string.
- `unsafe` only in the files of [`UNSAFE`], at most as many blocks as each is allowed: 10 in
  all outside the end-to-end tests, 2 in them.
- No source file over [`MAX_FILE_LINES`] lines, tests included: split it by topic. No
  function over [`MAX_FN_LINES`] lines, signature to closing brace: split it into its steps;
  the one exception is a flat list ([`LONG_LISTS`]). Functions are found as rustfmt lays them
  out: a line that starts (after its indent and qualifiers) with `fn NAME`, its body ending
  at the first later line that is that indent and `}`.
- Every source file opens with a module doc (a `//!` line, or a block opened by slash, star
  and bang) and is named in
  ARCHITECTURE.md's codemap.
*/

use std::path::{Path, PathBuf};

/// The crates whose sources are checked, from the workspace root.
const CRATES: [&str; 7] = [
    "core",
    "launcher",
    "hb-sidecar",
    "log-writer",
    "exporter",
    "xtask",
    "tests",
];

/// The crates that make the binaries, where only `tmux.rs` runs tmux.
const BINARIES: [&str; 5] = ["core", "launcher", "hb-sidecar", "log-writer", "exporter"];

/// The only file with raw `libc` calls.
const SYS: &str = "core/src/sys.rs";

/// This file, whose strings show what the rules look for: exempt from them.
const TIDY: &str = "xtask/src/tidy.rs";

/// The only file that runs tmux.
const TMUX: &str = "launcher/src/tmux.rs";

/// Where `unsafe` may be, and how many times at most.
const UNSAFE: [(&str, usize); 3] = [
    // close_range, its fallback for old kernels, malloc_trim, madvise.
    ("core/src/sys.rs", 4),
    // The signal handler's write end, sigaction and its undoing.
    ("launcher/src/child.rs", 3),
    // pre_exec, to let a test's file descriptor leak into a sidecar on purpose.
    ("tests/e2e/support/mod.rs", 1),
];

/// The most lines a source file may have.
const MAX_FILE_LINES: usize = 850;

/// The most lines a function may have.
const MAX_FN_LINES: usize = 100;

/// Functions allowed to be longer, each a flat list that reads best in one piece: (file,
/// function).
const LONG_LISTS: [(&str, &str); 1] = [
    // Every Prometheus family with its HELP, TYPE and samples, in exposition order.
    ("core/src/status/metrics.rs", "prometheus"),
];

/// One source file: its path from the workspace root and its text.
struct Source {
    path: String,
    text: String,
}

impl Source {
    /// Its lines of code, numbered from 1, with comments and module docs blanked out (so a
    /// rule is about code, not about prose that names it).
    fn code_lines(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut in_block = false;
        for (i, line) in self.text.lines().enumerate() {
            let mut code = String::new();
            let mut rest = line;
            loop {
                if in_block {
                    match rest.find("*/") {
                        Some(at) => {
                            rest = &rest[at + 2..];
                            in_block = false;
                        }
                        None => break,
                    }
                } else {
                    let block = rest.find("/*");
                    let line_comment = rest.find("//");
                    match (block, line_comment) {
                        (Some(b), l) if l.is_none_or(|l| b < l) => {
                            code.push_str(&rest[..b]);
                            rest = &rest[b + 2..];
                            in_block = true;
                        }
                        (_, Some(l)) => {
                            code.push_str(&rest[..l]);
                            break;
                        }
                        _ => {
                            code.push_str(rest);
                            break;
                        }
                    }
                }
            }
            out.push((i + 1, code));
        }
        out
    }
}

fn root() -> PathBuf {
    crate::util::project_root()
}

/// Every `.rs` file of the checked crates (not `target/`), in a stable order.
fn sources() -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                if !path.ends_with("target") {
                    walk(&path, root, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push(Source { path: rel, text });
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    for krate in CRATES {
        walk(&root.join(krate), &root, &mut out);
    }
    assert!(out.len() > 50, "found only {} source files", out.len());
    out
}

/// Fails with every finding, one per line.
#[track_caller]
fn none(rule: &str, findings: Vec<String>) {
    assert!(findings.is_empty(), "{rule}:\n  {}", findings.join("\n  "));
}

/// `path:line: code` for each line of `sources` where `bad` finds something.
fn find(sources: &[Source], bad: impl Fn(&Source, &str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for source in sources {
        for (n, code) in source.code_lines() {
            if bad(source, &code) {
                out.push(format!("{}:{n}: {}", source.path, code.trim()));
            }
        }
    }
    out
}

/// Whether `code` calls a `libc` function or imports from `libc`.
fn calls_libc(code: &str) -> bool {
    if code.trim_start().starts_with("use libc") {
        return true;
    }
    code.match_indices("libc::").any(|(at, _)| {
        let rest = &code[at + "libc::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && rest[name.len()..].trim_start().starts_with('(')
    })
}

/// Whether `code` names the tmux program: a string (not a byte string: a process name
/// compared) that is `tmux`, or a command line that starts `tmux -`.
fn names_tmux(code: &str) -> bool {
    ["\"tmux\"", "\"tmux -"].iter().any(|pat| {
        code.match_indices(pat)
            .any(|(at, _)| !code[..at].ends_with('b'))
    })
}

/// How many times `code` opens an unsafe block, function, impl or extern block.
fn unsafe_count(code: &str) -> usize {
    code.match_indices("unsafe")
        .filter(|&(at, _)| {
            let before = code[..at].chars().next_back();
            let after = code[at + "unsafe".len()..].trim_start();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && ["{", "fn ", "impl", "extern"]
                    .iter()
                    .any(|w| after.starts_with(w))
        })
        .count()
}

/// The codemap section of ARCHITECTURE.md.
fn codemap() -> String {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("## Codemap").expect("a `## Codemap` section");
    let end = text[start + 2..]
        .find("\n## ")
        .map_or(text.len(), |n| start + 2 + n);
    text[start..end].to_string()
}

/// Whether the codemap names `path`: the whole path, or one of its ancestor directories
/// (`hb-sidecar/src/`) and the rest of the path (`activity/claude.rs`).
fn named(codemap: &str, path: &str) -> bool {
    codemap.contains(path)
        || path
            .match_indices('/')
            .any(|(at, _)| codemap.contains(&path[..=at]) && codemap.contains(&path[at + 1..]))
}

#[test]
fn no_libc_call_outside_sys() {
    none(
        &format!("raw libc outside {SYS} (use nix or rustix, or add a wrapper to {SYS})"),
        find(&sources(), |s, code| {
            ![SYS, TIDY].contains(&s.path.as_str()) && calls_libc(code)
        }),
    );
}

#[test]
fn only_tmux_rs_runs_tmux() {
    let sources: Vec<Source> = sources()
        .into_iter()
        .filter(|s| {
            BINARIES
                .iter()
                .any(|b| s.path.starts_with(&format!("{b}/")))
        })
        .collect();
    none(
        &format!("tmux run outside {TMUX} (add a method to Tmux)"),
        find(&sources, |s, code| s.path != TMUX && names_tmux(code)),
    );
}

#[test]
fn unsafe_only_where_allowed() {
    let mut findings = Vec::new();
    for source in sources().into_iter().filter(|s| s.path != TIDY) {
        let count: usize = source
            .code_lines()
            .iter()
            .map(|(_, code)| unsafe_count(code))
            .sum();
        let allowed = UNSAFE
            .iter()
            .find(|(path, _)| *path == source.path)
            .map_or(0, |&(_, n)| n);
        if count > allowed {
            findings.push(format!(
                "{}: {count} unsafe, {allowed} allowed",
                source.path
            ));
        }
    }
    none("unsafe beyond tidy::UNSAFE", findings);
    let in_tests: usize = UNSAFE
        .iter()
        .filter(|(p, _)| p.starts_with("tests/"))
        .map(|(_, n)| n)
        .sum();
    let outside: usize = UNSAFE.iter().map(|(_, n)| n).sum::<usize>() - in_tests;
    assert!(outside <= 10 && in_tests <= 2, "the budget is 10 and 2");
}

#[test]
fn every_file_has_a_module_doc_and_a_place_in_the_codemap() {
    let codemap = codemap();
    let mut findings = Vec::new();
    for source in sources() {
        let first = source.text.lines().find(|l| !l.trim().is_empty());
        if !first.is_some_and(|l| l.starts_with("/*!") || l.starts_with("//!")) {
            findings.push(format!(
                "{}: no module doc (`/*! ... */`) at the top",
                source.path
            ));
        }
        if !named(&codemap, &source.path) {
            findings.push(format!(
                "{}: not named in ARCHITECTURE.md's codemap",
                source.path
            ));
        }
    }
    none("files", findings);
}

/// A function's name, the line of its signature and its length in lines.
#[derive(Debug, PartialEq, Eq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// Every function with a body in `text` (nested ones too).
fn functions(text: &str) -> Vec<Function> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else {
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        // The signature may wrap: its body opens at the first line ending in `{`, unless a
        // `;` ends it first (a declaration in a trait or an `extern` block).
        let Some(open) = (at..lines.len()).find(|&i| {
            let l = lines[i].trim_end();
            l.ends_with('{') || l.ends_with(';') || (l.contains('{') && l.ends_with('}'))
        }) else {
            continue;
        };
        let opened = lines[open].trim_end();
        if opened.ends_with(';') {
            continue;
        }
        let end = if opened.ends_with('}') {
            open
        } else {
            let close = format!("{indent}}}");
            match (open + 1..lines.len()).find(|&i| lines[i].trim_end() == close) {
                Some(end) => end,
                None => continue,
            }
        };
        found.push(Function {
            name: name.to_string(),
            line: at + 1,
            lines: end - at + 1,
        });
    }
    found
}

/// The name of the function a line declares, if it declares one.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(scope) => scope.split_once(')')?.1,
            None => after,
        }
        .trim_start();
    }
    for qualifier in ["const ", "async ", "unsafe ", "extern \"C\" "] {
        if let Some(after) = rest.strip_prefix(qualifier) {
            rest = after.trim_start();
        }
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[test]
fn no_source_file_over_the_limit() {
    let findings = sources()
        .iter()
        .map(|s| (&s.path, s.text.lines().count()))
        .filter(|&(_, lines)| lines > MAX_FILE_LINES)
        .map(|(path, lines)| format!("{path}: {lines} lines"))
        .collect();
    none(
        &format!("source files over {MAX_FILE_LINES} lines (split each by topic)"),
        findings,
    );
}

#[test]
fn no_function_over_the_limit_but_the_flat_lists() {
    let mut findings = Vec::new();
    let mut lists = Vec::new();
    for source in sources() {
        for f in functions(&source.text) {
            if LONG_LISTS.contains(&(source.path.as_str(), f.name.as_str())) {
                lists.push((source.path.clone(), f.name));
            } else if f.lines > MAX_FN_LINES {
                findings.push(format!(
                    "{}:{}: fn {}, {} lines",
                    source.path, f.line, f.name, f.lines
                ));
            }
        }
    }
    none(
        &format!("functions over {MAX_FN_LINES} lines (split each into its steps)"),
        findings,
    );
    // An exception whose function went away would excuse nothing, or the next long function
    // of that name: drop or update it.
    for (path, name) in LONG_LISTS {
        assert!(
            lists.iter().any(|(p, n)| p == path && n == name),
            "tidy::LONG_LISTS names fn {name} in {path}, which is not there any more"
        );
    }
}

/// The checks themselves, on code that breaks each rule.
#[test]
fn the_checks_catch_what_they_look_for() {
    assert!(calls_libc("    let n = libc::getsid(0);"));
    assert!(calls_libc(
        "    unsafe { libc::kill (pid, libc::SIGKILL) };"
    ));
    assert!(calls_libc("use libc::c_int;"));
    assert!(!calls_libc("    signal(pid, libc::SIGKILL);"));
    assert!(!calls_libc("fn f(x: libc::c_int) {}"));
    assert!(names_tmux("    let mut cmd = Command::new(\"tmux\");"));
    assert!(names_tmux("    sh(\"tmux -L x kill-server\");"));
    assert!(!names_tmux("    failed(\"tmux timeout (--tmux-timeout)\")"));
    assert!(!names_tmux("    if comm.starts_with(b\"tmux\") {}"));
    assert_eq!(unsafe_count("let x = unsafe { f() }; unsafe fn g() {}"), 2);
    assert_eq!(
        unsafe_count("#![deny(unsafe_op_in_unsafe_fn)] let unsafe_x = 1;"),
        0
    );
    let source = Source {
        path: "x.rs".into(),
        text: "/*!\nunsafe { doc }\n*/\nlet a = 1; // unsafe { no }\nunsafe { yes }\n".into(),
    };
    let code: Vec<usize> = source
        .code_lines()
        .iter()
        .map(|(_, c)| unsafe_count(c))
        .collect();
    assert_eq!(code, [0, 0, 0, 0, 1]);
    let map =
        "- `hb-sidecar/src/activity.rs`: `activity/claude.rs`; `launcher/src/fleet/`: `plain.rs`";
    assert!(named(map, "hb-sidecar/src/activity/claude.rs"));
    assert!(named(map, "launcher/src/fleet/plain.rs"));
    assert!(!named(map, "launcher/src/fleet/other.rs"));
    assert!(!named(map, "core/src/plain.rs"));
    let text = "/// fn in a comment\npub(crate) fn one(\n    a: u8,\n) -> u8 {\n    a\n}\n\n\
                impl X {\n    pub const fn two() -> u8 { 2 }\n    fn declared(&self);\n\
                \x20   async unsafe fn three() {\n        fn inner() {\n        }\n    }\n}\n";
    let found = functions(text);
    let found: Vec<(&str, usize, usize)> = found
        .iter()
        .map(|f| (f.name.as_str(), f.line, f.lines))
        .collect();
    assert_eq!(
        found,
        [
            ("one", 2, 5),
            ("two", 9, 1),
            ("three", 11, 4),
            ("inner", 12, 2)
        ]
    );
    let long = format!(
        "fn long() {{\n{}}}\n",
        "    x();\n".repeat(MAX_FN_LINES - 1)
    );
    assert_eq!(functions(&long)[0].lines, MAX_FN_LINES + 1);
}
