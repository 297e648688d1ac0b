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
/// LB's profile. (Its transparent huge pages cost memory — a node serving LFS objects 4 at once
/// peaks at 70 MB with them, 27 MB with the crate's `no_thp` — but turning them off made the
/// fault test `clones_started_after_a_member_host_is_killed_all_succeed` flaky: see the notes.)
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
