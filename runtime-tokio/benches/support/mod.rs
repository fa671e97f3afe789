//! What the runtime benches share: the median of samples, this process's RSS, and a loopback
//! server that hands each accepted socket to a handler with shared state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// Median of the samples (the upper one of an even count).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Resident set size of this process, bytes (Linux `/proc/self/statm`).
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// Listen on a loopback port and run `answer(socket, state)` for every client; returns the
/// address.
pub(crate) async fn serve<T, F>(state: T, answer: fn(TcpStream, Arc<T>) -> F) -> String
where
    T: Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(state);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(answer(sock, Arc::clone(&state)));
        }
    });
    addr
}
