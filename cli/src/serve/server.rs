//! The HTTP/1.1 server under the router: our own accept loop over hyper, because
//! `axum::serve` has no knobs for what a hardened server needs:
//!
//! - a deadline for a request's headers (a slowloris client gets a 408 envelope and is closed;
//!   an idle keep-alive connection is closed quietly after the same time);
//! - a hard cap on the request head ([`HARD_MAX_HEADER_BYTES`]);
//! - at most [`MAX_CONNECTIONS`] connections (more wait in the listen backlog);
//! - a bounded graceful shutdown: on the stop signal, stop accepting, let requests in flight
//!   finish for up to [`SHUTDOWN_DRAIN`], then close whatever is left.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::limits::{LimitError, Limits, HARD_MAX_HEADER_BYTES, MAX_CONNECTIONS};

/// How long requests in flight may still run after the stop signal before their connections
/// are closed: below `docker stop`'s 10 s grace, with the pool's own shutdown after it.
pub(crate) const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// How long writing a 408 to a client that is too slow may take.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// How long to wait after an accept error that is not the peer's (e.g. out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// Serve `app` on `listener` until `stop` resolves, then drain (bounded) and return.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        while conns.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                conns.spawn(connection(
                    stream,
                    app.clone(),
                    limits,
                    stopping.clone(),
                    slot,
                ));
            }
            Err(e) if is_peer_error(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    stopping_tx.send_replace(true);
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            after = ?SHUTDOWN_DRAIN,
            "closing connections still busy after the shutdown drain"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Accept errors that concern one connection only (the loop goes on at once).
fn is_peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Serve one connection; on the stop signal finish the request in flight and close.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    // Answers are small and whole: no reason to wait for more to coalesce.
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_header_size(HARD_MAX_HEADER_BYTES);
    let mut conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut draining = false;
    let served = loop {
        let stop = tokio::select! {
            served = &mut conn => break served,
            changed = stopping.changed(), if !draining => changed.is_ok(),
        };
        draining = true;
        if stop {
            // Finish the request in flight (if any), then close; an idle connection closes now.
            Pin::new(&mut conn).graceful_shutdown();
        }
    };
    match served {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            // The header deadline passed. With part of a request read, the client is too slow
            // (or a slowloris): say so in the envelope. With nothing read, it was an idle
            // keep-alive connection: just close it.
            let parts = conn.into_parts();
            if !parts.read_buf.is_empty() {
                tracing::warn!(after = ?limits.request_timeout, "request headers too slow");
                let refusal = LimitError::RequestTimeout {
                    after: limits.request_timeout,
                }
                .raw_response();
                let mut io = parts.io.into_inner();
                let _ = tokio::time::timeout(REFUSAL_WRITE, async {
                    io.write_all(&refusal).await?;
                    io.shutdown().await
                })
                .await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
    }
}
