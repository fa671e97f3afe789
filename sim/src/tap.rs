//! Captured bytes as readable trace lines: a [`Tap`] per socket direction decodes frames with
//! the core's codec, so the traces of [`World`](crate::World) and
//! [`PoolWorld`](crate::PoolWorld) read alike and replay diffs name messages, not bytes.

use ibconn_core::message::{Request, Response};
use ibconn_core::wire::{ClientHello, FrameDecoder, ServerHello};

/// Both directions of one link and the server version its hello announced: what a trace needs
/// to decode a socket's frames (one per link, fresh on every dial).
#[derive(Debug)]
pub(crate) struct LinkTaps {
    /// Client → gateway.
    up: Tap,
    /// Gateway → client.
    down: Tap,
    /// From the server hello; the version requests are decoded at (0 until then).
    server_version: i32,
}

impl LinkTaps {
    /// A link before its hello.
    pub(crate) fn new() -> Self {
        Self {
            up: Tap::up(),
            down: Tap::down(),
            server_version: 0,
        }
    }

    /// The frames `bytes` completes in one direction (`up`: toward the gateway), described.
    pub(crate) fn frames(&mut self, up: bool, bytes: &[u8]) -> Vec<String> {
        let sv = self.server_version;
        let tap = if up { &mut self.up } else { &mut self.down };
        let (lines, new_sv) = tap.frames(up, bytes, sv);
        if let Some(v) = new_sv {
            self.server_version = v;
        }
        lines
    }
}

/// Decodes one direction of one link for the trace.
#[derive(Debug)]
struct Tap {
    decoder: FrameDecoder,
    hello_seen: bool,
    /// Up: the lowest version the client offered — what it encodes requests sent before the
    /// server's hello at (START_API pipelined with the hello).
    offered_min: i32,
    broken: bool,
}

impl Tap {
    /// Client → gateway bytes (`up`).
    fn up() -> Self {
        Self::new(FrameDecoder::server())
    }

    /// Gateway → client bytes.
    fn down() -> Self {
        Self::new(FrameDecoder::new())
    }

    fn new(decoder: FrameDecoder) -> Self {
        Self {
            decoder,
            hello_seen: false,
            offered_min: 0,
            broken: false,
        }
    }

    /// Frames completed by `bytes`, described; the server version when a server hello passes.
    fn frames(&mut self, up: bool, bytes: &[u8], sv: i32) -> (Vec<String>, Option<i32>) {
        let mut lines = Vec::new();
        let mut new_sv = None;
        if self.broken {
            return (lines, new_sv);
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => {
                    let text = if !self.hello_seen {
                        self.hello_seen = true;
                        if up {
                            ClientHello::decode(&body).map_or_else(
                                |e| format!("bad hello: {e}"),
                                |h| {
                                    self.offered_min = h.versions.min;
                                    format!("API {}", h.version_string())
                                },
                            )
                        } else {
                            match ServerHello::decode(&body) {
                                Ok(h) => {
                                    new_sv = Some(h.server_version);
                                    format!("v{} {}", h.server_version, h.connection_time)
                                }
                                Err(e) => format!("bad hello: {e}"),
                            }
                        }
                    } else if up {
                        let at = if sv > 0 { sv } else { self.offered_min };
                        Request::decode_payload(body, at)
                            .map_or_else(|e| format!("undecodable: {e}"), |r| describe_request(&r))
                    } else {
                        // The startup burst may share a write with the server hello.
                        Response::decode_payload(body, new_sv.unwrap_or(sv))
                            .map_or_else(|e| format!("undecodable: {e}"), |r| describe_response(&r))
                    };
                    lines.push(text);
                }
                Ok(None) => break,
                Err(e) => {
                    self.broken = true;
                    lines.push(format!("unframeable: {e}"));
                    break;
                }
            }
        }
        (lines, new_sv)
    }
}

/// One line for a client request.
pub(crate) fn describe_request(r: &Request) -> String {
    match r {
        Request::StartApi { client_id, .. } => format!("StartApi client_id={client_id}"),
        Request::ReqHistoricalData(h) => format!(
            "ReqHistoricalData #{} {} {} {} {}",
            h.req_id, h.contract.symbol, h.bar_size, h.duration, h.what_to_show
        ),
        Request::ReqHeadTimestamp(h) => {
            format!("ReqHeadTimestamp #{} {}", h.req_id, h.contract.symbol)
        }
        Request::ReqContractDetails { req_id, contract } => {
            format!("ReqContractDetails #{req_id} {}", contract.symbol)
        }
        Request::ReqMatchingSymbols { req_id, pattern } => {
            format!("ReqMatchingSymbols #{req_id} {pattern}")
        }
        Request::CancelHistoricalData { req_id }
        | Request::CancelHeadTimestamp { req_id }
        | Request::CancelContractData { req_id } => format!("{} #{req_id}", r.name()),
        other => other.name().to_owned(),
    }
}

/// One line for a gateway message.
pub(crate) fn describe_response(r: &Response) -> String {
    match r {
        Response::Error(e) => format!("Error #{} {} {}", e.req_id, e.code, e.message),
        Response::HistoricalData { req_id, bars, .. } => {
            format!("HistoricalData #{req_id} {} bars", bars.len())
        }
        Response::NextValidId { order_id } => format!("NextValidId {order_id}"),
        Response::CurrentTime { time } => format!("CurrentTime {time}"),
        other => match other.req_id() {
            Some(id) => format!("{} #{id}", other.name()),
            None => other.name().to_owned(),
        },
    }
}
