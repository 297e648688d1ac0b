//! `mirrorfarm`: the one binary of the appliance.

mod demo;
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
    /// A working mirror on this machine: a generated upstream and a node serving it.
    Demo {
        /// Where the demo keeps its upstream and node home (reused by a second run).
        #[arg(long, value_name = "DIR", default_value = "mirrorfarm-demo")]
        workdir: PathBuf,
        /// HTTP port of the node.
        #[arg(long, value_name = "N", default_value_t = 7990)]
        http_port: u16,
        /// SSH port of the node.
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
        Command::Node { home } => run_node(home, None),
        Command::Demo {
            workdir,
            http_port,
            ssh_port,
        } => {
            let workdir = std::path::absolute(&workdir).unwrap_or(workdir);
            let opts = demo::DemoOptions {
                workdir,
                http_port,
                ssh_port,
            };
            eprintln!("mirrorfarm demo: preparing {} …", opts.workdir.display());
            match demo::prepare(&opts) {
                Ok(home) => run_node(home, Some(opts)),
                Err(e) => {
                    eprintln!("mirrorfarm demo: {e}");
                    ExitCode::from(70)
                }
            }
        }
    }
}

fn run_node(home: PathBuf, demo: Option<demo::DemoOptions>) -> ExitCode {
    // Validate the configuration before anything else (logging to the home included).
    let config = match mirrorfarm_node::node::check_config(&home) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mirrorfarm: {e}");
            return ExitCode::from(64);
        }
    };
    logging::init(&home.join("logs"), config.log_format);
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
    if let Some(opts) = demo {
        let port = opts.http_port;
        runtime.spawn(async move {
            if wait_synchronized(port).await {
                println!("{}", demo::banner(&opts));
            }
        });
    }
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

/// Polls the node's /status until it is SYNCHRONIZED (bounded: 10 minutes).
async fn wait_synchronized(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..1200 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            continue;
        };
        let req = "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let mut body = String::new();
        if s.write_all(req.as_bytes()).await.is_ok()
            && s.read_to_string(&mut body).await.is_ok()
            && body.contains("\"state\":\"SYNCHRONIZED\"")
        {
            return true;
        }
    }
    false
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
