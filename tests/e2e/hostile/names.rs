/*!
Hostile names and paths: agent names that would leave the heartbeat dir or smuggle code,
workdirs and heartbeat dirs of metacharacters, planted symlinks and directories, a target
named like a zombie.
*/

use super::*;

// Agent names that would leave the heartbeat dir, be rewritten by tmux, or smuggle shell code
// are refused by both binaries before anything starts.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_agent_names_are_refused() {
    e2e!();
    let sb = Sandbox::new();
    let work = sb.path("work");
    let long = "a".repeat(65);
    let huge = "b".repeat(100_000);
    let names: Vec<&str> = vec![
        "../x",
        "..",
        ".",
        "a/b",
        "/etc/passwd",
        "a=b",
        "=a",
        "a:b",
        "a.b",
        "a.hb",
        "$(touch canary)",
        "`touch canary`",
        "a;touch canary",
        "a|touch canary",
        "a&&touch canary",
        "a b",
        "a\nb",
        "a\tb",
        "a\rb",
        "#{pane_pid}",
        "a'b",
        "a\"b",
        "a\\b",
        "-",
        "-rf",
        "_a",
        "",
        "é",
        "\u{ff21}",
        "a\u{200b}",
        &long,
        &huge,
    ];
    let target = sb.spawn_target().to_string();
    for name in &names {
        let err = refused(sb.launcher(name).current_dir(&work), 2, "mosaic-launcher");
        // A leading `-x` is an option to clap; everything else reaches `validate::agent`.
        assert!(
            err.contains("invalid agent name") || (name.starts_with('-') && name.len() > 1),
            "{name:?}: {err}"
        );
        let mut hb = sb.hb();
        hb.current_dir(&work)
            .args(["--pid", &target, "--file"])
            .arg(sb.hb_file("x"))
            .arg(format!("--agent={name}"));
        refused(&mut hb, 2, "mosaic-hb");
    }
    // `--` leaves no agent at all.
    refused(sb.launcher("--").current_dir(&work), 2, "mosaic-launcher");
    assert_eq!(sb.session_count(), 0, "a refused name started tmux");
    assert!(
        !sb.hb_dir().exists(),
        "a refused name wrote the heartbeat dir"
    );
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    assert!(sidecars_watching(target.parse().unwrap()).is_empty());
}

// The longest allowed name, and names at the edges of the alphabet, work end to end.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn edge_of_the_rule_names_work() {
    e2e!();
    let sb = Sandbox::new();
    let longest = format!("Z{}", "9-_".repeat(21));
    assert_eq!(longest.len(), 64);
    for name in [longest.as_str(), "0", "a-", "A_"] {
        let out = succeeds(&mut sb.launcher(name));
        assert!(out.starts_with(&format!("started agent {name} ")), "{out}");
        assert!(sb.has_session(name));
        let rec = wait_for_status(&sb.hb_file(name), Status::Ok, WAIT);
        assert_eq!(rec.agent.as_deref(), Some(name));
        assert_eq!(rec.pid, sb.pane_pid(name));
    }
    assert_eq!(sb.session_count(), 4);
    assert_eq!(
        names(&sb.hb_dir())
            .iter()
            .filter(|n| n.as_bytes().ends_with(b".hb"))
            .count(),
        4
    );
    end_agents(&sb);
}

// A workdir made of shell and tmux metacharacters, a newline and bad UTF-8 is the pane's
// directory exactly (per the kernel and per tmux), and nothing in it ran.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_workdir_reaches_the_pane_exactly() {
    e2e!();
    let sb = Sandbox::new();
    let workdir = sb.path("work").join(os(
        b"$(touch canary) `touch canary` ; touch canary\n'q' \"dq\" #{session_name} ##{pane_pid} \xff\xfe \\ & | > canary",
    ));
    std::fs::create_dir_all(&workdir).unwrap();
    let before = tree(&sb.dir);
    succeeds(
        sb.launcher("wd")
            .env("MOSAIC_AGENT_WORKDIR", &workdir)
            .current_dir(sb.path("work")),
    );
    let pid = sb.pane_pid("wd");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd.as_os_str().as_bytes(), workdir.as_os_str().as_bytes());
    assert_eq!(sb.pane_path("wd"), workdir.as_os_str().as_bytes());
    wait_for_status(&sb.hb_file("wd"), Status::Ok, WAIT);
    let new: Vec<PathBuf> = tree(&sb.dir)
        .difference(&before)
        .filter(|p| !p.starts_with(sb.hb_dir()))
        // The agent's transcript (transcripts.rs) is the other place a launch writes.
        .filter(|p| !p.starts_with(sb.path("home/.local")))
        .cloned()
        .collect();
    assert!(
        new.is_empty(),
        "the launch wrote outside its heartbeat dir: {new:?}"
    );
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    assert!(
        names(&workdir).is_empty(),
        "something ran in the workdir: {:?}",
        names(&workdir)
    );
    end_agents(&sb);
}

// A heartbeat dir full of metacharacters works, and everything the launch writes is inside it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_heartbeat_dir_is_used_exactly_and_only() {
    e2e!();
    let sb = Sandbox::new();
    let hb_dir = sb.path("work").join(os(
        b"hb dir 'q' \"dq\" $(touch canary) `touch canary` ; \xff #{x}/new\nlevel",
    ));
    let before = tree(&sb.dir);
    let out = succeeds(
        sb.launcher("hd")
            .env("MOSAIC_HEARTBEAT_RUN_DIR", &hb_dir)
            .current_dir(sb.path("work")),
    );
    assert!(out.starts_with("started agent hd"), "{out}");
    let file = hb_dir.join("hd.hb");
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    assert_eq!(rec.pid, sb.pane_pid("hd"));
    assert_eq!(sidecars_for_file(&file).len(), 1);
    assert_eq!(
        std::fs::metadata(&hb_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(strangers(&hb_dir, b"hd"), Vec::<OsString>::new());
    let parent = hb_dir.parent().unwrap();
    let outside: Vec<PathBuf> = tree(&sb.dir)
        .difference(&before)
        .filter(|p| !p.starts_with(&hb_dir) && *p != parent)
        // The agent's transcript (transcripts.rs) is the other place a launch writes.
        .filter(|p| !p.starts_with(sb.path("home/.local")))
        .cloned()
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the heartbeat dir: {outside:?}"
    );
    assert!(canaries(&sb.dir).is_empty(), "{:?}", canaries(&sb.dir));
    end_agents(&sb);
}

// A symlink planted at the lock file's name is not followed: the sidecar refuses to start, and
// the file it points at is untouched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn planted_lock_symlink_is_not_followed() {
    e2e!();
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.hb_dir()).unwrap();
    let victim = sb.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, sb.hb_dir().join(".lk.hb.lock")).unwrap();
    let target = sb.spawn_target();
    let file = sb.hb_file("lk");
    let out = run(sb
        .hb()
        .args(["--pid", &target.to_string(), "--file"])
        .arg(&file));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2))
            && err.starts_with("mosaic-hb: cannot lock heartbeat file")
            && err.lines().count() == 1,
        "{err} ({})",
        out.status
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(sidecars_watching(target).is_empty());
    // Through the launcher: the session it made is removed again, nothing is left.
    let (_, err) = expect_exit(sb.launcher("lk").current_dir(sb.path("work")), 1);
    assert!(
        err.starts_with("mosaic-launcher: cannot start heartbeat sidecar"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!sb.has_session("lk"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    wait_no_sidecars("lk.hb", || sidecars_for_file(&file));
}

// A target that names itself like a zombie's /proc line (`x) Z 1 ...`) is still alive to the
// sidecar: the state is read after the kernel's last `)`, not the process's.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_target_named_like_a_zombie_is_alive() {
    e2e!();
    let sb = Sandbox::new();
    let fake = sb.path("work").join("x) Z 1 2 (");
    std::os::unix::fs::symlink(which("sleep"), &fake).unwrap();
    // argv[0] stays `sleep` for multi-call binaries; comm comes from the file name.
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(&fake)
            .arg0("sleep")
            .arg("600")
            .spawn()
            .unwrap()
    };
    let target = child.id() as i32;
    sb.track(target);
    let comm = || std::fs::read_to_string(format!("/proc/{target}/comm")).unwrap_or_default();
    wait_until(
        "the target to carry its hostile name",
        WAIT,
        || comm().starts_with("x) Z 1 2 (").then_some(()),
        || format!("comm {:?}", comm()),
    );
    let file = sb.hb_file("zz");
    let hb = sb.start_sidecar(target, &file, "0.05", logged(&sb.path("zz.log")));
    wait_beats(hb, 5);
    let rec = read_record(&file).unwrap();
    assert_eq!(rec.status, Status::Ok, "{}", show_file(&file));
    assert!(rec.seq.unwrap() >= 2, "{}", show_file(&file));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(target),
        nix::sys::signal::Signal::SIGKILL,
    );
    let mut child = child;
    let _ = child.wait();
    wait_for_status(&file, Status::Exited, WAIT);
    wait_gone(hb);
}

// `XDG_RUNTIME_DIR` is checked level by level like the `/tmp` fallback (`su` without `-` keeps
// the previous user's): a world-writable one with another user's symlink planted at `mosaic`,
// ours with that symlink, and ours with another user's world-writable `mosaic/heartbeat`. Both
// binaries refuse each, and nothing is created through the link; a private one is used.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn xdg_runtime_dir_is_checked_level_by_level() {
    e2e!();
    if !is_root() {
        let why = format!("needs root to plant another user's files (uid {})", euid());
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    let elsewhere = sb.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = sb.spawn_target();
    let make = |name: &str, mode: u32| {
        let xdg = sb.path(name);
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(mode)).unwrap();
        xdg
    };
    let plant_link = |xdg: &Path| {
        let link = xdg.join("mosaic");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    };
    let open_link = make("xdg-open", 0o777);
    plant_link(&open_link);
    let ours_link = make("xdg-link", 0o700);
    plant_link(&ours_link);
    let foreign = make("xdg-foreign", 0o700);
    let heartbeat = foreign.join("mosaic/heartbeat");
    std::fs::create_dir_all(&heartbeat).unwrap();
    std::fs::set_permissions(
        foreign.join("mosaic"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(&heartbeat, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&heartbeat, Some(65534), Some(65534)).unwrap();
    let cases = [
        (
            &open_link,
            open_link.clone(),
            "it is writable by group or others (mode 777)",
        ),
        (
            &ours_link,
            ours_link.join("mosaic"),
            "it is not a real directory",
        ),
        (
            &foreign,
            heartbeat.clone(),
            "it is owned by uid 65534, not 0",
        ),
    ];
    for (xdg, refused_dir, reason) in cases {
        let file = xdg.join("mosaic/heartbeat/x.hb");
        let mut hb = sb.hb();
        hb.args(["--pid", &target.to_string(), "--file"])
            .arg(&file)
            .env("XDG_RUNTIME_DIR", xdg);
        let err = refused(&mut hb, 2, "mosaic-hb");
        let want = format!("refusing heartbeat dir {}: {reason}", refused_dir.display());
        assert!(err.contains(&want), "{want}\n{err}");
        let mut launcher = sb.launcher("x");
        launcher
            .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
            .env("XDG_RUNTIME_DIR", xdg);
        let err = refused(&mut launcher, 1, "mosaic-launcher");
        assert!(err.contains(&want), "{want}\n{err}");
        assert!(!sb.has_session("x"), "{}", xdg.display());
        assert_eq!(
            tree(&elsewhere),
            BTreeSet::new(),
            "{}: written through the planted link",
            xdg.display()
        );
    }
    assert!(!heartbeat.join("x.hb").exists());
    // A private one is used, and what we create there is private too.
    let private = make("xdg-private", 0o700);
    let mut launcher = sb.launcher("x");
    launcher
        .env_remove("MOSAIC_HEARTBEAT_RUN_DIR")
        .env("XDG_RUNTIME_DIR", &private);
    succeeds(&mut launcher);
    let file = private.join("mosaic/heartbeat/x.hb");
    wait_for_status(&file, Status::Ok, WAIT);
    for level in [private.join("mosaic"), private.join("mosaic/heartbeat")] {
        let mode = std::fs::metadata(&level).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", level.display());
    }
}

// The `/tmp` fallback dir, planted by another user before us: a symlink to elsewhere, or a real
// directory they own. Both binaries refuse it, and nothing is created through it. Run in a
// private mount namespace with its own `/tmp`, so the machine's real `/tmp/mosaic-UID` is never
// touched.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn planted_tmp_fallback_dir_is_refused_untouched() {
    e2e!();
    if let Err(why) = root_with_unshare("for a private /tmp") {
        return skip(test_name!(), why);
    }
    let sb = Sandbox::new();
    let script = r#"
        set -u
        # The checkout (our cwd, the launcher's default workdir) may live under /tmp too.
        cd /
        # The binaries may live under /tmp: bind them somewhere the new /tmp cannot hide.
        for at in /mnt /srv /media /opt; do [ -d "$at" ] && break; done
        mount --bind "$BIN_DIR" "$at" || exit 77
        HB="$at/mosaic-hb" LAUNCHER="$at/mosaic-launcher"
        mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 77
        root="/tmp/mosaic-$(id -u)"
        mkdir /tmp/elsewhere
        for plant in symlink foreign writable; do
            case $plant in
                symlink) ln -s /tmp/elsewhere "$root" ;;
                foreign) rm "$root"; mkdir -m 0755 "$root"; chown 65534 "$root" ;;
                writable) rmdir "$root"; mkdir "$root"; chmod 0777 "$root" ;;
            esac
            "$HB" --pid $$ --file "$root/heartbeat/a.hb" 2>/tmp/err
            echo "$plant hb $? $(cat /tmp/err)"
            env -u XDG_RUNTIME_DIR -u MOSAIC_HEARTBEAT_RUN_DIR "$LAUNCHER" ag \
                --command 'sleep 1' --socket "$SOCKET" 2>/tmp/err
            echo "$plant launcher $? $(cat /tmp/err)"
            tmux -L "$SOCKET" kill-server 2>/dev/null
            echo "$plant created $(find -H "$root" -mindepth 1 | tr '\n' ' ')"
        done
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("BIN_DIR", bin("mosaic-hb").parent().unwrap())
        .env("SOCKET", &sb.socket)
        .env("HOME", sb.path("home"))
        .env_remove("TMUX");
    let out = run(&mut cmd);
    if out.status.code() == Some(77) {
        let why = format!(
            "cannot mount here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return skip(test_name!(), why);
    }
    assert!(out.status.success(), "{}", explain(&cmd, &out));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |plant: &str, what: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{plant} {what} ")))
            .unwrap_or_else(|| panic!("no {plant} {what} in {text}"))
            .to_string()
    };
    let reasons = [
        ("symlink", "it is not a real directory"),
        ("foreign", "it is owned by uid 65534"),
        ("writable", "it is writable by group or others (mode 777)"),
    ];
    for (plant, reason) in reasons {
        let hb = line(plant, "hb");
        assert!(hb.contains(reason), "{plant}: {hb}");
        assert!(
            hb.starts_with("2 mosaic-hb: refusing heartbeat dir /tmp/mosaic-"),
            "{plant}: {hb}"
        );
        let launcher = line(plant, "launcher");
        assert!(
            launcher.starts_with("1 mosaic-launcher: refusing heartbeat dir /tmp/mosaic-")
                && launcher.contains(reason),
            "{plant}: {launcher}"
        );
        assert!(!hb.contains("panicked") && !launcher.contains("panicked"));
        assert_eq!(
            line(plant, "created").trim(),
            "",
            "{plant}: a refused fallback dir was written into (the planted target now holds it)"
        );
    }
}
