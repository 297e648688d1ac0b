//! `mirrorfarm`: the one binary of the appliance.

mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A git mirror farm: read-only mirror nodes kept in sync with a primary git server.
#[derive(Debug, Parser)]
#[command(name = "mirrorfarm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mirror node on a home directory (reads DIR/mirrorfarm.properties).
    Node {
        /// The node's home directory.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a home's configuration: exit 0 when good, 64 naming file, line and key when not.
    Check {
        /// The home directory.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { home },
        } => match mirrorfarm_node::node::check_config(&home) {
            Ok(c) => {
                println!("{}: OK", c.file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mirrorfarm: {e}");
                ExitCode::from(64)
            }
        },
        Command::Node { home } => run_node(home),
    }
}

fn run_node(home: PathBuf) -> ExitCode {
    // Validate the configuration before anything else (logging to the home included).
    let config = match mirrorfarm_node::node::check_config(&home) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mirrorfarm: {e}");
            return ExitCode::from(64);
        }
    };
    let _guard = logging::init(&home.join("logs"), config.log_format);
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
    let res = runtime.block_on(mirrorfarm_node::node::run(&home, shutdown_signal()));
    match res {
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
