//! The world's trace: the shared [`TraceLog`] (lines and their digest) plus a frame decoder per
//! socket, and the few-word descriptions of queries, answers and pool events; split out of
//! `pool_world.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ibconn_core::connection::{Answer, Query};
use ibconn_core::pool::PoolEvent;

use crate::tap::LinkTaps;
use crate::trace_log::TraceLog;

use super::{PoolWorld, Sock};

/// The trace of a [`PoolWorld`]: its lines and their digest, and a frame decoder per socket
/// (made at its first bytes, dropped when the pool closes it).
#[derive(Debug)]
pub(super) struct Trace {
    /// The lines and their digest.
    log: TraceLog,
    /// Each open socket's decoders.
    pub(super) taps: BTreeMap<Sock, LinkTaps>,
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
                log: TraceLog::new(),
                taps: BTreeMap::new(),
            }));
        }
    }

    /// Every trace line so far (none unless [`PoolWorld::enable_trace`] was called).
    pub fn trace(&self) -> &[String] {
        self.trace.as_ref().map_or(&[], |t| t.log.lines())
    }

    /// A digest of every trace line and every byte delivered (a constant without a trace).
    pub fn trace_hash(&self) -> u64 {
        self.trace
            .as_ref()
            .map_or(TraceLog::EMPTY_HASH, |t| t.log.hash())
    }

    /// Add a trace line (built only when tracing).
    pub(super) fn log(&mut self, line: impl FnOnce() -> String) {
        let elapsed = self.net.elapsed();
        if let Some(trace) = &mut self.trace {
            trace.log.line(elapsed, line());
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
        trace.log.absorb(bytes);
        let lines = trace
            .taps
            .entry(sock)
            .or_insert_with(LinkTaps::new)
            .frames(up, bytes);
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
            PoolEvent::RequestDelayed { ticket, until, .. } => write!(
                line,
                "RequestDelayed T{} until +{:?}",
                ticket.0,
                self.net.since_epoch(*until)
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
