//! `mirrorfarm config check --home DIR`: the validation the services run at start.

use std::path::Path;
use std::process::ExitCode;

/// Checks whichever configuration files the home has (node, load balancer, or both).
pub fn run(home: &Path) -> ExitCode {
    let node = home.join(mirrorfarm_node::config::FILE_NAME);
    let lb = home.join(mirrorfarm_lb::config::FILE_NAME);
    let mut checked = 0;
    let mut failed = false;
    if lb.exists() {
        checked += 1;
        match mirrorfarm_lb::config::LbConfig::load(home) {
            Ok(_) => println!("{}: OK", lb.display()),
            Err(e) => {
                eprintln!("mirrorfarm: {e}");
                failed = true;
            }
        }
    }
    if node.exists() || checked == 0 {
        match mirrorfarm_node::node::check_config(home) {
            Ok(c) => println!("{}: OK", c.file.display()),
            Err(e) => {
                eprintln!("mirrorfarm: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(64)
    } else {
        ExitCode::SUCCESS
    }
}
