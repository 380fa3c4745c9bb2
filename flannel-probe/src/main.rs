//! flannel-probe: see `flannel-probe --help`.
// The library uses the package's other dependencies; this thin shell
// cannot, and the lint would name every one of them here.
#![allow(unused_crate_dependencies)]
use std::process::ExitCode;

use flannel_probe::{cli, logcapture::LogWriter};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Usage errors exit 2 inside clap, as the contract wants; every flag
    // may also come from its FLANNEL_PROBE_* variable.
    let cli = cli::conventions::parse();
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,flannel_probe=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stderr, or memory while the full-screen watch owns the terminal.
        .with_writer(LogWriter)
        .with_target(false)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flannel-probe: starting the async runtime failed: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
        Err(e) => {
            // One line for the operator; the whole chain (a verifier log,
            // say) for whoever runs with RUST_LOG=debug.
            tracing::debug!("{e:?}");
            let msg = format!("{e:#}");
            let first = msg.lines().next().unwrap_or("unknown error");
            eprintln!("flannel-probe: {first}");
            ExitCode::from(2)
        }
    }
}
