//! What the runtime benches share: the median of samples, this process's RSS, and a loopback
//! server that hands each accepted socket to a handler with shared state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use ibconn_core::wire::FrameDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A loopback gateway stand-in: for every client, read the `API\0` prefix, then hand each frame
/// to `reply(state, body, is_hello)` and write what it answers, in order. Returns the address.
pub(crate) async fn serve<T>(state: T, reply: fn(&T, Bytes, bool) -> Vec<Bytes>) -> String
where
    T: Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(state);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(answer(sock, Arc::clone(&state), reply));
        }
    });
    addr
}

async fn answer<T>(mut sock: TcpStream, state: Arc<T>, reply: fn(&T, Bytes, bool) -> Vec<Bytes>) {
    sock.set_nodelay(true).unwrap();
    let mut prefix = [0u8; 4];
    if sock.read_exact(&mut prefix).await.is_err() || &prefix != b"API\0" {
        return;
    }
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut greeted = false;
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        while let Ok(Some(body)) = dec.next_frame() {
            let hello = !std::mem::replace(&mut greeted, true);
            for frame in reply(&state, body, hello) {
                if sock.write_all(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
