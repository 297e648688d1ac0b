//! The command line, defined once: parsing, `--help`, shell completions and the man page all come
//! from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A git mirror farm: read-only mirror nodes kept in sync with a primary git server, behind one
/// load balancer.
#[derive(Debug, Parser)]
#[command(name = "mirrorfarm", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a mirror node (reads DIR/mirrorfarm.properties, or --config).
    Node {
        /// The node's home directory (state, keys, mirrors, logs).
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// The configuration file, when it does not live in the home (e.g. /etc/mirrorfarm/mirrorfarm.properties).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the load balancer (reads DIR/mirrorfarm-lb.properties, or --config).
    Lb {
        /// The load balancer's home directory (self-signed certificate, logs).
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// The configuration file, when it does not live in the home (e.g. /etc/mirrorfarm/mirrorfarm-lb.properties).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
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
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// `mirrorfarm config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration the way the services do at start: exit 0 when good, 64 naming file,
    /// line and key when not. Checks DIR/mirrorfarm.properties and/or DIR/mirrorfarm-lb.properties,
    /// or --config (a file named mirrorfarm-lb.properties is read as the load balancer's).
    Check {
        /// The home directory.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// A configuration file outside the home.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}
