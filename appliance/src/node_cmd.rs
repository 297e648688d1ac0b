//! `mirrorfarm node --home DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::logging;

/// Validates the configuration, then runs the node until SIGTERM/SIGINT.
pub fn run(home: PathBuf, config_file: Option<PathBuf>) -> ExitCode {
    // Before any thread starts (logging and the runtime start below).
    mirrorfarm_node::gitcmd::settle_environment();
    let config = match mirrorfarm_node::node::check_config(&home, config_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mirrorfarm: {e}");
            return ExitCode::from(64);
        }
    };
    logging::init(
        &home.join("logs"),
        "node.log",
        config.log_format == mirrorfarm_node::config::LogFormat::Json,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mirrorfarm: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(mirrorfarm_node::node::run(&home, config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node stopped");
            eprintln!("mirrorfarm: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
