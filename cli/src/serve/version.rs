//! A gateway's server version, which the pool's snapshots do not carry: the opening exchange
//! alone, on a socket of its own. The client sends `API\0` with the widest range this crate speaks
//! and the server answers its version before any client id is named, so the exchange claims no id
//! and starts no API session; the socket is closed right after. The answer is the version the
//! pool's sessions use (they offer 213..226 and fall back to this range on an older gateway).

use std::time::Duration;

use bytes::BytesMut;
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello, VersionRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why the version could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VersionError {
    /// Dial, write or read failed.
    #[error("{0}")]
    Io(String),
    /// No answer within the deadline.
    #[error("no server hello within {0:?}")]
    Timeout(Duration),
    /// The answer was not a server hello.
    #[error("malformed server hello: {0}")]
    Malformed(String),
    /// The gateway closed before answering.
    #[error("the gateway closed before its hello")]
    Closed,
}

/// The server version `addr` answers, within `timeout`.
pub(crate) async fn server_version(addr: &str, timeout: Duration) -> Result<i32, VersionError> {
    tokio::time::timeout(timeout, exchange(addr))
        .await
        .map_err(|_| VersionError::Timeout(timeout))?
}

async fn exchange(addr: &str) -> Result<i32, VersionError> {
    let io = |e: std::io::Error| VersionError::Io(e.to_string());
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let mut hello = BytesMut::new();
    ClientHello::new(VersionRange::supported()).encode(&mut hello);
    stream.write_all(&hello).await.map_err(io)?;
    // The hello is one short frame: a small cap bounds what a wrong peer can make us buffer.
    let mut frames = FrameDecoder::new().with_max_len(1024);
    let mut buf = [0u8; 512];
    let version = loop {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(VersionError::Closed);
        }
        frames.push(&buf[..n]);
        match frames.next_frame() {
            Ok(Some(body)) => {
                break ServerHello::decode(&body)
                    .map_err(|e| VersionError::Malformed(e.to_string()))?
                    .server_version
            }
            Ok(None) => {}
            Err(e) => return Err(VersionError::Malformed(e.to_string())),
        }
    };
    let _ = stream.shutdown().await;
    Ok(version)
}
