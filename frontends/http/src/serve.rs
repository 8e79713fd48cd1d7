//! The HTTP/1.1 and HTTP/2 server loop: accepts connections on a listener and serves
//! the router on each, with the protections `axum::serve` has no setting for: a
//! request head must arrive within [`crate::Settings::header_read_timeout`] (a client
//! that sends half its headers is hung up on), the parser takes more headers than the
//! router's own limits so that those limits answer with the JSON error shape, and each
//! request carries its peer's address (`ConnectInfo<SocketAddr>`) for per-address
//! limits.

use std::convert::Infallible;
use std::future::Future;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use crate::Settings;
use crate::routes::MAX_HEADERS;

/// The most headers hyper's parser takes; past it hyper answers 431 with no body. The
/// router refuses more than [`MAX_HEADERS`] itself, with a JSON body.
const PARSER_MAX_HEADERS: usize = MAX_HEADERS * 4;

/// Configures a connection builder as [`serve`] does (the binary's TLS server uses it
/// too).
pub fn configure(builder: &mut Builder<TokioExecutor>, settings: &Settings) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_headers(PARSER_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(crate::routes::MAX_HEADER_BYTES * 4).unwrap_or(u32::MAX),
        );
}

/// Completes once the shutdown signal is given (or its sender is gone). The guard
/// `wait_for` returns is not `Send`: it is dropped here, not held across an await.
async fn stopping(signal: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = signal.wait_for(|stopping| *stopping).await.map(|_| ());
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting,
/// lets open connections finish their requests, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    configure(&mut builder, settings);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let mut signal = stopped.clone();
    let (open, all_closed) = tokio::sync::mpsc::channel::<Infallible>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopping(&mut signal) => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { tower_service::Service::call(&mut router, request).await }
        });
        let builder = builder.clone();
        let mut stopped = stopped.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(error) = served {
                            tracing::debug!(%error, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    () = stopping(&mut stopped), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open);
    let mut all_closed = all_closed;
    // Every connection task holds a sender; `recv` answers `None` once all are gone.
    let _ = all_closed.recv().await;
}
