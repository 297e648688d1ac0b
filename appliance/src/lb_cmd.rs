//! `mirrorfarm lb --home DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::logging;

/// Validates the configuration, then runs the load balancer until SIGTERM (drain) or SIGINT.
pub fn run(home: PathBuf, config_file: Option<PathBuf>) -> ExitCode {
    let loaded = match &config_file {
        Some(f) => mirrorfarm_lb::config::LbConfig::load_file(f, &home),
        None => mirrorfarm_lb::config::LbConfig::load(&home),
    };
    let config = match loaded {
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
