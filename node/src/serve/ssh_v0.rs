//! Protocols v0 and v1 over SSH: one long-lived `git upload-pack` per session, its output sent to
//! the client in chunks ([`crate::serve::ssh_out`]), its place (`mirror.serve.maxProcesses`) held
//! until it exits.

use std::path::Path;
use std::sync::Arc;

use russh::server::Msg;
use russh::Channel;
use tokio::io::AsyncWriteExt;

use crate::names::RepoId;
use crate::serve::ssh::fail;
use crate::serve::ssh_out::ChannelOut;
use crate::serve::Serving;
use crate::upload_pack::{self, Exposure, Mode};

/// What is served, to whom.
pub struct Session<'a> {
    /// The repository.
    pub id: &'a RepoId,
    /// Its mirror.
    pub repo: &'a Path,
    /// The client's `GIT_PROTOCOL`, if any.
    pub proto: Option<&'a str>,
    /// The protocol version it names.
    pub version: u32,
    /// The client, for the log.
    pub peer: &'a str,
}

/// Serves one session on `ch` with a stateful `git upload-pack` and closes it with its exit status.
pub async fn serve(
    shared: &Arc<Serving>,
    ch: Channel<Msg>,
    out: ChannelOut,
    s: Session<'_>,
) -> Result<(), russh::Error> {
    let place = match shared.processes.acquire().await {
        Ok(p) => p,
        Err(e) => {
            shared.metrics.busy();
            return fail(&ch, &e.to_string(), true).await;
        }
    };
    let mut child = match upload_pack::spawn(s.repo, Mode::Stateful, Exposure::Clients, s.proto) {
        Ok(c) => c,
        Err(e) => return fail(&ch, &format!("cannot start git: {e}"), true).await,
    };
    let started = std::time::Instant::now();
    let mut stdin = child.stdin.take().expect("upload-pack stdin is piped");
    let mut stdout = child.stdout.take().expect("upload-pack stdout is piped");
    let stderr = child.stderr.take().expect("upload-pack stderr is piped");
    let (mut rx, tx) = ch.split();
    let input = async move {
        let _ = tokio::io::copy(&mut rx.make_reader(), &mut stdin).await;
        let _ = stdin.shutdown().await;
    };
    tokio::spawn(input);
    tokio::spawn(crate::upload_pack::log_stderr(stderr, s.id.to_string()));
    let sent = match out.copy_from(&mut stdout).await {
        Ok(n) => n,
        Err(_) => {
            // The client went: upload-pack would block on a full pipe, holding its place.
            let _ = child.start_kill();
            0
        }
    };
    drop(stdout);
    let status = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(1);
    drop(place);
    shared.metrics.served("ssh", "upload_pack", sent);
    tracing::info!(
        repo = %s.id,
        protocol = "ssh",
        kind = "upload_pack",
        version = s.version,
        bytes = sent,
        duration_ms = started.elapsed().as_millis() as u64,
        client = %s.peer,
        "served"
    );
    tx.exit_status(status as u32).await?;
    tx.eof().await?;
    tx.close().await
}
