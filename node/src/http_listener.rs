//! An HTTP listener: hyper connections (HTTP/1.1 and h2, optionally over TLS) with a header-read
//! timeout so a slow client cannot pin a connection, the client address (and, over TLS, its
//! verified certificate) handed to handlers, and a graceful stop that lets in-flight requests
//! finish within the grace period. Serves the client-facing listener and the farm channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a client gets for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate a TLS client presented (verified by the listener's client verifier), if any;
/// a request extension on TLS listeners.
#[derive(Clone, Debug)]
pub struct ClientCert(pub Option<Arc<CertificateDer<'static>>>);

/// How a listener serves.
pub struct Options {
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// In-flight requests get this long after `shutdown`.
    pub grace: Duration,
    /// TLS, for the farm channel.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

fn builder(header_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains for up to the grace.
pub async fn run(
    listener: TcpListener,
    app: Router,
    opts: Options,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(opts.header_timeout));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        match &opts.tls {
            None => {
                tokio::spawn(conn.serve(stream, None));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match tls {
                        Ok(Ok(tls)) => {
                            let cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| Arc::new(c.clone().into_owned()));
                            conn.serve(tls, Some(ClientCert(cert))).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(opts.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still in flight at the end of the grace period");
    }
}

struct Conn {
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
}

impl Conn {
    async fn serve<S>(self, stream: S, cert: Option<ClientCert>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (app, peer) = (self.app, self.peer);
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                if let Some(c) = &cert {
                    req.extensions_mut().insert(c.clone());
                }
                let mut app = app.clone();
                tower_service::Service::call(&mut app, req)
            });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(e) = self.watcher.watch(conn.into_owned()).await {
            tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
        }
    }
}
