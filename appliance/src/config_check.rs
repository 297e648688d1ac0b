//! `mirrorfarm config check`: the validation the services run at start.

use std::path::Path;
use std::process::ExitCode;

fn report<T, E: std::fmt::Display>(file: &Path, res: Result<T, E>) -> bool {
    match res {
        Ok(_) => {
            println!("{}: OK", file.display());
            true
        }
        Err(e) => {
            eprintln!("mirrorfarm: {e}");
            false
        }
    }
}

/// Checks `config` (its role from its name), or whichever files the home has.
pub fn run(home: &Path, config: Option<&Path>) -> ExitCode {
    let is_lb = |f: &Path| {
        f.file_name()
            .is_some_and(|n| n == mirrorfarm_lb::config::FILE_NAME)
    };
    let ok = match config {
        Some(f) if is_lb(f) => report(f, mirrorfarm_lb::config::LbConfig::load_file(f, home)),
        Some(f) => report(f, mirrorfarm_node::node::check_config(home, Some(f))),
        None => {
            let node = home.join(mirrorfarm_node::config::FILE_NAME);
            let lb = home.join(mirrorfarm_lb::config::FILE_NAME);
            let mut ok = true;
            if lb.exists() {
                ok &= report(&lb, mirrorfarm_lb::config::LbConfig::load(home));
            }
            if node.exists() || !lb.exists() {
                ok &= report(&node, mirrorfarm_node::node::check_config(home, None));
            }
            ok
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(64)
    }
}
