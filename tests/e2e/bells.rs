/*!
Bells that must be seen: a bell is `waiting` exactly when it is the last thing the agent did.
Scripted agents in real tmux panes (the real launcher, the real sidecar, and the transcript's
writer, which marks the bells it reads in the pane's bytes) print and then ring a bell 0, 1 or
10 ms later, ring and then print, or ring in their first milliseconds, before their sidecar
watches; each is then read once its sidecar has had the time it takes to look (its quiet
second) and beat again.

Without a transcript (`--no-log`) tmux's `alert-bell` hook marks bells instead: output then a
bell, and an early bell, are run that way too. Not a bell and then output there: the hook
appends its byte from a shell tmux starts when it has handled what it read, so output that
follows a bell sooner than that shell runs reaches the sidecar first (README, Limits).

The suite runs every case on one tmux server at once: bells rung together are the burst in
which tmux 3.3a skipped hooks that wrote through tmux (`pane::bell_hook`).

`MOSAIC_BELL_ROUNDS` sets how many agents run each case (the suite runs a few; more for a
soak).
*/

use std::time::Duration;

use mosaic_core::activity::Activity;

use crate::e2e;
use crate::support::*;

/// One case: what the agent does once told, and what its record must then say.
struct Case {
    name: &'static str,
    /// Shell commands, run when `go` appears in the workdir (at once with `early`).
    acts: &'static str,
    early: bool,
    want: Activity,
}

const CASES: &[Case] = &[
    Case {
        name: "bell-first-ms",
        acts: "printf '\\a'",
        early: true,
        want: Activity::Waiting,
    },
    Case {
        name: "output-0ms-bell",
        acts: "printf 'out\\n'; printf '\\a'",
        early: false,
        want: Activity::Waiting,
    },
    Case {
        name: "output-1ms-bell",
        acts: "printf 'out\\n'; sleep 0.001; printf '\\a'",
        early: false,
        want: Activity::Waiting,
    },
    Case {
        name: "output-10ms-bell",
        acts: "printf 'out\\n'; sleep 0.01; printf '\\a'",
        early: false,
        want: Activity::Waiting,
    },
    Case {
        name: "bell-0ms-output",
        acts: "printf '\\a'; printf 'out\\n'",
        early: false,
        want: Activity::Busy,
    },
    Case {
        name: "bell-1ms-output",
        acts: "printf '\\a'; sleep 0.001; printf 'out\\n'",
        early: false,
        want: Activity::Busy,
    },
    Case {
        name: "bell-10ms-output",
        acts: "printf '\\a'; sleep 0.01; printf 'out\\n'",
        early: false,
        want: Activity::Busy,
    },
    Case {
        name: "title-osc-is-no-bell",
        acts: "printf 'out\\n'; printf '\\033]2;a title\\a'",
        early: false,
        want: Activity::Busy,
    },
];

/// How many agents run each case: `MOSAIC_BELL_ROUNDS`, else `default`.
fn rounds(default: usize) -> usize {
    std::env::var("MOSAIC_BELL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases`, `n` agents each, on one tmux server; returns every agent whose record said
/// otherwise, with what it said.
fn run_cases(cases: &[&Case], n: usize, extra: &[&str]) -> Vec<String> {
    let sb = Sandbox::new();
    let work = sb.path("work");
    let mut agents = Vec::new();
    for case in cases {
        let script = work.join(format!("{}.sh", case.name));
        let wait = if case.early {
            ""
        } else {
            "while [ ! -e go ]; do sleep 0.05; done\n"
        };
        // `done-AGENT` says when the acts are over; nothing but them reaches the terminal.
        write_script(
            &script,
            &format!(
                "#!/bin/sh\n{wait}{}\n: > \"done-$MOSAIC_AGENT_NAME\"\nexec sleep 600\n",
                case.acts
            ),
        );
        for i in 0..n {
            let agent = format!("{}-{i}", case.name);
            let mut cmd = sb.launcher(&agent);
            cmd.env("MOSAIC_AGENT_COMMAND", format!("./{}.sh", case.name))
                .env("MOSAIC_HEARTBEAT_INTERVAL", "0.2")
                .args(extra);
            expect_success(&mut cmd);
            agents.push((agent, case));
        }
    }
    for (agent, _) in &agents {
        wait_for_status(&sb.hb_file(agent), Status::Ok, Duration::from_secs(10));
    }
    std::fs::write(work.join("go"), "").unwrap();
    let mut wrong = Vec::new();
    for (agent, case) in &agents {
        let done = work.join(format!("done-{agent}"));
        let acted = wait_until(
            &format!("{agent} to act"),
            Duration::from_secs(10),
            || std::fs::metadata(&done).and_then(|m| m.modified()).ok(),
            String::new,
        );
        // Seen within the sidecar's quiet second, written at once, and beaten again after.
        let settled: chrono::DateTime<chrono::Utc> =
            (acted + mosaic_core::activity::QUIET + Duration::from_millis(500)).into();
        let file = sb.hb_file(agent);
        let record = wait_until(
            &format!("{agent}'s record after it acted"),
            Duration::from_secs(10),
            || read_record(&file).filter(|r| r.ts > settled),
            || show_file(&file),
        );
        if record.activity != Some(case.want) {
            wrong.push(format!(
                "{agent}: {:?}, not {:?}",
                record.activity, case.want
            ));
        }
    }
    wrong
}

// Output then a bell is waiting, a bell then output busy, at 0, 1 and 10 ms; a bell in the
// agent's first milliseconds, before its sidecar watches, is seen; a BEL that ends a title
// (OSC) is no bell.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_bell_is_waiting_exactly_when_it_came_last() {
    e2e!();
    let wrong = run_cases(&CASES.iter().collect::<Vec<_>>(), rounds(3), &[]);
    assert!(wrong.is_empty(), "{} wrong: {wrong:#?}", wrong.len());
}

// Without a transcript, tmux's hook: output then a bell is waiting, an early bell is seen.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn without_a_transcript_the_hook_sees_a_bell_that_came_last() {
    e2e!();
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| c.want == Activity::Waiting)
        .collect();
    let wrong = run_cases(&cases, rounds(2), &["--no-log"]);
    assert!(wrong.is_empty(), "{} wrong: {wrong:#?}", wrong.len());
}
