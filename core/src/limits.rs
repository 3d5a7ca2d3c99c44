/*!
The restart limits as command-line flags, one group for both binaries that take them:
`mosaic-hb` (plain flags) and the launcher (each also read from its `MOSAIC_RESTART_*`
variable).
*/

use std::ffi::OsString;

use clap::Args;

use crate::supervise;

/// The restart limits as flags, one each from one table ([`supervise::LIMIT_FLAGS`], in its
/// order), for both binaries: with `ENV` (the launcher's) each also reads `MOSAIC_RESTART_*`
/// and stays absent unless given, so a stored launch keeps only what was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitArgs<const ENV: bool>(pub [Option<OsString>; 6]);

/// `--help` for each of [`supervise::LIMIT_FLAGS`] (no final period, as clap shows a doc comment).
const LIMIT_HELP: [&str; 6] = [
    "Seconds before the first restart, doubled after each unstable death",
    "Longest delay before a restart, in seconds",
    "A run at least this long (seconds) was stable: its death restarts after the first delay \
     again",
    "Give up (`status=failed`) at this many unstable deaths within --restart-window",
    "Seconds over which unstable deaths are counted",
    "At most one restart per this many seconds among all agents of the heartbeat directory \
     (0: no limit)",
];

/// The launcher's variable for each of [`supervise::LIMIT_FLAGS`] (`MOSAIC_` and the flag).
const LIMIT_ENV: [&str; 6] = [
    "MOSAIC_RESTART_DELAY",
    "MOSAIC_RESTART_MAX_DELAY",
    "MOSAIC_RESTART_STABLE",
    "MOSAIC_RESTART_BURST",
    "MOSAIC_RESTART_WINDOW",
    "MOSAIC_RESTART_GUARD",
];

impl<const ENV: bool> LimitArgs<ENV> {
    /// The values as text (a person's or the environment's bytes may not be), in order.
    pub fn texts(&self) -> Result<[Option<&str>; 6], String> {
        let mut texts = [None; 6];
        for ((text, value), (flag, _, _)) in
            texts.iter_mut().zip(&self.0).zip(supervise::LIMIT_FLAGS)
        {
            *text = match value {
                Some(value) => Some(value.to_str().ok_or_else(|| {
                    format!(
                        "invalid {} {value:?}: not UTF-8 text",
                        supervise::flag_name(flag, ENV)
                    )
                })?),
                None => None,
            };
        }
        Ok(texts)
    }
}

impl<const ENV: bool> clap::FromArgMatches for LimitArgs<ENV> {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(LimitArgs(supervise::LIMIT_FLAGS.map(|(flag, _, _)| {
            // A default the user did not give is left out: the limit's default stands anyway.
            let given = matches.value_source(flag) != Some(clap::parser::ValueSource::DefaultValue);
            matches
                .get_one::<OsString>(flag)
                .filter(|_| given || !ENV)
                .cloned()
        })))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<const ENV: bool> Args for LimitArgs<ENV> {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for (((flag, value_name, default), help), var) in supervise::LIMIT_FLAGS
            .into_iter()
            .zip(LIMIT_HELP)
            .zip(LIMIT_ENV)
        {
            let mut arg = clap::Arg::new(flag)
                .long(flag)
                .value_name(value_name)
                .value_parser(clap::value_parser!(OsString))
                .default_value(default)
                .allow_hyphen_values(true)
                .help(help);
            if ENV {
                arg = arg.env(var);
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launchers_limit_variables_are_named_as_its_errors_name_them() {
        for ((flag, _, _), var) in supervise::LIMIT_FLAGS.iter().zip(LIMIT_ENV) {
            assert_eq!(
                supervise::flag_name(flag, true),
                format!("--{flag} ({var})")
            );
        }
    }
}
