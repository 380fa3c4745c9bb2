//! The command line: one file per subcommand, shared options here.
pub mod conventions;
pub(crate) mod install;
pub(crate) mod mesh;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod watch;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::{
    datapath::AttachMode,
    node::{DiscoverOptions, PortChoice, UplinkChoice},
    probe::ProbeOptions,
    render::{
        Format,
        colour::{self, ColorChoice},
    },
};

#[derive(Debug, Parser)]
#[command(
    name = "flannel-probe",
    version = env!("FLANNEL_PROBE_LONG_VERSION"),
    about = "Finds why Flannel VXLAN traffic dies on this node",
    long_about = "Counts VXLAN per remote VTEP with eBPF on the uplink and the overlay device, \
                  checks the node's VXLAN state over netlink, and says what is wrong.\n\
                  Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Clone, Debug, Args)]
pub struct Common {
    /// The VXLAN devices to watch (repeat the flag or give a comma list);
    /// missing or down is a finding, not an error. Default: flannel.1 and
    /// flannel-v6.1, each when it exists (flannel.1 when neither does). The
    /// first is the one the datapath counts on.
    #[arg(long, global = true, value_delimiter = ',', value_parser = iface_name)]
    pub overlay: Vec<String>,
    /// The underlay NIC: `auto` takes the VXLAN device's own `dev`, else the
    /// interface of the default route, else the one interface holding the
    /// node's underlay address.
    #[arg(long, visible_alias = "iface", global = true, default_value = "auto",
          value_parser = uplink_choice)]
    pub uplink: UplinkArg,
    /// VXLAN UDP port: `auto` reads it from the device, else 8472.
    #[arg(long, global = true, default_value = "auto", value_parser = port_choice)]
    pub port: PortArg,
    /// Output format of `report`, `mesh` and `watch --plain`; `npd` (not
    /// for `mesh`): one line of at most 200 bytes, verdict first.
    #[arg(long, short = 'o', visible_alias = "output", global = true, value_enum,
          default_value_t = Format::Text)]
    pub format: Format,
    /// How to attach the eBPF programs.
    #[arg(long, global = true, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,
    /// Slots per eBPF map (peers, VTEP MACs); extra peers are counted as overflow.
    #[arg(long, global = true, default_value_t = flannel_probe_common::abi::DEFAULT_MAX_PEERS,
          value_parser = clap::value_parser!(u32).range(16..=1_000_000))]
    pub max_peers: u32,
    /// Refuse to start when the eBPF maps (sized by --max-peers times the
    /// possible CPUs) would take more kernel memory: 64MiB, 200Mi, 1G or bytes.
    #[arg(long, global = true, default_value_t = crate::probe::DEFAULT_MAP_MEMORY_LIMIT,
          value_parser = byte_size)]
    pub map_memory_limit: u64,
    /// Colour severity words in text output: `auto` on a terminal unless
    /// NO_COLOR is set; never in json, npd or metrics.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Wrappers so clap can hold the parsed choices.
#[derive(Clone, Debug)]
pub struct UplinkArg(pub UplinkChoice);
#[derive(Clone, Debug)]
pub struct PortArg(pub PortChoice);

impl Common {
    /// `text` with its severity words coloured if `--color` says so.
    pub(crate) fn paint(&self, text: &str) -> String {
        colour::paint(text, colour::for_stdout(self.color))
    }

    /// The engine's options: flags in, [`ProbeOptions`] out, built once.
    pub fn probe_options(&self) -> ProbeOptions {
        ProbeOptions {
            discover: DiscoverOptions {
                overlays: self.overlay.clone(),
                seen_overlays: Vec::new(),
                uplink: self.uplink.0.clone(),
                port: self.port.0.clone(),
            },
            max_peers: self.max_peers,
            attach_mode: self.attach,
            map_memory_limit: self.map_memory_limit,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live per-peer traffic table, refreshed every interval, until q or Ctrl-C.
    Watch(watch::WatchArgs),
    /// Observe for a while, print one fault report, exit 0 (healthy), 1
    /// (a critical or warning finding) or 2 (could not observe).
    Report(report::ReportArgs),
    /// Long-running agent: Prometheus metrics on /metrics, the report of a
    /// rolling window on /report, counters for `mesh` on /counters.
    Serve(serve::ServeArgs),
    /// VXLAN between every pair of nodes, from their agents' counters:
    /// sent against received per link, loss %; exits 0, 1 or 2 as `report`.
    /// Needs no privileges.
    Mesh(mesh::MeshArgs),
    /// Copy this binary to DIR/flannel-probe (the DaemonSet's init container
    /// puts it on the host for node-problem-detector); needs no shell.
    InstallBinary(install::InstallArgs),
    /// Print a shell completion script: `completions bash >
    /// /etc/bash_completion.d/flannel-probe`.
    Completions(conventions::CompletionsArgs),
    /// Print the man page (roff): `man | man -l -`; `man report` for one
    /// subcommand's page.
    Man(conventions::ManArgs),
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace.
fn iface_name(s: &str) -> Result<String> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ':']) || s.contains(char::is_whitespace) {
        bail!("'{s}' is not a valid interface name (1-15 characters, no '/', ':' or spaces)");
    }
    Ok(s.to_string())
}

fn uplink_choice(s: &str) -> Result<UplinkArg> {
    Ok(UplinkArg(if s == "auto" {
        UplinkChoice::Auto
    } else {
        UplinkChoice::Name(iface_name(s)?)
    }))
}

fn port_choice(s: &str) -> Result<PortArg> {
    if s == "auto" {
        return Ok(PortArg(PortChoice::Auto));
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(PortArg(PortChoice::Fixed(p))),
        _ => bail!("'{s}' is not a UDP port: give 1-65535 or auto"),
    }
}

/// `64MiB`, `128Mi`, `1G`, `500k`, `1048576` (binary units: a Kubernetes
/// `Mi` and a `MiB` are the same).
pub(crate) fn byte_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" | "kib" => 10,
        "m" | "mi" | "mib" => 20,
        "g" | "gi" | "gib" => 30,
        "t" | "ti" | "tib" => 40,
        _ => bail!("'{s}' is not a size: try 64MiB, 128Mi, 1G or a number of bytes"),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            anyhow::anyhow!("'{s}' is not a size: try 64MiB, 128Mi, 1G or a number of bytes")
        })
}

/// `5s`, `500ms`, `2m`; a bare number is seconds.
pub(crate) fn duration(s: &str) -> Result<Duration> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => bail!("'{s}' is not a positive duration"),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("'{s}' is not a duration ({e}): try 5s, 500ms or 1m"))?,
    };
    if d.is_zero() {
        bail!("'{s}' is not a positive duration");
    }
    Ok(d)
}

/// Runs the parsed command; the result is the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Report(args) => report::run(&cli.common, &args).await,
        Command::Watch(args) => watch::run(&cli.common, &args).await,
        Command::Serve(args) => serve::run(&cli.common, &args).await,
        Command::Mesh(_) if cli.common.format == Format::Npd => {
            bail!("--format npd is for report and watch: give mesh --format text or json")
        }
        Command::Mesh(args) => mesh::run(&cli.common, &args).await,
        Command::InstallBinary(args) => install::run(&args),
        Command::Completions(args) => conventions::completions(&args),
        Command::Man(args) => conventions::man(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(duration("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(duration("1m").ok(), Some(Duration::from_secs(60)));
        assert_eq!(duration("2.5").ok(), Some(Duration::from_millis(2500)));
        for bad in ["", "0", "-1", "soon", "5 parsecs", "0s", "NaN"] {
            assert!(duration(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size("64MiB").ok(), Some(64 << 20));
        assert_eq!(byte_size("128Mi").ok(), Some(128 << 20));
        assert_eq!(byte_size("1G").ok(), Some(1 << 30));
        assert_eq!(byte_size("500k").ok(), Some(500 << 10));
        assert_eq!(byte_size("4096").ok(), Some(4096));
        for bad in ["", "0", "-1", "64XB", "MiB", "99999999999999999999", "1.5G"] {
            assert!(byte_size(bad).is_err(), "{bad:?} must be rejected");
        }
        let cli = Cli::try_parse_from(["flannel-probe", "report"]).expect("parse");
        assert_eq!(
            cli.common.map_memory_limit,
            crate::probe::DEFAULT_MAP_MEMORY_LIMIT
        );
    }

    #[test]
    fn ports_and_names() {
        assert!(matches!(port_choice("auto"), Ok(PortArg(PortChoice::Auto))));
        assert!(matches!(
            port_choice("4789"),
            Ok(PortArg(PortChoice::Fixed(4789)))
        ));
        for bad in ["0", "65536", "-1", "http"] {
            assert!(port_choice(bad).is_err(), "{bad} must be rejected");
        }
        assert!(iface_name("flannel.1").is_ok());
        for bad in ["", "a-name-that-is-too-long", "eth0/1", "a b"] {
            assert!(iface_name(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn cli_parses_the_contract_flags() {
        let cli = Cli::try_parse_from([
            "flannel-probe",
            "report",
            "--duration",
            "2s",
            "--format",
            "json",
            "--overlay",
            "flannel.4096",
            "--uplink",
            "eth1",
            "--port",
            "4789",
        ])
        .expect("parse");
        assert_eq!(cli.common.overlay, ["flannel.4096"]);
        // Several: repeated, or a comma list.
        let several = Cli::try_parse_from([
            "flannel-probe",
            "report",
            "--overlay",
            "flannel.1,flannel-v6.1",
            "--overlay",
            "vxlan0",
        ])
        .expect("parse");
        assert_eq!(
            several.common.overlay,
            ["flannel.1", "flannel-v6.1", "vxlan0"]
        );
        assert_eq!(
            several.common.probe_options().discover.overlays,
            ["flannel.1", "flannel-v6.1", "vxlan0"]
        );
        let none = Cli::try_parse_from(["flannel-probe", "report"]).expect("parse");
        assert!(none.common.probe_options().discover.overlays.is_empty());
        assert!(Cli::try_parse_from(["flannel-probe", "report", "--overlay", "a/b"]).is_err());
        assert_eq!(cli.common.format, Format::Json);
        assert!(matches!(cli.common.uplink.0, UplinkChoice::Name(ref n) if n == "eth1"));
        let Command::Report(r) = cli.command else {
            panic!("report expected")
        };
        assert_eq!(r.duration, Duration::from_secs(2));
        // Bad input is a usage error, which clap turns into exit code 2.
        let err = Cli::try_parse_from(["flannel-probe", "report", "--port", "99999"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err =
            Cli::try_parse_from(["flannel-probe", "report", "--duration", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
