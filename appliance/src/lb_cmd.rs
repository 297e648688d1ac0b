//! `mirrorfarm lb --home DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::logging;

/// Validates the configuration, then runs the load balancer until SIGTERM (drain) or SIGINT.
pub fn run(home: PathBuf) -> ExitCode {
    let config = match mirrorfarm_lb::config::LbConfig::load(&home) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mirrorfarm: {e}");
            return ExitCode::from(64);
        }
    };
    logging::init(&home.join("logs"), "lb.log", config.log_json);
    match mirrorfarm_lb::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "load balancer stopped");
            eprintln!("mirrorfarm: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
