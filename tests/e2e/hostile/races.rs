/*!
Races: many launchers for one agent, a fleet launched at once, many sidecars for one file.
One session, one sidecar, no lost agent.
*/

use super::*;

fn spawn_all(cmds: Vec<Command>) -> Vec<(Command, Output)> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut cmd| {
            let child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (cmd, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(cmd, child)| {
            let out = child.wait_with_output().unwrap();
            (cmd, out)
        })
        .collect()
}

// Twelve launchers for one agent: one session, one sidecar, all exit 0. Then its sidecar is
// killed and twelve more race to heal it: still one sidecar, exactly one restarted it.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn twelve_launchers_one_agent_then_twelve_healers() {
    e2e!();
    let sb = Sandbox::new();
    let file = sb.hb_file("herd");
    let launch = |n: usize| {
        let mut cmd = sb.launcher("herd");
        if n % 2 == 1 {
            cmd.arg("--json");
        }
        cmd
    };
    let results = spawn_all((0..12).map(launch).collect());
    let mut created = 0;
    for (cmd, out) in &results {
        assert_no_panic(cmd, out);
        assert!(out.status.success(), "{}", explain(cmd, out));
        let text = String::from_utf8_lossy(&out.stdout);
        let started = if text.starts_with('{') {
            json(&text)["status"] == "started"
        } else {
            text.starts_with("started agent herd")
        };
        created += usize::from(started);
    }
    assert_eq!(created, 1, "exactly one launcher creates the session");
    assert_eq!(sb.session_count(), 1);
    let pane = sb.pane_pid("herd");
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    let first = rec.hb_pid.unwrap();
    assert_eq!(sidecars_watching(pane), vec![first]);
    wait_until(
        "more beats from the same sidecar",
        WAIT,
        || read_record(&file).filter(|r| r.seq > rec.seq.map(|s| s + 3)),
        || show_file(&file),
    );
    assert_eq!(read_record(&file).unwrap().hb_pid, Some(first));
    assert_eq!(
        sidecars_watching(pane),
        vec![first],
        "a second writer appeared"
    );

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_gone(first);
    let results = spawn_all((0..12).map(launch).collect());
    let mut restarted = 0;
    for (cmd, out) in &results {
        assert_no_panic(cmd, out);
        assert!(out.status.success(), "{}", explain(cmd, out));
        let text = String::from_utf8_lossy(&out.stdout);
        let (running, healed) = if text.starts_with('{') {
            let report = json(&text);
            (
                report["status"] == "already running",
                report["sidecar"] == "started",
            )
        } else {
            (
                text.contains("already running"),
                text.contains("(sidecar restarted)"),
            )
        };
        assert!(running, "{text}");
        restarted += usize::from(healed);
    }
    assert_eq!(restarted, 1, "exactly one healer starts the new sidecar");
    let healed = wait_until(
        "the new sidecar's record",
        WAIT,
        || read_record(&file).filter(|r| r.hb_pid != Some(first)),
        || show_file(&file),
    );
    assert_eq!(healed.pid, pane);
    assert_eq!(sidecars_watching(pane), vec![healed.hb_pid.unwrap()]);
    assert_eq!(sb.session_count(), 1);
    end_agents(&sb);
}

// Sixteen agents, two launchers each, all at once: every session, one sidecar per pane, no lost
// or shared heartbeat file. Then the server goes, and so does every sidecar.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_fleet_launched_at_once() {
    e2e!();
    let sb = Sandbox::new();
    let agents: Vec<String> = (0..16).map(|i| format!("fleet-{i:02}")).collect();
    let cmds = agents
        .iter()
        .chain(agents.iter())
        .map(|a| sb.launcher(a))
        .collect();
    for (cmd, out) in spawn_all(cmds) {
        assert_no_panic(&cmd, &out);
        assert!(out.status.success(), "{}", explain(&cmd, &out));
    }
    assert_eq!(sb.session_count(), agents.len());
    let mut hb_pids = BTreeSet::new();
    let mut panes = Vec::new();
    for a in &agents {
        let rec = wait_for_status(&sb.hb_file(a), Status::Ok, WAIT);
        let pane = sb.pane_pid(a);
        assert_eq!((rec.pid, rec.agent.as_deref()), (pane, Some(a.as_str())));
        let watching = sidecars_watching(pane);
        assert_eq!(watching, vec![rec.hb_pid.unwrap()], "{a}");
        hb_pids.insert(watching[0]);
        panes.push(pane);
    }
    assert_eq!(hb_pids.len(), agents.len(), "two agents share a sidecar");
    let hb_files: Vec<OsString> = names(&sb.hb_dir())
        .into_iter()
        .filter(|n| n.as_bytes().ends_with(b".hb"))
        .collect();
    assert_eq!(hb_files.len(), agents.len(), "{hb_files:?}");

    assert!(sb.tmux(&["kill-server"]).status.success());
    for a in &agents {
        wait_for_status(&sb.hb_file(a), Status::Exited, WAIT);
    }
    for pane in panes {
        wait_no_sidecars(&format!("pane {pane}"), || sidecars_watching(pane));
    }
}

// Twelve sidecars started at once on one file: one wins, eleven are refused naming the
// holder, one process watches.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn twelve_sidecars_race_for_one_file() {
    e2e!();
    let sb = Sandbox::new();
    let target = sb.spawn_target();
    let file = sb.hb_file("one");
    let cmds = (0..12)
        .map(|_| {
            let mut cmd = sb.hb();
            cmd.args(["--pid", &target.to_string(), "--interval", "0.05", "--file"])
                .arg(&file);
            cmd
        })
        .collect();
    let results = spawn_all(cmds);
    let rec = wait_for_status(&file, Status::Ok, WAIT);
    let winner = rec.hb_pid.unwrap();
    sb.track(winner);
    let mut won = 0;
    for (cmd, out) in &results {
        assert_no_panic(cmd, out);
        match out.status.code() {
            Some(0) => won += 1,
            Some(1) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("is already kept by") && err.lines().count() == 1,
                    "{err}"
                );
            }
            _ => panic!("{}", explain(cmd, out)),
        }
    }
    assert_eq!(won, 1, "one sidecar per file");
    assert_eq!(sidecars_watching(target), vec![winner]);
    sb.kill_target(target);
    wait_for_status(&file, Status::Exited, WAIT);
    wait_no_sidecars("the killed target", || sidecars_watching(target));
}
