//! Protocol v2 over SSH without a long-lived git process: the capability advertisement and
//! `ls-refs` come from memory (the same cache HTTP uses), and each `fetch` command is answered by
//! the pack cache or a one-shot `git upload-pack --stateless-rpc` — v2 being stateless, a session
//! is just a sequence of such requests.

use std::path::Path;
use std::sync::Arc;

use russh::server::Msg;
use russh::Channel;
use tokio::io::AsyncWriteExt;

use crate::names::RepoId;
use crate::serve::pack_cache::ServeError;
use crate::serve::ssh_out::ChannelOut;
use crate::serve::v2_request::{peek_ls_refs, read_request};
use crate::serve::Serving;
use crate::upload_pack::{self, Exposure, Mode};

/// Serves one SSH v2 session on `ch` and closes it (exit status 0, or 1 after an error); returns
/// the bytes sent, or what went wrong.
pub async fn serve(
    shared: &Arc<Serving>,
    ch: Channel<Msg>,
    out: ChannelOut,
    id: &RepoId,
    path: &Path,
    key: &str,
) -> Result<u64, String> {
    let (mut rx, tx) = ch.split();
    let mut input = rx.make_reader();
    let result = async {
        let adv = shared
            .refs
            .get(id, path, key)
            .await
            .map_err(|e| e.to_string())?;
        let mut sent = adv.v2_caps.len() as u64;
        out.send(adv.v2_caps.clone())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let limit = shared.config.serve_max_request as usize;
            let request = match read_request(&mut input, limit).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(sent),
                Err(e) => return Err(format!("bad request: {e}")),
            };
            if let Ok(Some(args)) = peek_ls_refs(&mut request.as_slice(), &mut Vec::new()).await {
                let body = adv.ls_refs_cached(&args);
                shared.metrics.advertisement("memory");
                sent += body.len() as u64;
                out.send(body).await.map_err(|e| e.to_string())?;
            } else {
                sent += answer(shared, id, key, path, request, &out).await?;
            }
        }
    }
    .await;
    drop(input);
    let _ = tx.exit_status(u32::from(result.is_err())).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
    result
}

/// A non-ls-refs command: from the pack cache when it is on, else from a one-shot git run.
async fn answer(
    shared: &Arc<Serving>,
    id: &RepoId,
    key: &str,
    path: &Path,
    request: Vec<u8>,
    out: &ChannelOut,
) -> Result<u64, String> {
    use futures_util::StreamExt;
    let cached = if shared.packs.enabled() {
        let served = shared
            .packs
            .serve(
                id,
                key,
                path,
                Some("version=2"),
                request.clone(),
                &shared.processes,
            )
            .await;
        match served {
            Ok(s) => Some(s),
            Err(ServeError::Busy(e)) => {
                shared.metrics.busy();
                return Err(e.to_string());
            }
            Err(e) => {
                tracing::debug!(error = %e, "serving without the pack cache");
                None
            }
        }
    } else {
        None
    };
    if let Some((mut stream, outcome)) = cached {
        shared.metrics.pack_cache(outcome.label());
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            n += chunk.len() as u64;
            out.send(chunk).await.map_err(|e| e.to_string())?;
        }
        return Ok(n);
    }
    let _place = shared.processes.acquire().await.map_err(|e| {
        shared.metrics.busy();
        e.to_string()
    })?;
    let mut child = upload_pack::spawn(
        path,
        Mode::StatelessRpc,
        Exposure::Clients,
        Some("version=2"),
    )
    .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("upload-pack stdin is piped");
    let mut stdout = child.stdout.take().expect("upload-pack stdout is piped");
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(crate::upload_pack::log_stderr(stderr, id.to_string()));
    }
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&request).await;
    });
    let n = out
        .copy_from(&mut stdout)
        .await
        .map_err(|e| e.to_string())?;
    let _ = feed.await;
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("git upload-pack exited with {status}"));
    }
    Ok(n)
}
