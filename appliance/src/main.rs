//! `mirrorfarm`: the one binary of the appliance (mirror node, load balancer, demo, tools).

mod config_check;
mod demo;
mod lb_cmd;
mod logging;
mod node_cmd;
mod probe;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A git mirror farm: read-only mirror nodes kept in sync with a primary git server, behind one
/// load balancer.
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
    /// Run the load balancer on a home directory (reads DIR/mirrorfarm-lb.properties).
    Lb {
        /// The load balancer's home directory.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
    /// A whole farm on this machine: a generated upstream, three nodes and the load balancer
    /// for `localhost` with a self-signed certificate.
    Demo {
        /// Where the demo keeps its upstream, node and load-balancer homes (reused by a second run).
        #[arg(long, value_name = "DIR", default_value = "mirrorfarm-demo")]
        workdir: PathBuf,
        /// HTTPS port of the load balancer.
        #[arg(long, value_name = "N", default_value_t = 8443)]
        https_port: u16,
        /// SSH port of the load balancer.
        #[arg(long, value_name = "N", default_value_t = 7999)]
        ssh_port: u16,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a home's configuration (node, load balancer, or both): exit 0 when good, 64
    /// naming file, line and key when not.
    Check {
        /// The home directory.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Config {
            command: ConfigCommand::Check { home },
        } => config_check::run(&home),
        Command::Node { home } => node_cmd::run(home),
        Command::Lb { home } => lb_cmd::run(home),
        Command::Demo {
            workdir,
            https_port,
            ssh_port,
        } => demo::run(workdir, https_port, ssh_port),
    }
}
