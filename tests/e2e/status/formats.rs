/*!
The reports' formats: the table, JSON and Prometheus text, each strict and complete; hostile
file names escaped in every one; a thousand agents in one report.
*/

use super::*;

// The table: aligned columns, reasons for invalid rows, the summary in its fixed order.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn table_shows_every_state() {
    e2e!();
    let sb = Sandbox::new();
    let fleet = fleet(&sb);
    let dir = fleet.dir.to_str().unwrap();
    let out = poll_until(&sb, [dir], table_states, &fleet.expected);

    let lines: Vec<&str> = out.lines().collect();
    let header = lines[0];
    // EXIT shows when a record says how its agent ended: the killed one's may (a sidecar reads
    // it from the zombie when it is quicker than the reaper).
    let columns: Vec<&str> = header.split_whitespace().filter(|&c| c != "EXIT").collect();
    assert_eq!(
        columns,
        ["AGENT", "STATE", "PID", "AGE", "INTERVAL", "REASON"],
        "{out}"
    );
    // Every column starts where its heading does (the reason, last, may hold blanks).
    let starts: Vec<usize> = words(header).iter().map(|&(at, _)| at).collect();
    for line in &lines[1..lines.len() - 1] {
        let cells: Vec<usize> = words(line).iter().map(|&(at, _)| at).collect();
        let n = cells.len().min(starts.len());
        assert_eq!(cells[..n], starts[..n], "misaligned: {line:?}\n{out}");
    }
    let line_of = |agent: &str| -> &str {
        lines[1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(agent))
            .unwrap_or_else(|| panic!("no row for {agent}: {out}"))
    };
    let row = |agent: &str| -> Vec<&str> { line_of(agent).split_whitespace().collect() };
    let alive = row("alive");
    assert_eq!(alive[2], fleet.alive_target.to_string(), "{out}");
    assert_eq!(alive[4], "1s", "{out}");
    assert!(is_age(alive[3]), "{out}");
    assert_eq!(row("hung")[4], "0.2s", "{out}");
    for (agent, reason) in REASONS {
        let line = line_of(agent);
        assert!(line.contains(reason), "{agent}: {line}");
        assert_eq!(&row(agent)[2..5], ["-", "-", "-"], "{out}");
    }
    assert_eq!(
        *lines.last().unwrap(),
        "12 agents: 1 ok, 1 stale, 1 exited, 1 stopped, 8 invalid"
    );
    // Followed, the link would have read as the live agent's healthy record.
    assert!(line_of("link").contains("symlink, not followed"), "{out}");
    assert!(
        read_record(&fleet.dir.join("link.hb")).is_some(),
        "it does point at one"
    );
}

// JSON: an array of objects with the documented fields, each of its type.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn json_is_strict_and_typed() {
    e2e!();
    let sb = Sandbox::new();
    let fleet = fleet(&sb);
    let dir = fleet.dir.to_str().unwrap();
    let out = poll_until(&sb, ["--json", dir], json_states, &fleet.expected);
    // --format json is the same report.
    let same = status(&sb, ["--format", "json", dir], 0);
    assert_eq!(json_states(&same.stdout), json_states(&out));

    let doc = json(&out);
    let items = doc
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {out}"));
    let reasons: HashMap<&str, &str> = REASONS.into_iter().collect();
    for item in items {
        let agent = item["agent"]
            .as_str()
            .expect("agent is a string")
            .to_string();
        let state = item["state"].as_str().expect("state is a string");
        // Every documented key, in the documented order (README), and no other.
        let keys: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, STATUS_KEYS, "{agent}: {out}");
        if state == "invalid" {
            for key in ["pid", "ts", "age_s", "interval"] {
                assert!(item[key].is_null(), "{agent}.{key}: {out}");
            }
            let reason = item["reason"].as_str().expect("reason is a string");
            assert!(
                reason.contains(reasons[agent.as_str()]),
                "{agent}: {reason}"
            );
            continue;
        }
        if state == "stale" {
            // Killed -9: its lock is free, so it is stale at once, whatever its age.
            let reason = item["reason"].as_str().expect("a stale row says why");
            assert_eq!(reason, "sidecar gone (its lock is free)", "{agent}: {out}");
        } else {
            assert!(item["reason"].is_null(), "{agent}: {out}");
        }
        let pid = item["pid"].as_i64().expect("pid is an integer");
        assert!(pid >= 1, "{agent}: pid {pid}");
        let ts = item["ts"].as_str().expect("ts is a string");
        assert!(is_rfc3339_millis_utc(ts), "{agent}: ts {ts:?}");
        let age = item["age_s"].as_f64().expect("age_s is a number");
        assert!(age >= 0.0, "{agent}: age_s {age}");
        let interval = item["interval"].as_f64().expect("interval is a number");
        match agent.as_str() {
            "alive" => {
                assert_eq!(pid, i64::from(fleet.alive_target));
                assert_eq!(interval, 1.0);
                assert!(age <= 3.0, "ok means within 3 intervals: {age}");
            }
            _ => assert_eq!(interval, 0.2),
        }
    }
}

// Prometheus: valid text format 0.0.4; every family with HELP and TYPE; a state set with every
// state; timestamps, not ages; the `fleet` label on every series.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn prometheus_is_valid_exposition_text() {
    e2e!();
    let sb = Sandbox::new();
    let fleet = fleet(&sb);
    let dir = fleet.dir.to_str().unwrap();
    let args = ["--format", "prometheus", dir];
    let out = poll_until(&sb, args, prometheus_states, &fleet.expected);
    let families = parse_prometheus(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, FAMILIES.map(|(name, _)| name));
    for (family, (_, kind)) in families.iter().zip(FAMILIES) {
        assert_eq!(family.kind.as_deref(), Some(kind), "{}", family.name);
        assert!(family.help.as_deref().is_some_and(|h| !h.is_empty()));
        for sample in &family.samples {
            assert!(
                sample.timestamp.is_none(),
                "the textfile collector refuses timestamps"
            );
            assert_eq!(sample.label("fleet"), dir, "{}: {out}", family.name);
        }
    }
    assert_eq!(series(fam(&families, "mosaic_fleet_up"), "fleet")[dir], 1.0);
    let up = series(fam(&families, "mosaic_agent_up"), "agent");
    let failing = series(fam(&families, "mosaic_agent_failing"), "agent");
    let ts = series(
        fam(&families, "mosaic_agent_heartbeat_timestamp_seconds"),
        "agent",
    );
    let interval = series(
        fam(&families, "mosaic_agent_heartbeat_interval_seconds"),
        "agent",
    );
    let state_set = &fam(&families, "mosaic_agent_state").samples;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (agent, state) in &fleet.expected {
        let want = if *state == "ok" { 1.0 } else { 0.0 };
        assert_eq!(up.get(*agent), Some(&want), "up {agent}: {out}");
        let want = if matches!(*state, "ok" | "stopped") {
            0.0
        } else {
            1.0
        };
        assert_eq!(failing.get(*agent), Some(&want), "failing {agent}: {out}");
        // A timestamp and an interval exactly when the file parsed.
        assert_eq!(
            ts.contains_key(*agent),
            *state != "invalid",
            "{agent}: {out}"
        );
        assert_eq!(interval.contains_key(*agent), *state != "invalid");
        // Every state, once, 1 only for the agent's own.
        let mine: Vec<(&str, f64)> = state_set
            .iter()
            .filter(|s| s.label("agent") == *agent)
            .map(|s| (s.label("state"), s.value))
            .collect();
        let all = [
            "ok",
            "stale",
            "restarting",
            "exited",
            "failed",
            "stopped",
            "invalid",
        ];
        assert_eq!(
            mine,
            all.map(|s| (s, if s == *state { 1.0 } else { 0.0 })),
            "{agent}: {out}"
        );
    }
    assert_eq!(up.len(), fleet.expected.len());
    assert!((now - 3.0..=now).contains(&ts["alive"]), "{now}: {out}");
    assert_eq!(interval["alive"], 1.0);
    assert_eq!(interval["hung"], 0.2);

    // --fleet names the fleet instead of its directory.
    let run = status(&sb, ["--format", "prometheus", "--fleet", "blue", dir], 0);
    let families = parse_prometheus(&run.stdout).unwrap();
    assert!(families
        .iter()
        .flat_map(|f| &f.samples)
        .all(|s| s.label("fleet") == "blue"));
}

/// The family called `name`.
#[track_caller]
fn fam<'a>(families: &'a [Family], name: &str) -> &'a Family {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

// File names are bytes: quotes, backslashes, newlines, escape sequences and bytes that are
// not UTF-8 come out escaped in every format, and each agent stays one row.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn hostile_names_are_escaped_everywhere() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = format!(
        "ts={}\npid=1\nstatus=ok\ninterval=60\n",
        rfc3339(SystemTime::now())
    );
    let names: [&[u8]; 7] = [
        b"quote\"d",
        b"back\\slash",
        b"new\nline",
        b"caf\xe9",
        b"tab\there",
        b"esc\x1b[2J",
        "uni-\u{f1}-\u{2713}".as_bytes(),
    ];
    for name in names {
        let mut file = name.to_vec();
        file.extend_from_slice(b".hb");
        std::fs::write(dir.join(OsStr::from_bytes(&file)), &fresh).unwrap();
    }
    // The report sorts by the names' bytes.
    let mut sorted = names.to_vec();
    sorted.sort();
    let want: Vec<(String, String)> = sorted
        .iter()
        .map(|n| (String::from_utf8_lossy(n).into_owned(), "ok".to_string()))
        .collect();

    let run = status(&sb, ["--json", dir.to_str().unwrap()], 0);
    assert_eq!(json_states(&run.stdout), want, "{}", run.stdout);

    let run = status(&sb, ["--format", "prometheus", dir.to_str().unwrap()], 0);
    let families = parse_prometheus(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    assert_eq!(prometheus_states(&run.stdout), want, "{}", run.stdout);
    assert_eq!(
        series(fam(&families, "mosaic_agent_up"), "agent").len(),
        names.len()
    );

    let run = status(&sb, [&dir], 0);
    assert_eq!(
        run.stdout.lines().count(),
        names.len() + 2,
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "raw escape sequence: {:?}",
        run.stdout
    );
    assert!(run.stdout.contains("new\\nline"), "{}", run.stdout);
    assert!(run.stdout.contains("esc\\u{1b}[2J"), "{}", run.stdout);
    assert_eq!(run.stdout.lines().last(), Some("7 agents: 7 ok"));
}

// A thousand agents (and a thousand temp files beside them) in one report, in every format.
#[test]
#[ignore = "end-to-end: run `cargo xtask test`"]
fn a_thousand_agents() {
    e2e!();
    let sb = Sandbox::new();
    let dir = sb.hb_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let fresh = format!(
        "ts={}\npid=1\nstatus=ok\ninterval=60\n",
        rfc3339(SystemTime::now())
    );
    // Written in reverse, so a report that did not sort would show it.
    for i in (0..1000).rev() {
        std::fs::write(dir.join(format!("agent-{i:04}.hb")), &fresh).unwrap();
        std::fs::write(dir.join(format!(".agent-{i:04}.hb.{i}.tmp")), "1\n").unwrap();
    }
    let want: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("agent-{i:04}"), "ok".to_string()))
        .collect();

    let run = status(&sb, ["--check", "--json", dir.to_str().unwrap()], 0);
    assert_eq!(json_states(&run.stdout), want);
    let run = status(&sb, ["--format", "prometheus", dir.to_str().unwrap()], 0);
    let families = parse_prometheus(&run.stdout).unwrap_or_else(|e| panic!("{e}"));
    for family in &families {
        let per_agent = match family.name.as_str() {
            "mosaic_fleet_up" => 0,
            "mosaic_agent_state" => 7,
            // No record here says `activity=`: agents without a terminal.
            "mosaic_agent_restarts_total"
            | "mosaic_agent_hook_failures_total"
            | "mosaic_agent_hook_dropped_total"
            | "mosaic_agent_activity"
            | "mosaic_agent_activity_since_timestamp_seconds" => 0,
            _ => 1,
        };
        let fleet = usize::from(family.name == "mosaic_fleet_up");
        assert_eq!(
            family.samples.len(),
            fleet + per_agent * 1000,
            "{}",
            family.name
        );
    }
    let run = status(&sb, [&dir], 0);
    assert_eq!(table_states(&run.stdout), want);
    assert_eq!(run.stdout.lines().last(), Some("1000 agents: 1000 ok"));
}
