//! The HTTP listener: TLS (rustls) unless the node runs in the explicit
//! insecure mode, with the peer's client-certificate name handed to the
//! authentication layer, and a graceful stop that does not wait forever for
//! long-lived streams.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// The subject common name of the client certificate the peer presented
/// (verified against the configured client CA), if any.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<String>);

/// How long a stop waits for open connections (SSE streams end on their own).
const DRAIN: Duration = Duration::from_secs(5);
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (also bounds idle keep-alive connections).
const HEADER_READ: Duration = Duration::from_secs(10);
/// Most connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "too many connections; closing a new one");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => connection(watcher, tcp, router, PeerCertificate(None)).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let name = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| yipan_access::tls::common_name(c));
                        connection(watcher, stream, router, PeerCertificate(name)).await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::info!("connections still open after the drain period; closing them");
    }
}

async fn connection<IO>(watcher: hyper_util::server::graceful::Watcher, io: IO, router: Router, peer: PeerCertificate)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router.layer(axum::Extension(peer)));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
