//! The world's trace: lines, their digest and per-socket frame decoders, plus the few-word
//! descriptions of queries, answers and pool events; split out of `pool_world.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ibconn_core::connection::{Answer, Query};
use ibconn_core::pool::PoolEvent;

use crate::tap::Tap;

use super::{PoolWorld, Sock};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Both directions of one socket, and the server version its hello announced.
#[derive(Debug)]
pub(super) struct Taps {
    up: Tap,
    down: Tap,
    server_version: i32,
}

/// The trace of a [`PoolWorld`]: its lines, their digest, and a frame decoder per socket and
/// direction.
#[derive(Debug)]
pub(super) struct Trace {
    lines: Vec<String>,
    hash: u64,
    pub(super) taps: BTreeMap<Sock, Taps>,
}

/// A query in a few words.
pub(super) fn describe_query(q: &Query) -> String {
    match q {
        Query::HistoricalData(r) => format!(
            "historical {} {} {} {} {}",
            r.contract.symbol, r.end, r.bar_size, r.duration, r.what_to_show
        ),
        other => other.name().to_owned(),
    }
}

/// An answer in a few words (bars by count and ends).
fn describe_answer(a: &Answer) -> String {
    match a {
        Answer::Bars { bars, start, end } => match (bars.first(), bars.last()) {
            (Some(first), Some(last)) => format!(
                "{} bars {start}..{end} first {:?} last {:?}",
                bars.len(),
                first.date,
                last.date
            ),
            _ => format!("0 bars {start}..{end}"),
        },
        other => format!("{other:?}"),
    }
}

impl PoolWorld {
    /// Record the [trace](self#trace) from now on (call it first thing for a whole run).
    pub fn enable_trace(&mut self) {
        if self.trace.is_none() {
            self.trace = Some(Box::new(Trace {
                lines: Vec::new(),
                hash: FNV_OFFSET,
                taps: BTreeMap::new(),
            }));
        }
    }

    /// Every trace line so far (none unless [`PoolWorld::enable_trace`] was called).
    pub fn trace(&self) -> &[String] {
        self.trace.as_ref().map_or(&[], |t| &t.lines)
    }

    /// A digest of every trace line and every byte delivered (a constant without a trace).
    pub fn trace_hash(&self) -> u64 {
        self.trace.as_ref().map_or(FNV_OFFSET, |t| t.hash)
    }

    /// Add a trace line (built only when tracing).
    pub(super) fn log(&mut self, line: impl FnOnce() -> String) {
        let d = self.now - self.epoch;
        if let Some(trace) = &mut self.trace {
            let mut text = format!("+{}.{:03}s ", d.as_secs(), d.subsec_millis());
            text.push_str(&line());
            trace.hash = fnv(trace.hash, text.as_bytes());
            trace.lines.push(text);
        }
    }

    /// The prefix of a trace line about process `p` (empty in a one-process world).
    pub(super) fn who(&self, p: usize) -> String {
        if self.labelled {
            format!("P{p} ")
        } else {
            String::new()
        }
    }

    /// A socket's name in the trace: `S7`, or `P1.S7` with several processes.
    pub(super) fn sock_name(&self, (p, socket): Sock) -> String {
        if self.labelled {
            format!("P{p}.S{}", socket.0)
        } else {
            format!("S{}", socket.0)
        }
    }

    /// Trace the frames `bytes` completes on `sock` (`up`: pool → gateway).
    pub(super) fn tap(&mut self, sock: Sock, up: bool, bytes: &[u8]) {
        let name = self.sock_name(sock);
        let Some(trace) = &mut self.trace else {
            return;
        };
        trace.hash = fnv(trace.hash, bytes);
        let taps = trace.taps.entry(sock).or_insert_with(|| Taps {
            up: Tap::up(),
            down: Tap::down(),
            server_version: 0,
        });
        let sv = taps.server_version;
        let tap = if up { &mut taps.up } else { &mut taps.down };
        let (lines, new_sv) = tap.frames(up, bytes, sv);
        if let Some(v) = new_sv {
            taps.server_version = v;
        }
        for text in lines {
            self.log(|| {
                if up {
                    format!("{name}→G {text}")
                } else {
                    format!("G→{name} {text}")
                }
            });
        }
    }

    /// A pool event for the trace: instants as offsets from the epoch, answers in a few words.
    pub(super) fn describe_event(&self, event: &PoolEvent) -> String {
        let mut line = String::from("event ");
        let _ = match event {
            PoolEvent::RequestDelayed { ticket, until } => write!(
                line,
                "RequestDelayed T{} until +{:?}",
                ticket.0,
                until.saturating_duration_since(self.epoch)
            ),
            PoolEvent::Completed {
                ticket,
                result: Ok(answer),
            } => write!(
                line,
                "Completed T{} Ok {}",
                ticket.0,
                describe_answer(answer)
            ),
            PoolEvent::Completed {
                ticket,
                result: Err(e),
            } => write!(line, "Completed T{} Err {e:?}", ticket.0),
            other => write!(line, "{other:?}"),
        };
        line
    }
}
