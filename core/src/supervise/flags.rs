/*!
The restart policy's limits as command-line flags, one group for both binaries that take them:
`mosaic-hb` (plain flags: the sidecar reads no variable, see [`LimitArgs::without_env`]) and
the launcher (each also read from its `MOSAIC_RESTART_*` variable), read and checked together
with the policy ([`LimitArgs::resolve`]), and written back as flags ([`settings`]) for the
sidecar's argv and the stored launch.
*/

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Command};

use super::policy::{Limits, Restart};
use crate::validate;

/// The restart limits as flags. Each is text until [`LimitArgs::resolve`] reads it (a
/// person's or the environment's bytes may not be text); absent or empty is the default.
/// The defaults shown are [`Limits::DEFAULT`]'s (a test holds them together).
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitArgs {
    /// Seconds before the first restart, doubled after each unstable death
    #[arg(
        long = "restart-delay",
        env = "MOSAIC_RESTART_DELAY",
        value_name = "SECS",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub delay: Option<OsString>,
    /// Longest delay before a restart, in seconds
    #[arg(
        long = "restart-max-delay",
        env = "MOSAIC_RESTART_MAX_DELAY",
        value_name = "SECS",
        default_value = "300",
        allow_hyphen_values = true
    )]
    pub max_delay: Option<OsString>,
    /// A run at least this long (seconds) was stable: its death restarts after the first delay
    /// again
    #[arg(
        long = "restart-stable",
        env = "MOSAIC_RESTART_STABLE",
        value_name = "SECS",
        default_value = "600",
        allow_hyphen_values = true
    )]
    pub stable: Option<OsString>,
    /// Give up (`status=failed`) at this many unstable deaths within --restart-window
    #[arg(
        long = "restart-burst",
        env = "MOSAIC_RESTART_BURST",
        value_name = "N",
        default_value = "5",
        allow_hyphen_values = true
    )]
    pub burst: Option<OsString>,
    /// Seconds over which unstable deaths are counted (at least 0.01: 0 would never give up)
    #[arg(
        long = "restart-window",
        env = "MOSAIC_RESTART_WINDOW",
        value_name = "SECS",
        default_value = "900",
        allow_hyphen_values = true
    )]
    pub window: Option<OsString>,
    /// At most one restart per this many seconds among all agents of the heartbeat directory
    /// (0: no limit)
    #[arg(
        long = "restart-guard",
        env = "MOSAIC_RESTART_GUARD",
        value_name = "SECS",
        default_value = "10",
        allow_hyphen_values = true
    )]
    pub guard: Option<OsString>,
}

/// The longest delay, period or window supervision accepts, in seconds.
const WEEK: f64 = 604_800.0;

impl LimitArgs {
    /// `cmd`, which flattens these flags, with their variables dropped: the sidecar reads
    /// none (it inherits the launcher's environment, and its argv alone says its policy).
    pub fn without_env(mut cmd: Command) -> Command {
        for arg in LimitArgs::augment_args(Command::new("limits")).get_arguments() {
            cmd = cmd.mut_arg(arg.get_id(), |arg| arg.env(None));
        }
        cmd
    }

    /// The policy (`--restart`; absent or empty: `no`) and these limits, read and checked
    /// together. With `env`, an error names the launcher's variable beside the flag.
    pub fn resolve(&self, policy: Option<&str>, env: bool) -> Result<(Restart, Limits), String> {
        let name = |flag: &str| flag_name(flag, env);
        let policy = match policy.filter(|p| !p.is_empty()) {
            Some(text) => {
                Restart::parse(text).map_err(|e| format!("{e} ({})", name("--restart")))?
            }
            None => Restart::No,
        };
        let text = |value: &Option<OsString>, flag: &str| -> Result<Option<String>, String> {
            match value.as_deref().filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(value) => match value.to_str() {
                    Some(text) => Ok(Some(text.to_string())),
                    None => Err(format!("invalid {} {value:?}: not UTF-8 text", name(flag))),
                },
            }
        };
        let secs =
            |value: &Option<OsString>, flag: &str, default: Duration| match text(value, flag)? {
                Some(text) => validate::seconds(&text, 0.0..=WEEK)
                    .map_err(|why| validate::invalid(&name(flag), &text, &why)),
                None => Ok(default),
            };
        let d = Limits::DEFAULT;
        let burst = match text(&self.burst, "--restart-burst")? {
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(validate::invalid(
                        &name("--restart-burst"),
                        &text,
                        "a count from 1 to 1000",
                    ))
                }
            },
            None => d.burst,
        };
        let limits = Limits {
            floor: secs(&self.delay, "--restart-delay", d.floor)?,
            cap: secs(&self.max_delay, "--restart-max-delay", d.cap)?,
            stable: secs(&self.stable, "--restart-stable", d.stable)?,
            burst,
            window: secs(&self.window, "--restart-window", d.window)?,
            guard: secs(&self.guard, "--restart-guard", d.guard)?,
        };
        limits.check()?;
        Ok((policy, limits))
    }
}

/// `--restart-delay`, or with `env` `--restart-delay (MOSAIC_RESTART_DELAY)`: a flag as an
/// error names it.
pub fn flag_name(flag: &str, env: bool) -> String {
    let flag = flag.trim_start_matches("--");
    if env {
        let var = flag.replace('-', "_").to_uppercase();
        format!("--{flag} (MOSAIC_{var})")
    } else {
        format!("--{flag}")
    }
}

/// A restart policy and its limits as flag names (without `--`) and values: the policy, then
/// each limit that is not the default; nothing for `no`. What the launcher hands the sidecar
/// and stores with the agent for `mosaic-fleet restart`.
pub fn settings(policy: Restart, limits: &Limits) -> Vec<(&'static str, String)> {
    if policy == Restart::No {
        return Vec::new();
    }
    let mut out = vec![("restart", policy.as_str().to_string())];
    let d = Limits::DEFAULT;
    let secs = |v: Duration| format!("{}", v.as_secs_f64());
    for (flag, value, default) in [
        ("restart-delay", limits.floor, d.floor),
        ("restart-max-delay", limits.cap, d.cap),
        ("restart-stable", limits.stable, d.stable),
        ("restart-window", limits.window, d.window),
        ("restart-guard", limits.guard, d.guard),
    ] {
        if value != default {
            out.push((flag, secs(value)));
        }
    }
    if limits.burst != d.burst {
        out.push(("restart-burst", limits.burst.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    /// The flags alone, as the sidecar takes them (no variable is read).
    fn parse(args: &[&str]) -> LimitArgs {
        let cmd = LimitArgs::without_env(LimitArgs::augment_args(Command::new("t")));
        let matches = cmd
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap();
        LimitArgs::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn the_flags_defaults_are_the_limits_defaults() {
        assert_eq!(
            parse(&[]).resolve(Some("always"), false).unwrap(),
            (Restart::Always, Limits::DEFAULT)
        );
        assert_eq!(
            LimitArgs::default().resolve(None, false).unwrap(),
            (Restart::No, Limits::DEFAULT)
        );
        // Every limit that `settings` writes is one of these flags.
        let cmd = LimitArgs::augment_args(Command::new("t"));
        let longs: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        let s = Duration::from_secs;
        let other = Limits {
            floor: s(2),
            cap: s(301),
            stable: s(601),
            burst: 6,
            window: s(901),
            guard: s(11),
        };
        let written = settings(Restart::Always, &other);
        assert_eq!(written.len(), 1 + longs.len());
        assert!(written
            .iter()
            .all(|(flag, _)| *flag == "restart" || longs.contains(flag)));
    }

    #[test]
    fn the_launchers_variables_are_named_as_its_errors_name_them() {
        for arg in LimitArgs::augment_args(Command::new("t")).get_arguments() {
            let flag = arg.get_long().unwrap();
            let var = arg.get_env().unwrap().to_str().unwrap();
            assert_eq!(flag_name(flag, true), format!("--{flag} ({var})"));
        }
        let plain = LimitArgs::without_env(LimitArgs::augment_args(Command::new("t")));
        assert!(plain.get_arguments().all(|a| a.get_env().is_none()));
    }

    #[test]
    fn limits_resolve_and_travel_to_the_sidecar() {
        let given = parse(&[
            "--restart-delay",
            "0.5",
            "--restart-burst",
            "3",
            "--restart-guard",
            "",
        ]);
        let (policy, limits) = given.resolve(Some("on-failure"), false).unwrap();
        assert_eq!(policy, Restart::OnFailure);
        assert_eq!(limits.floor, Duration::from_millis(500));
        assert_eq!(limits.burst, 3);
        assert_eq!(limits.guard, Limits::DEFAULT.guard, "empty is unset");
        // What the launcher passes, the sidecar reads back the same.
        let args = super::super::protocol::sidecar_args(policy, &limits);
        let [restart, name, rest @ ..] = &args[..] else {
            panic!("{args:?}")
        };
        assert_eq!([restart, name], ["--restart", "on-failure"]);
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        assert_eq!(
            parse(&rest).resolve(Some(name), false).unwrap(),
            (policy, limits)
        );
    }

    #[test]
    fn a_refusal_names_the_flag_and_with_env_its_variable() {
        let refusal =
            |limits: LimitArgs, policy: Option<&str>| limits.resolve(policy, true).unwrap_err();
        let max_delay = LimitArgs {
            max_delay: Some("x".into()),
            ..LimitArgs::default()
        };
        assert_eq!(
            refusal(max_delay, None),
            "invalid --restart-max-delay (MOSAIC_RESTART_MAX_DELAY) \"x\": \
             must be a number of seconds from 0 to 604800"
        );
        let guard = LimitArgs {
            guard: Some("604801".into()),
            ..LimitArgs::default()
        };
        assert_eq!(
            guard.resolve(None, false).unwrap_err(),
            "invalid --restart-guard \"604801\": must be a number of seconds from 0 to 604800"
        );
        let burst = LimitArgs {
            burst: Some("0".into()),
            ..LimitArgs::default()
        };
        assert_eq!(
            refusal(burst, None),
            "invalid --restart-burst (MOSAIC_RESTART_BURST) \"0\": a count from 1 to 1000"
        );
        use std::os::unix::ffi::OsStringExt;
        let bytes = LimitArgs {
            delay: Some(OsString::from_vec(vec![0xff])),
            ..LimitArgs::default()
        };
        assert!(refusal(bytes, None).ends_with(": not UTF-8 text"));
        assert!(refusal(LimitArgs::default(), Some("sometimes"))
            .ends_with("(--restart (MOSAIC_RESTART))"));
    }
}
