//! The SSH front: `git clone ssh://git@host:7999/PROJECT/repo.git` through russh. Public-key
//! authentication only (any key in `anonymous` mode); only `git-upload-pack` runs; no shell, no
//! pty, no forwarding; pushes are refused with the upstream URL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::Access;
use crate::pktline;
use crate::serve::path::{parse_ssh_command, Service};
use crate::serve::ssh_out::ChannelOut;
use crate::serve::Serving;
use crate::state::Lookup;

/// The most keys of one connection asked of the forge (a client offering many keys, or a
/// stranger generating them, cannot spend the API token's rate limit).
const FORGE_LOOKUPS: u8 = 4;

/// Builds the russh server configuration with the node's host key.
pub fn config(host_key: russh::keys::PrivateKey) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-mirrorfarm_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods,
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        // What a served command sends (chunks of up to 256 KiB, `ssh_out`) waits in the session's
        // queue, russh's `event_buffer_size` (10): at most 2.5 MiB per connection while a slow
        // client's window is closed.
        ..Default::default()
    }
}

/// Serves SSH on `listener` until `shutdown` turns true; with `plugin.ssh.proxyProtocol`, each
/// connection must start with a PROXY v2 header, whose source address is then the client's.
pub async fn run(
    shared: Arc<Serving>,
    listener: TcpListener,
    config: russh::server::Config,
    shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let mut stop = shutdown.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        shared.config.ssh_max_connections,
    ));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "SSH accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Lines before the version string are allowed (RFC 4253 4.2); then the connection ends.
            tracing::warn!(client = %peer, max = shared.config.ssh_max_connections, "SSH connection refused: plugin.ssh.maxConnections reached");
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                let msg = b"mirrorfarm: too many SSH connections; try again shortly\r\n";
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(msg)).await;
            });
            continue;
        };
        let (shared, config, shutdown) = (shared.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(shared, config, stream, peer, shutdown).await;
            drop(slot);
        });
    }
}

async fn connection(
    shared: Arc<Serving>,
    config: Arc<russh::server::Config>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = if shared.config.ssh_proxy_protocol {
        match tokio::time::timeout(Duration::from_secs(10), read_proxy_header(&mut stream)).await {
            Ok(Ok(Some(src))) => src,
            Ok(Ok(None)) => peer,
            Ok(Err(e)) => {
                tracing::warn!(client = %peer, error = %e, "refusing SSH connection without a valid PROXY header");
                return;
            }
            Err(_) => {
                tracing::warn!(client = %peer, "refusing SSH connection: no PROXY header within 10 s");
                return;
            }
        }
    } else {
        peer
    };
    let _active = shared.metrics.track("ssh");
    let first_command = shared.config.ssh_first_command_timeout;
    let commanded = Arc::new(AtomicBool::new(false));
    let handler = Connection {
        shared,
        peer: peer.to_string(),
        channels: HashMap::new(),
        protocol: HashMap::new(),
        grant: None,
        asked_command: false,
        forge_lookups: 0,
        commanded: commanded.clone(),
        opened: 0,
    };
    // A connection must reach its first command within `plugin.ssh.firstCommandTimeout`.
    let deadline = tokio::time::Instant::now() + first_command;
    let setup =
        tokio::time::timeout_at(deadline, russh::server::run_stream(config, stream, handler));
    let session = match setup.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "SSH connection setup failed");
            return;
        }
        Err(_) => {
            tracing::info!(client = %peer, "SSH connection closed: no SSH handshake in time");
            return;
        }
    };
    let handle = session.handle();
    let idle = async {
        tokio::time::sleep_until(deadline).await;
        if commanded.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    let why = tokio::select! {
        res = session => {
            if let Err(e) = res {
                tracing::debug!(client = %peer, error = %e, "SSH session ended with an error");
            }
            return;
        }
        _ = shutdown.changed() => "server shutting down",
        _ = idle => {
            tracing::info!(client = %peer, "SSH connection closed: no command in time");
            "no command in time"
        }
    };
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, why.into(), String::new())
        .await;
}

async fn read_proxy_header(stream: &mut TcpStream) -> std::io::Result<Option<SocketAddr>> {
    use mirrorfarm_common::proxy_protocol as pp;
    use tokio::io::AsyncReadExt;
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed).await?;
    let len = pp::block_len(&fixed).map_err(std::io::Error::other)?;
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await?;
    pp::source(&fixed, &block).map_err(std::io::Error::other)
}

/// One client connection.
pub struct Connection {
    shared: Arc<Serving>,
    peer: String,
    channels: HashMap<ChannelId, Channel<Msg>>,
    protocol: HashMap<ChannelId, String>,
    /// In authenticated mode: the user of the key that authenticated, and what it may read.
    grant: Option<crate::serve::ssh_keys::KeyGrant>,
    /// Whether the keys command was asked about a key of this connection already.
    asked_command: bool,
    /// Keys of this connection asked of the forge so far (at most [`FORGE_LOOKUPS`]).
    forge_lookups: u8,
    /// Set at the first command (the connection is past its first-command deadline then).
    commanded: Arc<AtomicBool>,
    /// Session channels opened on this connection so far.
    opened: usize,
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        // Anonymous mode accepts any key; otherwise only a key the farm knows is a user.
        if self.shared.config.access == Access::Anonymous {
            return Ok(Auth::Accept);
        }
        // The keys command runs at most once per connection.
        let may_run_command = !self.asked_command;
        self.asked_command = true;
        let may_ask_forge = self.forge_lookups < FORGE_LOOKUPS;
        self.forge_lookups = self.forge_lookups.saturating_add(1);
        match self
            .shared
            .keys
            .lookup(user, key.public_key, may_run_command, may_ask_forge)
            .await
        {
            Some(grant) => {
                tracing::debug!(client = %self.peer, user = %grant.user, "SSH key authenticated");
                self.grant = Some(grant);
                Ok(Auth::Accept)
            }
            None => {
                tracing::info!(client = %self.peer, "SSH key refused: not an authorized key");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // At most 8 sessions per connection in all (git uses one), not only 8 at once.
        if self.opened >= 8 {
            return Ok(()); // dropping `reply` rejects the channel
        }
        self.opened += 1;
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "GIT_PROTOCOL" && pktline::protocol_value_ok(value) {
            self.protocol.insert(channel, value.to_owned());
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        let msg = "mirrorfarm: no shell access; this server only serves git fetches (git clone ssh://…)\r\n";
        session.extended_data(channel, 1, msg.as_bytes().to_vec())?;
        session.exit_status_request(channel, 1)?;
        session.close(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channels.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        self.commanded.store(true, Ordering::Release);
        session.channel_success(channel)?;
        let command = String::from_utf8_lossy(data).into_owned();
        let proto = self.protocol.remove(&channel);
        let shared = self.shared.clone();
        let peer = self.peer.clone();
        let grant = self.grant.clone();
        let out = ChannelOut::new(session.handle(), channel);
        tokio::spawn(async move {
            if let Err(e) = exec(shared, ch, out, &command, proto, peer, grant).await {
                tracing::debug!(error = %e, "SSH exec ended with an error");
            }
        });
        Ok(())
    }
}

pub(crate) async fn fail(
    ch: &Channel<Msg>,
    message: &str,
    as_err_packet: bool,
) -> Result<(), russh::Error> {
    if as_err_packet {
        ch.data_bytes(pktline::err(message)).await?;
    } else {
        ch.extended_data_bytes(1, format!("mirrorfarm: {message}\n").into_bytes())
            .await?;
    }
    ch.exit_status(1).await?;
    ch.eof().await?;
    ch.close().await
}

async fn exec(
    shared: Arc<Serving>,
    ch: Channel<Msg>,
    out: ChannelOut,
    command: &str,
    proto: Option<String>,
    peer: String,
    grant: Option<crate::serve::ssh_keys::KeyGrant>,
) -> Result<(), russh::Error> {
    if crate::serve::lfs_ssh::is_lfs_command(command) {
        return crate::serve::lfs_ssh::exec(&shared, ch, command, grant.as_ref()).await;
    }
    let (service, id) = match parse_ssh_command(command) {
        Ok(x) => x,
        Err(e) => return fail(&ch, &e, false).await,
    };
    let may_read = match &grant {
        Some(g) => shared.keys.may_read(g, &id).await,
        None => false,
    };
    if shared.config.access != Access::Anonymous && !may_read {
        // Exactly as for a repository that is not mirrored: existence is not revealed.
        return fail(&ch, &format!("repository {id} is not mirrored here"), true).await;
    }
    let (repo, key) = match shared.lookup(&id) {
        Lookup::Ready(p, key) => (p, key),
        Lookup::Unknown => {
            return fail(&ch, &format!("repository {id} is not mirrored here"), true).await
        }
        Lookup::NotReady => {
            return fail(
                &ch,
                &format!("repository {id} is not synchronized yet; try again shortly"),
                true,
            )
            .await
        }
        Lookup::Withheld(why) => {
            return fail(
                &ch,
                &format!(
                "repository {id} is not served by this node right now ({why}); try again shortly"
            ),
                true,
            )
            .await
        }
    };
    if service == Service::ReceivePack {
        let msg = format!(
            "this is a read-only mirror: push to {} instead",
            shared.config.upstream.repo_url(&id)
        );
        return fail(&ch, &msg, true).await;
    }
    let version = proto.as_deref().map(pktline::protocol_version).unwrap_or(0);
    if version == 2 {
        // v2 is stateless: refs from memory, fetches from the pack cache or one-shot git runs.
        let started = std::time::Instant::now();
        let res = crate::serve::ssh_v2::serve(&shared, ch, out, &id, &repo, &key).await;
        let bytes = res.as_ref().map(|n| *n).unwrap_or(0);
        shared.metrics.served("ssh", "upload_pack", bytes);
        match res {
            Ok(_) => {
                tracing::info!(repo = %id, protocol = "ssh", kind = "upload_pack", version, bytes,
                duration_ms = started.elapsed().as_millis() as u64, client = %peer, "served")
            }
            Err(e) => {
                tracing::warn!(repo = %id, protocol = "ssh", client = %peer, error = %e, "SSH v2 session failed")
            }
        }
        return Ok(());
    }
    crate::serve::ssh_v0::serve(
        &shared,
        ch,
        out,
        crate::serve::ssh_v0::Session {
            id: &id,
            repo: &repo,
            proto: proto.as_deref(),
            version,
            peer: &peer,
        },
    )
    .await
}
