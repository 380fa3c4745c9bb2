//! The command line's conventions: every flag also from an environment
//! variable, shell completions and the man page.
use std::{ffi::OsString, io::Write as _};

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _, FromArgMatches as _};

use super::Cli;

/// Prefix of the variable every flag reads: `--max-peers` from
/// `FLANNEL_PROBE_MAX_PEERS`.
pub const ENV_PREFIX: &str = "FLANNEL_PROBE_";

/// The variable `--long` reads.
pub fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

/// Gives every flag of `cmd` and its subcommands its variable. Done on the
/// built-up command rather than per `#[arg]`, so that a flag added later
/// gets one too and the names cannot drift from the flags.
fn with_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| match a.get_long() {
        Some(long) if !a.is_positional() && !matches!(long, "help" | "version") => {
            let name = env_name(long);
            a.env(name)
        }
        _ => a,
    })
    .mut_subcommands(with_env)
}

/// The whole command line (what `--help`, completions and the man page show).
pub fn command() -> clap::Command {
    with_env(Cli::command())
}

/// Parses `args`: a flag wins over its variable, the variable over the
/// default (clap's order).
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command();
    let mut m = cmd.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut cmd))
}

/// This process's command line; a usage error exits 2 (help and version 0).
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand's page (`flannel-probe-report`) instead of the main one.
    pub subcommand: Option<String>,
}

/// `completions SHELL`: the script on stdout, e.g. `flannel-probe
/// completions bash > /etc/bash_completion.d/flannel-probe`.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command(), "flannel-probe", &mut out);
    write_stdout(&out)
}

/// `man [SUBCOMMAND]`: the roff page on stdout, e.g. `flannel-probe man |
/// man -l -`. Printed by the binary rather than written at build time, so
/// the page on a node always matches the binary there (the image has no
/// toolchain and no other files).
pub(crate) fn man(args: &ManArgs) -> Result<i32> {
    let out = man_page(args.subcommand.as_deref())?;
    write_stdout(&out)
}

fn man_page(subcommand: Option<&str>) -> Result<Vec<u8>> {
    let mut cmd = command();
    // Propagates the global flags into the subcommands' pages.
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => {
            let sub = cmd.find_subcommand(name).cloned().ok_or_else(|| {
                let names: Vec<&str> = cmd
                    .get_subcommands()
                    .map(clap::Command::get_name)
                    .filter(|n| *n != "help")
                    .collect();
                anyhow::anyhow!(
                    "there is no subcommand '{name}': give one of {}",
                    names.join(", ")
                )
            })?;
            sub.name(format!("flannel-probe-{name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .context("rendering the man page failed")?;
    Ok(out)
}

fn write_stdout(bytes: &[u8]) -> Result<i32> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("writing to stdout failed: is the pipe closed?")?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cli::Command,
        node::UplinkChoice,
        render::{Format, colour::ColorChoice},
    };

    /// Variables flannel-probe and its tests read for other things: no flag
    /// may take one of these names (they keep their meaning).
    const KNOBS: &[&str] = &[
        "FLANNEL_PROBE_KEEP_CAPS",
        "FLANNEL_PROBE_BIN",
        "FLANNEL_PROBE_DIST_BIN",
        "FLANNEL_PROBE_K8S_VENV",
        "FLANNEL_PROBE_TEST_TIME_SCALE",
        "FLANNEL_PROBE_COEXIST_SECS",
        "FLANNEL_PROBE_CAPTURE_DIR",
        "FLANNEL_PROBE_BLESS",
        "FLANNEL_PROBE_EBPF_VERBOSE",
        "FLANNEL_PROBE_EBPF_TOOLCHAIN",
        "FLANNEL_PROBE_GIT_REV",
    ];

    /// (subcommand, long flag, variable) of every flag.
    fn flags() -> Vec<(String, String, String)> {
        let mut cmd = command();
        cmd.build();
        let mut out = Vec::new();
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            for a in sub.get_arguments() {
                let Some(long) = a.get_long() else { continue };
                if matches!(long, "help" | "version") {
                    continue;
                }
                let env = a
                    .get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((sub.get_name().to_string(), long.to_string(), env));
            }
        }
        out
    }

    #[test]
    fn every_flag_has_its_variable_and_none_takes_a_knob() {
        let flags = flags();
        assert!(flags.len() >= 20, "{flags:?}");
        for (sub, long, env) in &flags {
            assert_eq!(*env, env_name(long), "{sub} --{long}");
            assert!(!KNOBS.contains(&env.as_str()), "{sub} --{long} takes {env}");
        }
        assert!(
            flags
                .iter()
                .any(|(s, l, e)| s == "report" && l == "uplink" && e == "FLANNEL_PROBE_UPLINK"),
            "global flags reach the subcommands"
        );
    }

    #[test]
    fn the_readme_lists_every_variable() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md is readable");
        for (sub, long, env) in flags() {
            assert!(
                readme.contains(&format!("`{env}`")),
                "README.md does not list `{env}` (of {sub} --{long})"
            );
        }
    }

    #[test]
    fn aliases_parse_as_the_contract_flags() {
        for args in [
            ["report", "-o", "json", "--iface", "eth1"],
            ["report", "--output", "json", "--uplink", "eth1"],
            ["report", "--format", "json", "--iface", "eth1"],
        ] {
            let cli = try_parse_from(std::iter::once("flannel-probe").chain(args))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.common.format, Format::Json, "{args:?}");
            assert!(
                matches!(cli.common.uplink.0, UplinkChoice::Name(ref n) if n == "eth1"),
                "{args:?}"
            );
        }
        let cli = try_parse_from(["flannel-probe", "mesh", "--agents", "a", "--color", "never"])
            .expect("parse");
        assert_eq!(cli.common.color, ColorChoice::Never);
        assert!(matches!(cli.command, Command::Mesh(_)));
        let err = try_parse_from(["flannel-probe", "report", "--color", "sometimes"])
            .expect_err("a bad --color");
        assert_eq!(err.exit_code(), 2);
    }

    /// Set in the copy of this test binary that the precedence test runs
    /// with chosen variables (the environment of this process is shared by
    /// every test thread, so it is never changed here).
    const CHILD: &str = "FLANNEL_PROBE_CLI_PRECEDENCE_CHILD";

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_default() {
        if let Some(args) = std::env::var_os(CHILD) {
            // The child: parse and show what won.
            let args = args.to_string_lossy().into_owned();
            let cli = try_parse_from(std::iter::once("flannel-probe").chain(args.split(' ')))
                .unwrap_or_else(|e| panic!("{e}"));
            let Command::Report(r) = &cli.command else {
                panic!("report expected")
            };
            println!(
                "PARSED format={:?} overlay={} port={:?} max_peers={} duration={:?} color={:?}",
                cli.common.format,
                if cli.common.overlay.is_empty() {
                    "default".to_owned()
                } else {
                    cli.common.overlay.join(",")
                },
                cli.common.port.0,
                cli.common.max_peers,
                r.duration,
                cli.common.color
            );
            return;
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let run = |args: &str, env: &[(&str, &str)]| {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([
                "--exact",
                "cli::conventions::tests::a_flag_beats_its_variable_which_beats_the_default",
                "--nocapture",
                "--test-threads=1",
            ]);
            // Only the variables under test: none inherited from the caller.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with(ENV_PREFIX) {
                    cmd.env_remove(k);
                }
            }
            cmd.env(CHILD, args).envs(env.iter().copied());
            let out = cmd.output().expect("running the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{args} {env:?}: {stdout}");
            stdout
                .lines()
                .find_map(|l| l.split_once("PARSED ").map(|(_, v)| v.to_string()))
                .unwrap_or_else(|| panic!("no PARSED line in {stdout}"))
        };
        // Defaults.
        assert_eq!(
            run("report", &[]),
            "format=Text overlay=default port=Auto max_peers=4096 duration=5s color=Auto"
        );
        let env = [
            ("FLANNEL_PROBE_FORMAT", "json"),
            ("FLANNEL_PROBE_OVERLAY", "flannel.9,flannel-v6.9"),
            ("FLANNEL_PROBE_PORT", "4789"),
            ("FLANNEL_PROBE_MAX_PEERS", "64"),
            ("FLANNEL_PROBE_DURATION", "2s"),
            ("FLANNEL_PROBE_COLOR", "always"),
        ];
        // Variables over the defaults.
        assert_eq!(
            run("report", &env),
            "format=Json overlay=flannel.9,flannel-v6.9 port=Fixed(4789) max_peers=64 duration=2s color=Always"
        );
        // Flags (and their aliases) over the variables.
        assert_eq!(
            run(
                "report -o npd --overlay flannel.2 --port 8472 --duration 1s --color never",
                &env
            ),
            "format=Npd overlay=flannel.2 port=Fixed(8472) max_peers=64 duration=1s color=Never"
        );
    }

    #[test]
    fn completions_and_man_pages_render() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "flannel-probe", &mut out);
            let s = String::from_utf8_lossy(&out);
            for word in ["uplink", "format", "color", "report", "completions"] {
                assert!(s.contains(word), "{shell:?} completion lacks {word}");
            }
            if shell == clap_complete::Shell::Bash {
                for alias in ["--iface", "--output", "-o"] {
                    assert!(s.contains(alias), "bash completion lacks {alias}");
                }
            }
        }
        let page = String::from_utf8(man_page(None).expect("man page")).expect("utf-8");
        assert!(
            page.starts_with(".ie \\n(.g .ds Aq"),
            "roff: {}",
            &page[..40]
        );
        assert!(page.contains(".TH flannel-probe 1"), "{page}");
        assert!(page.contains("FLANNEL_PROBE_OVERLAY"), "env vars are shown");
        let sub = String::from_utf8(man_page(Some("report")).expect("report page")).expect("utf-8");
        assert!(sub.contains(".TH flannel-probe-report 1"), "{sub}");
        assert!(sub.contains("\\-\\-duration"), "{sub}");
        assert!(
            sub.contains("\\-\\-overlay"),
            "global flags reach subcommand pages"
        );
        let err = man_page(Some("nope")).expect_err("unknown subcommand");
        assert!(
            err.to_string().contains("give one of watch, report"),
            "{err}"
        );
    }
}
