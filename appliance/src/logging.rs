//! Log output: human-readable lines (or JSON) on stderr, and the same in `<home>/logs/<file>`.
//! `RUST_LOG` sets the level (default `info`); Pingora's `log` records are included. Under
//! systemd (stderr connected to the journal, `JOURNAL_STREAM` set) text lines carry no timestamp:
//! the journal adds its own.

use std::fs::OpenOptions;
use std::path::Path;

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Info and up, except chitchat's own warnings: it logs one per gossip round (10 a second) for
/// every unreachable member; the farm logs membership changes itself.
const DEFAULT_FILTER: &str = "info,chitchat=error";

/// Installs the global subscriber.
pub fn init(dir: &Path, file_name: &str, json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = std::fs::create_dir_all(dir);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file_name));
    // A line that cannot be written (a full disk under the log file or stderr's file) is
    // dropped: reporting it would `eprintln!`, which panics when stderr cannot be written, in
    // whatever task logged — a client's response cut off mid-pack.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .log_internal_errors(false);
    match (file, json) {
        (Ok(f), false) => builder
            .with_writer(std::io::stderr.and(std::sync::Arc::new(f)))
            .init(),
        (Ok(f), true) => builder
            .json()
            .with_writer(std::io::stderr.and(std::sync::Arc::new(f)))
            .init(),
        (Err(e), json) => {
            eprintln!(
                "mirrorfarm: cannot open {}/{file_name} ({e}); logging to stderr only",
                dir.display()
            );
            if json {
                builder.json().with_writer(std::io::stderr).init()
            } else {
                builder.with_writer(std::io::stderr).init()
            }
        }
    }
}
