//! `mirrorfarm`: the one binary of the appliance (mirror node, load balancer, demo, tools).

mod cli;
mod config_check;
mod demo;
mod lb_cmd;
mod logging;
mod node_cmd;
mod probe;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, ConfigCommand};

/// mimalloc: the proxy and the node allocate per request; glibc's malloc showed up at ~10 % of the
/// LB's profile. Built without transparent huge pages (`no_thp`): with them a node serving LFS
/// objects 4 at once sat at 70 MB instead of 29 MB (each touched arena page became 2 MiB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Config {
            command: ConfigCommand::Check { home, config },
        } => config_check::run(&home, config.as_deref()),
        Command::Node { home, config } => node_cmd::run(home, config),
        Command::Lb { home, config } => lb_cmd::run(home, config),
        Command::Demo {
            workdir,
            https_port,
            ssh_port,
        } => demo::run(workdir, https_port, ssh_port),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "mirrorfarm",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mirrorfarm: {e}");
                    ExitCode::from(74)
                }
            }
        }
    }
}
