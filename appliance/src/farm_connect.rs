//! `mirrorfarm farm-connect`: git's transport to another farm member (used by the node itself as
//! `ext::mirrorfarm farm-connect … %S`): stdin and stdout become an upload-pack session with the
//! member's mirror over mutually authenticated TLS.

use std::path::Path;
use std::process::ExitCode;

use tokio::io::AsyncWriteExt;

/// Connects and relays until either side closes.
pub fn run(
    home: &Path,
    peer: std::net::SocketAddr,
    node: &str,
    repo: &str,
    service: &str,
) -> ExitCode {
    if service != "git-upload-pack" {
        eprintln!("mirrorfarm farm-connect: only git-upload-pack is served between members");
        return ExitCode::from(64);
    }
    let read = |name: &str| std::fs::read_to_string(home.join("farm").join(name));
    let (ca, cert, key) = match (read("ca.pem"), read("node.pem"), read("node.key")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            eprintln!(
                "mirrorfarm farm-connect: {} holds no farm certificate",
                home.display()
            );
            return ExitCode::from(69);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mirrorfarm farm-connect: {e}");
            return ExitCode::from(70);
        }
    };
    let code = rt.block_on(async {
        let stream = match mirrorfarm_common::farm_join::open_upload_pack(
            peer, node, repo, &ca, &cert, &key,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mirrorfarm farm-connect: {e}");
                return ExitCode::from(69);
            }
        };
        let (mut r, mut w) = tokio::io::split(stream);
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut w).await;
            let _ = w.shutdown().await;
        });
        let mut out = tokio::io::stdout();
        let _ = tokio::io::copy(&mut r, &mut out).await;
        let _ = out.flush().await;
        up.abort();
        ExitCode::SUCCESS
    });
    // The stdin copy sits in a blocking read that git (our parent) may never end: it waits for
    // this process to exit first. Dropping the runtime would wait for that read forever.
    rt.shutdown_background();
    code
}
