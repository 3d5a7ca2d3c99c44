/*!
What the readers (`mosaic-hb status`, `mosaic-fleet ls`, the exporter: one scanner) agree to
read in a heartbeat directory: only a file a sidecar of this user could have written. A hard
link to a secret, or a file another user planted, is `invalid`, and no output shows a byte of
it.
*/

use std::path::Path;
use std::process::Command;

use crate::support::*;
use crate::{e2e, test_name};

/// A line that must never reach any output: it stands for `/etc/shadow`'s first line.
const SECRET: &str = "root:$6$SECRETSALT$SECRETHASHSECRETHASHSECRETHASH:19700:0:99999:7:::";

/// A heartbeat directory with one honest record (`good`) beside `planted`, set up by `plant`;
/// asserts `mosaic-hb status` (table and JSON) and `mosaic-fleet ls` call `planted` invalid
/// for `why` and never show the secret.
#[track_caller]
fn refused(sb: &Sandbox, plant: impl Fn(&Path), why: &str) {
    let dir = sb.hb_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let secret = sb.path("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    plant(&secret);
    let ts = crate::status::rfc3339(std::time::SystemTime::now());
    let good = format!("ts={ts}\npid=1\nstatus=stopped\nagent=good\ninterval=1\n");
    std::fs::write(dir.join("good.hb"), good).unwrap();

    let table = expect_success(sb.hb().arg("status").arg(&dir));
    let line = table
        .lines()
        .find(|l| l.starts_with("x "))
        .unwrap_or_else(|| panic!("no row for x:\n{table}"));
    assert!(line.contains("invalid") && line.contains(why), "{table}");
    assert!(table.lines().any(|l| l.starts_with("good ")), "{table}");

    let json = expect_success(sb.hb().args(["status", "--json"]).arg(&dir));
    assert!(json.contains(why), "{json}");

    let mut ls = Command::new(bin("mosaic-fleet"));
    ls.arg("ls")
        .env_remove("TMUX")
        .env("HOME", sb.path("home"))
        .env("MOSAIC_TMUX_SOCKET", &sb.socket)
        .env("MOSAIC_HEARTBEAT_RUN_DIR", &dir);
    let out = run(&mut ls);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains(why), "{}", explain(&ls, &out));

    for text in [&table, &json, &shown] {
        assert!(
            !text.contains("SECRET"),
            "a planted file's content shown:\n{text}"
        );
    }
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_hard_link_is_invalid_and_never_shown() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    refused(
        &sb,
        |secret| std::fs::hard_link(secret, dir.join("x.hb")).unwrap(),
        "2 hard links",
    );
}

#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn another_users_file_is_invalid_and_never_shown() {
    e2e!();
    if !nix::unistd::geteuid().is_root() {
        return skip(test_name!(), "giving a file to another user needs root");
    }
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    refused(
        &sb,
        |secret| {
            let planted = dir.join("x.hb");
            std::fs::copy(secret, &planted).unwrap();
            std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
        },
        "owned by uid 65534",
    );
}
