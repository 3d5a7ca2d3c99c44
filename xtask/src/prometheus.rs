/*!
`cargo xtask prometheus`: the monitoring path checked against a real Prometheus.

Installs `prometheus` (with `promtool`) and `prometheus-node-exporter` from Debian packages
when missing, checks and unit-tests the alert rules (`promtool check rules`, `promtool test
rules`), then starts two fleets on private tmux sockets (the same agent names in two heartbeat
directories), `mosaic-hb exporter` on a free loopback port, and Prometheus scraping it every
second with the rules loaded (its own temp data dir, a free port; killed at the end). Then it
asks Prometheus, through its HTTP API (`promtool query instant`), for what the issue promises:

- every agent's series, with the right values, one set per fleet;
- a pane killed is `exited` within two scrapes (counted in Prometheus's own samples);
- a sidecar killed -9 turns into a firing `MosaicAgentStale` with nothing refreshed by hand;
- a pane killed fires `MosaicAgentDied`; an agent stopped with `mosaic-fleet stop` raises no
  alert;
- `promtool check metrics` finds nothing to say about the exporter's answer;
- the textfile path (node_exporter) keeps two fleets' same-named agents apart, and a textfile
  nobody refreshes turns stale by the rule computed in PromQL.

Every wait polls with a deadline; a failure names what it last saw.
*/

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::util::{self, KillOnDrop, Result, TempDir, TmuxServer};

const PATIENCE: Duration = Duration::from_secs(30);

pub fn run() -> Result {
    install()?;
    let rules = util::project_root().join("contrib/prometheus/alerts.yml");
    check_rules(&rules)?;
    eprintln!("xtask: building release binaries");
    util::build_release()?;
    let bin = util::release_dir();
    let tmp = TempDir::new("prometheus")?;

    step("two fleets, the same agent names, on private tmux sockets");
    let blue = Fleet::start(&bin, tmp.path(), "blue", &["alpha", "beta", "gamma"])?;
    let green = Fleet::start(&bin, tmp.path(), "green", &["alpha"])?;
    let scraped = Scraped::start(&bin, tmp.path(), &rules, &blue, &green)?;
    let green_label = green.dir.to_string_lossy().into_owned();
    every_agents_series(&scraped.api, &green_label)?;
    a_pane_killed(&scraped.api, &blue)?;
    a_sidecar_killed(&scraped.api, &blue)?;
    a_deliberate_stop(&scraped.api, &bin, &blue)?;
    the_textfile_path(&scraped.api)?;

    step("all checks passed; stopping Prometheus, node_exporter, the exporter and the fleets");
    drop(green);
    drop(blue);
    drop(scraped);
    Ok(())
}

fn step(what: &str) {
    eprintln!("xtask: prometheus: {what}");
}

/// `promtool check rules` and `promtool test rules` on the alert rules.
fn check_rules(rules: &Path) -> Result {
    step("promtool check rules, promtool test rules");
    util::run(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(rules),
    )?;
    util::run(
        Command::new("promtool")
            .args(["test", "rules"])
            .arg(util::project_root().join("contrib/prometheus/alerts.test.yml")),
    )
}

/// What scrapes the fleets: the exporter, node_exporter on their textfiles, and Prometheus
/// scraping both; each killed when this is dropped.
struct Scraped {
    /// Prometheus's HTTP API, `http://ADDR`.
    api: String,
    _prometheus: KillOnDrop,
    _node_exporter: KillOnDrop,
    _exporter: KillOnDrop,
}

impl Scraped {
    fn start(bin: &Path, tmp: &Path, rules: &Path, blue: &Fleet, green: &Fleet) -> Result<Self> {
        step("mosaic-hb exporter on a free loopback port");
        let log = tmp.join("exporter.log");
        let exporter = util::spawn_quiet(
            Command::new(bin.join("mosaic-hb"))
                .args(["exporter", "--listen", "127.0.0.1:0", "--fleet", "blue"])
                .arg(&blue.dir)
                .arg(&green.dir),
            Some(&log),
        )?;
        let exporter_at = util::exporter_addr(&log, PATIENCE).ok_or_else(|| {
            format!(
                "the exporter never said where it listens: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;

        step("promtool check metrics on the exporter's answer");
        check_metrics(&http_get(exporter_at, "/metrics")?)?;

        step("the textfile path: both fleets' `status --format prometheus`, node_exporter");
        let textfiles = tmp.join("textfile");
        std::fs::create_dir(&textfiles).map_err(|e| format!("{}: {e}", textfiles.display()))?;
        for (name, fleet, label) in [("blue", blue, Some("blue")), ("green", green, None)] {
            let mut cmd = Command::new(bin.join("mosaic-hb"));
            cmd.args(["status", "--format", "prometheus"]);
            if let Some(label) = label {
                cmd.args(["--fleet", label]);
            }
            cmd.arg(&fleet.dir);
            let text = util::output(&mut cmd)?;
            let file = textfiles.join(format!("mosaic-{name}.prom"));
            std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        let node = free_port()?;
        let node_exporter = util::spawn_quiet(
            Command::new("prometheus-node-exporter")
                .arg(format!("--web.listen-address={node}"))
                .arg("--collector.disable-defaults")
                .arg("--collector.textfile")
                .arg(format!(
                    "--collector.textfile.directory={}",
                    textfiles.display()
                )),
            None,
        )?;

        step("Prometheus, scraping both every second, rules loaded");
        let web = free_port()?;
        let prometheus = start_prometheus(tmp, rules, exporter_at, node, web)?;
        let api = format!("http://{web}");
        wait(&format!("Prometheus ready at {api}"), || {
            http_get(web, "/-/ready")
                .ok()
                .filter(|t| t.contains("Ready"))
        })?;
        Ok(Scraped {
            api,
            _prometheus: prometheus,
            _node_exporter: node_exporter,
            _exporter: exporter,
        })
    }
}

/// Every agent's series, with the right values, one set per fleet.
fn every_agents_series(api: &str, green_label: &str) -> Result {
    step("every agent's series, one set per fleet");
    let up = wait("4 agents up in 2 fleets", || {
        let rows = query(api, "mosaic_agent_up{job=\"mosaic\"} == 1").ok()?;
        (rows.len() == 4).then_some(rows)
    })?;
    for (fleet, agent) in [
        ("blue", "alpha"),
        ("blue", "beta"),
        ("blue", "gamma"),
        (green_label, "alpha"),
    ] {
        let labels = [format!("fleet=\"{fleet}\""), format!("agent=\"{agent}\"")];
        if !up
            .iter()
            .any(|r| labels.iter().all(|l| r.labels.contains(l)))
        {
            return Err(format!("no mosaic_agent_up for {fleet}/{agent}: {up:?}"));
        }
    }
    let state = "mosaic_agent_state{job=\"mosaic\"}";
    expect(api, &format!("count by (fleet, agent) ({state})"), 4, 7.0)?;
    expect(api, &format!("sum by (fleet, agent) ({state})"), 4, 1.0)?;
    expect(
        api,
        "mosaic_agent_heartbeat_interval_seconds{job=\"mosaic\"}",
        4,
        1.0,
    )?;
    expect(api, "mosaic_agent_failing{job=\"mosaic\"}", 4, 0.0)?;
    expect(api, "mosaic_fleet_up{job=\"mosaic\"}", 2, 1.0)?;
    // Timestamps, not ages: Prometheus computes the age itself, and it is small.
    expect(
        api,
        "time() - mosaic_agent_heartbeat_timestamp_seconds{job=\"mosaic\"} < bool 5",
        4,
        1.0,
    )?;
    expect(api, "ALERTS{job=\"mosaic\"}", 0, 0.0)
}

/// A pane killed is `exited` within two scrapes (counted in Prometheus's own samples), and
/// fires `MosaicAgentDied`.
fn a_pane_killed(api: &str, blue: &Fleet) -> Result {
    step("a pane killed: exited within two scrapes, MosaicAgentDied fires");
    let beta = blue.record("beta")?;
    let killed_at = unix_now();
    util::output(Command::new("kill").args(["-KILL", &beta.pid.to_string()]))?;
    let selector =
        "mosaic_agent_state{job=\"mosaic\",fleet=\"blue\",agent=\"beta\",state=\"exited\"}";
    wait("beta exited in Prometheus", || {
        let rows = query(api, &format!("{selector} == 1")).ok()?;
        (rows.len() == 1).then_some(())
    })?;
    let samples = range(api, &format!("{selector}[1m]"))?;
    let after: Vec<&(f64, f64)> = samples.iter().filter(|(t, _)| *t > killed_at).collect();
    let scrapes = after
        .iter()
        .position(|(_, v)| *v == 1.0)
        .map(|i| i + 1)
        .ok_or_else(|| format!("no exited sample after the kill: {samples:?}"))?;
    println!("pane killed: exited in Prometheus at scrape {scrapes} after the kill");
    if scrapes > 2 {
        return Err(format!(
            "the kill was seen at scrape {scrapes}, not within two: {after:?}"
        ));
    }
    wait_alert(api, "MosaicAgentDied", "beta")
}

/// A sidecar killed -9 turns into a firing `MosaicAgentStale` with nothing refreshed by hand.
fn a_sidecar_killed(api: &str, blue: &Fleet) -> Result {
    step("a sidecar killed -9: MosaicAgentStale fires, nothing refreshed by hand");
    let gamma = blue.record("gamma")?;
    util::output(Command::new("kill").args(["-KILL", &gamma.hb_pid.to_string()]))?;
    wait_alert(api, "MosaicAgentStale", "gamma")
}

/// An agent stopped with `mosaic-fleet stop` raises no alert; at the end only the two
/// alerts above fire.
fn a_deliberate_stop(api: &str, bin: &Path, blue: &Fleet) -> Result {
    step("a deliberate stop (mosaic-fleet stop): stopped, and no alert");
    util::output(
        Command::new(bin.join("mosaic-fleet"))
            .args(["stop", "alpha", "--grace", "2", "--socket", &blue.socket])
            .arg("--hb-dir")
            .arg(&blue.dir)
            .env_remove("TMUX")
            .stdin(Stdio::null()),
    )?;
    let stopped =
        "mosaic_agent_state{job=\"mosaic\",fleet=\"blue\",agent=\"alpha\",state=\"stopped\"} == 1";
    wait("alpha stopped in Prometheus", || {
        (query(api, stopped).ok()?.len() == 1).then_some(())
    })?;
    // Rules are evaluated every second: give them five evaluations to (wrongly) fire.
    std::thread::sleep(Duration::from_secs(5));
    let alerts = query(api, "ALERTS{job=\"mosaic\",agent=\"alpha\"}")?;
    if !alerts.is_empty() {
        return Err(format!("a stopped agent raised an alert: {alerts:?}"));
    }
    let alerts = query(api, "ALERTS{job=\"mosaic\",alertstate=\"firing\"}")?;
    println!("firing alerts at the end:");
    for row in &alerts {
        println!("  {}", row.labels);
    }
    if alerts.len() != 2 {
        return Err(format!(
            "expected exactly MosaicAgentDied(beta) and MosaicAgentStale(gamma): {alerts:?}"
        ));
    }
    Ok(())
}

/// The textfile path keeps two fleets' same-named agents apart, and a textfile nobody
/// refreshes turns stale by the rule computed in PromQL.
fn the_textfile_path(api: &str) -> Result {
    step("the textfile path: every series once, none dropped; frozen, it turns stale in PromQL");
    expect(api, "mosaic_agent_up{job=\"mosaic-textfile\"}", 4, 1.0)?;
    expect(api, "node_textfile_scrape_error", 1, 0.0)?;
    // Nothing rewrites the files: three intervals (3 s) on, the timestamps alone say stale.
    wait(
        "MosaicAgentStale firing for the 4 frozen textfile series",
        || {
            let expr = "ALERTS{job=\"mosaic-textfile\",alertname=\"MosaicAgentStale\",alertstate=\"firing\"}";
            (query(api, expr).ok()?.len() == 4).then_some(())
        },
    )?;
    println!("ok: a frozen textfile turns stale in PromQL (4 alerts)");
    Ok(())
}

/// Installs Prometheus, promtool and node_exporter from Debian packages when missing.
fn install() -> Result {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if have("prometheus") && have("promtool") && have("prometheus-node-exporter") {
        return Ok(());
    }
    step("installing prometheus and prometheus-node-exporter (apt-get)");
    util::run(Command::new("apt-get").args(["update", "-qq"]))
        .and_then(|()| {
            util::run(Command::new("apt-get").args([
                "install",
                "-y",
                "-qq",
                "prometheus",
                "prometheus-node-exporter",
            ]))
        })
        .map_err(|e| {
            format!("{e}: run `apt-get install prometheus prometheus-node-exporter` as root, then retry")
        })
}

/// A fleet: agents on their own tmux socket, their heartbeats in their own directory.
struct Fleet {
    dir: PathBuf,
    socket: String,
    _server: TmuxServer,
}

struct Record {
    pid: u32,
    hb_pid: u32,
}

impl Fleet {
    fn start(bin: &Path, tmp: &Path, name: &str, agents: &[&str]) -> Result<Fleet> {
        let socket = format!("mosaic-prom-{}-{name}", std::process::id());
        let server = TmuxServer(socket.clone());
        let dir = tmp.join(name).join("heartbeat");
        let home = tmp.join(name).join("home");
        std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
        for agent in agents {
            let mut cmd = Command::new(bin.join("mosaic-launcher"));
            cmd.arg(agent)
                .env("HOME", &home)
                .env("MOSAIC_TMUX_SOCKET", &socket)
                .env("MOSAIC_AGENT_WORKDIR", tmp)
                .env("MOSAIC_AGENT_COMMAND", "sleep 600")
                .env("MOSAIC_HEARTBEAT_RUN_DIR", &dir)
                .env("MOSAIC_HEARTBEAT_INTERVAL", "1")
                .env_remove("TMUX")
                .stdin(Stdio::null());
            util::output(&mut cmd)?;
        }
        let fleet = Fleet {
            dir,
            socket,
            _server: server,
        };
        for agent in agents {
            fleet.record(agent)?;
        }
        Ok(fleet)
    }

    /// The agent's live record (`status=ok`), once there is one.
    fn record(&self, agent: &str) -> Result<Record> {
        let file = self.dir.join(format!("{agent}.hb"));
        wait(&format!("{} to say status=ok", file.display()), || {
            let text = std::fs::read_to_string(&file).ok()?;
            if !text.lines().any(|l| l == "status=ok") {
                return None;
            }
            let value = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            };
            Some(Record {
                pid: value("pid")?,
                hb_pid: value("hb_pid")?,
            })
        })
    }
}

/// Polls `check` until it gives a value, for up to [`PATIENCE`].
fn wait<T>(what: &str, check: impl FnMut() -> Option<T>) -> Result<T> {
    util::wait_for(PATIENCE, check).ok_or_else(|| format!("gave up waiting for {what}"))
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<SocketAddr> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn start_prometheus(
    tmp: &Path,
    rules: &Path,
    exporter: SocketAddr,
    node: SocketAddr,
    web: SocketAddr,
) -> Result<KillOnDrop> {
    let config = tmp.join("prometheus.yml");
    let text = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: mosaic\n    static_configs:\n      - targets: ['{exporter}']\n\
         \x20 - job_name: mosaic-textfile\n    static_configs:\n      - targets: ['{node}']\n",
        rules = rules.display()
    );
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    util::run(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&config),
    )?;
    util::spawn_quiet(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}")),
        Some(&tmp.join("prometheus.log")),
    )
}

/// `GET path` over HTTP/1.1 on a fresh connection; the body, when the status is 200.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(PATIENCE));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("cannot read {addr}{path}: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "GET {addr}{path}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    // Prometheus answers its readiness chunked; the check only looks for a word in it.
    Ok(body.to_string())
}

/// `promtool check metrics` on `text`: it must exit 0 and say nothing.
fn check_metrics(text: &str) -> Result {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool check metrics: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot feed promtool: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool check metrics: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !said.trim().is_empty() {
        return Err(format!("promtool check metrics ({}): {said}", out.status));
    }
    println!(
        "promtool check metrics: clean ({} lines)",
        text.lines().count()
    );
    Ok(())
}

/// One row of `promtool query instant`: `{labels} => value @[time]`.
#[derive(Debug)]
struct Row {
    labels: String,
    value: f64,
}

/// An instant query through Prometheus's HTTP API.
fn query(api: &str, expr: &str) -> Result<Vec<Row>> {
    let out = util::output(Command::new("promtool").args(["query", "instant", api, expr]))?;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (labels, rest) = line
                .split_once(" => ")
                .ok_or_else(|| format!("{expr}: cannot read {line:?}"))?;
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{expr}: no value in {line:?}"))?;
            Ok(Row {
                labels: labels.to_string(),
                value,
            })
        })
        .collect()
}

/// The samples of a range selector, `(time, value)`, from one series.
fn range(api: &str, expr: &str) -> Result<Vec<(f64, f64)>> {
    let out = util::output(Command::new("promtool").args(["query", "instant", api, expr]))?;
    // `{labels} =>\nV @[T]\nV @[T]...`
    let mut samples = Vec::new();
    for line in out.lines() {
        let Some((value, at)) = line.trim().split_once(" @[") else {
            continue;
        };
        let (Ok(value), Ok(at)) = (value.parse(), at.trim_end_matches(']').parse()) else {
            continue;
        };
        samples.push((at, value));
    }
    Ok(samples)
}

/// Polls until `expr` gives `rows` series, every one of value `value`.
fn expect(api: &str, expr: &str, rows: usize, value: f64) -> Result {
    let mut last = String::new();
    wait(&format!("{expr} to give {rows} series of {value}"), || {
        let got = query(api, expr).ok()?;
        last = format!("{got:?}");
        (got.len() == rows && got.iter().all(|r| r.value == value)).then_some(())
    })
    .map_err(|e| format!("{e}; last: {last}"))?;
    println!("ok: {expr}: {rows} series, each {value}");
    Ok(())
}

/// Polls until `alert` fires for `agent`.
fn wait_alert(api: &str, alert: &str, agent: &str) -> Result {
    let expr = format!("ALERTS{{alertname=\"{alert}\",agent=\"{agent}\",alertstate=\"firing\"}}");
    wait(&format!("{alert} firing for {agent}"), || {
        (query(api, &expr).ok()?.len() == 1).then_some(())
    })?;
    println!("ok: {alert} firing for {agent}");
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
