//! Log output: human-readable lines (or JSON with `logging.format=json`) on stderr, and the same
//! in `<home>/logs/node.log`.

use std::fs::OpenOptions;
use std::path::Path;

use mirrorfarm_node::config::LogFormat;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the default level (`info`).
pub fn init(dir: &Path, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = std::fs::create_dir_all(dir);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match (file, format) {
        (Ok(f), LogFormat::Text) => builder
            .with_writer(std::io::stderr.and(std::sync::Arc::new(f)))
            .init(),
        (Ok(f), LogFormat::Json) => builder
            .json()
            .with_writer(std::io::stderr.and(std::sync::Arc::new(f)))
            .init(),
        (Err(e), fmt) => {
            eprintln!(
                "mirrorfarm: cannot open {}/node.log ({e}); logging to stderr only",
                dir.display()
            );
            match fmt {
                LogFormat::Text => builder.with_writer(std::io::stderr).init(),
                LogFormat::Json => builder.json().with_writer(std::io::stderr).init(),
            }
        }
    }
}
