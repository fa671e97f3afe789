//! Streaming as IB serves it: `reqMktData` (and snapshots), `reqMarketDataType`,
//! `reqRealTimeBars`, `reqTickByTickData` and their cancels, IB's limits on them, and the
//! bookkeeping the counters report; the emission itself is in [`emit`].
//!
//! # Behaviour and the sim's decisions
//!
//! - Every subscription is served from [`crate::market::ticks`] at wall-clock instants aligned
//!   to its cadence: quote steps every [`GatewayConfig::quote_interval`](super::GatewayConfig)
//!   (250 ms), trades on whole seconds, real-time bars on 5-second boundaries. A subscription
//!   holds its next emission instant; [`Gateway::poll_timeout`] includes it, so virtual time
//!   advances to it and the TCP server wakes for it. Served late (a wall-clock server), a
//!   subscription sends the state of the latest step, not every missed one (IB conflates too).
//! - Streams start at once: no reply latency, no data before the request. While the session is
//!   closed a subscription sleeps until the next open (all hours for market data and
//!   tick-by-tick, `useRTH` for real-time bars).
//! - `reqMktData`: `marketDataType`, `tickReqParams`, then (session open) the current bid, ask,
//!   last with sizes, volume and last timestamp, and the close (9) of the last regular
//!   session. A closed session gets the close tick only (frozen types 2/4: the last values as
//!   well). Snapshots: the same values once (the last open instant's in a closed market), then
//!   `tickSnapshotEnd` — at once, where IB waits up to ~11 s. Generic tick lists are accepted and
//!   add nothing.
//! - Market-data types: an instrument with permissions is served live whatever was asked (1; 2
//!   frozen while its session is closed if 2 or 4 was asked), as IB serves live data to a
//!   subscriber; without permissions 1/2 get 354, 3/4 get the advisory 10167 and delayed ticks
//!   (66–71, 74, 75, 88) of 15 minutes ago. A change of the served type on a session edge is
//!   announced with `marketDataType`.
//! - Tick-by-tick: `numberOfTicks > 0` asks IB for historical ticks first (messages 96–98); the
//!   core does not model them, so none are sent. IB's "one request per instrument per 15 s" rule
//!   is not enforced.
//! - Real-time bars: the 5-second bar `[T − 5 s, T)` at each boundary `T`, exactly the bar
//!   `reqHistoricalData` of `5 secs` returns for it (what: TRADES, MIDPOINT, BID, ASK; others
//!   321). Each request counts in the historical pacing's 10-minute window (IB: 60 new requests
//!   per 10 min); a refusal is 420 "…pacing violation". They are not open HMDS requests.
//! - Keep-up-to-date bars (`reqHistoricalData` with `keepUpToDate`, served by the historical
//!   code): the request is paced like any historical request and its updates are not (the
//!   research's UNCONFIRMED point, decided as it assumes); while open it counts among the 50 open
//!   historical requests (322 "Only 50 simultaneous…") but holds no market-data line; it is a
//!   subscription for the duplicate check and for 1101, which drops it.
//! - Limits, over every session of the gateway: [`GatewayConfig::max_market_data_lines`]
//!   (101), [`GatewayConfig::max_tick_by_tick`] (10190). A request id already open on the session
//!   (any kind, historical included) gets 322 "Duplicate ticker id"; cancelling an id that is not
//!   live gets 300. A cancel stops the stream at once (bytes already committed still go).
//!
//! Checks run in IB's order as far as it is known: the duplicate id, then validation, then the
//! contract (200), permissions, the limits, pacing.

mod emit;

use std::collections::BTreeMap;
use std::time::Instant;

use ibconn_core::message::market::{MarketDataRequest, RealTimeBarsRequest, TickByTickRequest};
use ibconn_core::message::{Contract, MarketReply, MarketRequest, Response};
use ibconn_core::what_to_show::WhatToShow;

use crate::bars;
use crate::errors::{self, IbError};
use crate::market::ticks::TickSource;
use crate::market::{Instrument, Lookup};
use crate::rules::{PacedKind, PacedRequest};

use super::historical::named;
use super::{Conn, Gateway, HistState};

pub(super) use emit::MarketData;

/// One live streaming subscription.
#[derive(Debug, Clone)]
pub(crate) struct Sub {
    kind: SubKind,
    inst: Instrument,
    /// Kind, contract and parameters: two live subscriptions with one key are duplicates.
    key: String,
    /// Wall-clock time (Unix ms) of its next emission; `None`: never again (the instrument
    /// stopped trading).
    pub(super) due_ms: Option<i64>,
}

#[derive(Debug, Clone)]
enum SubKind {
    MktData(MarketData),
    RealTimeBars { what: WhatToShow, use_rth: bool },
    TickByTick(emit::TickByTickSub),
}

/// What a cancel names (a cancel of another kind's id is a 300, as for an unknown id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MktData,
    RealTimeBars,
    TickByTick,
}

impl Sub {
    fn kind(&self) -> Kind {
        match self.kind {
            SubKind::MktData(_) => Kind::MktData,
            SubKind::RealTimeBars { .. } => Kind::RealTimeBars,
            SubKind::TickByTick(_) => Kind::TickByTick,
        }
    }

    /// Whether it holds a market-data line.
    fn holds_line(&self) -> bool {
        matches!(self.kind(), Kind::MktData | Kind::RealTimeBars)
    }
}

/// Streaming in use at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Usage {
    pub(super) lines: u64,
    pub(super) tick_by_tick: u64,
    pub(super) subscriptions: u64,
}

/// A tick-by-tick type as IB spells it on the wire (case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TbtKind {
    Last,
    AllLast,
    BidAsk,
    MidPoint,
}

impl TbtKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Last" => Self::Last,
            "AllLast" => Self::AllLast,
            "BidAsk" => Self::BidAsk,
            "MidPoint" => Self::MidPoint,
            _ => return None,
        })
    }
}

impl Gateway {
    /// Serve one streaming request or cancel.
    pub(super) fn serve_market(&mut self, c: &mut Conn, now: Instant, request: MarketRequest) {
        match request {
            MarketRequest::MktData(r) => self.mkt_data(c, now, r),
            MarketRequest::CancelMktData { req_id } => {
                self.cancel_stream(c, now, req_id, Kind::MktData);
            }
            MarketRequest::MarketDataType { market_data_type } => {
                // IB answers nothing; an out-of-range type is ignored (the sim's choice).
                if (1..=4).contains(&market_data_type) {
                    c.market_data_type = market_data_type;
                }
            }
            MarketRequest::RealTimeBars(r) => self.real_time_bars(c, now, r),
            MarketRequest::CancelRealTimeBars { req_id } => {
                self.cancel_stream(c, now, req_id, Kind::RealTimeBars);
            }
            MarketRequest::TickByTick(r) => self.tick_by_tick(c, now, r),
            MarketRequest::CancelTickByTick { req_id } => {
                self.cancel_stream(c, now, req_id, Kind::TickByTick);
            }
            other => tracing::debug!(msg = other.name(), "ignored streaming request"),
        }
    }

    /// Whether `req_id` is open on `c` in any form (IB's ids are one space per session).
    pub(super) fn id_in_use(c: &Conn, req_id: i32) -> bool {
        c.subs.contains_key(&req_id) || c.hist.contains_key(&req_id) || c.heads.contains(&req_id)
    }

    fn refuse(&mut self, c: &mut Conn, now: Instant, req_id: i32, err: IbError) {
        tracing::debug!(req_id, code = err.code, "streaming request refused");
        self.send_error(c, now, req_id, err);
    }

    /// 322 for an id already open on the session; `true` if refused.
    fn refuse_open_id(&mut self, c: &mut Conn, now: Instant, req_id: i32) -> bool {
        if !Self::id_in_use(c, req_id) {
            return false;
        }
        self.counters.duplicate_ids += 1;
        self.refuse(c, now, req_id, errors::duplicate_ticker_id());
        true
    }

    /// The one instrument `contract` names, or the 200 IB answers (permissions are checked by
    /// each kind, which answer differently).
    fn stream_instrument(
        &mut self,
        c: &mut Conn,
        now: Instant,
        req_id: i32,
        contract: &Contract,
    ) -> Option<Instrument> {
        let wall = self.unix_ms(now).div_euclid(1000);
        match self.config.market.resolve(contract, wall) {
            Lookup::Found(i) => Some(*i),
            Lookup::NotFound => {
                self.refuse(c, now, req_id, errors::no_security_definition());
                None
            }
            Lookup::Ambiguous => {
                let err = errors::ambiguous(named(contract));
                self.refuse(c, now, req_id, err);
                None
            }
        }
    }

    fn mkt_data(&mut self, c: &mut Conn, now: Instant, r: MarketDataRequest) {
        let req_id = r.req_id;
        if self.refuse_open_id(c, now, req_id) {
            return;
        }
        let snapshot = r.snapshot || r.regulatory_snapshot;
        if snapshot && !r.generic_ticks.trim().is_empty() {
            return self.refuse(c, now, req_id, errors::snapshot_generic_ticks());
        }
        let Some(inst) = self.stream_instrument(c, now, req_id, &r.contract) else {
            return;
        };
        let requested = c.market_data_type;
        if !inst.data_permitted && matches!(requested, 1 | 2) {
            return self.refuse(c, now, req_id, errors::not_subscribed());
        }
        if !snapshot && self.stream_usage(Some(c)).lines >= self.line_budget() {
            self.counters.max_tickers_refused += 1;
            return self.refuse(c, now, req_id, errors::max_tickers());
        }
        if !inst.data_permitted {
            self.send_error(c, now, req_id, errors::delayed_displayed());
        }
        let wall_ms = self.unix_ms(now);
        let quote_ms = self.quote_ms();
        let src = TickSource {
            market: &self.config.market,
            inst: &inst,
            salt: self.market_salt,
        };
        let mut out = Vec::new();
        let md = MarketData::open(
            &src, req_id, requested, snapshot, wall_ms, quote_ms, &mut out,
        );
        for m in out {
            c.push(&Response::Market(m));
        }
        if snapshot {
            c.push(&Response::Market(MarketReply::TickSnapshotEnd { req_id }));
            return;
        }
        let key = format!("mkt|{}|{}", inst.con_id, r.generic_ticks.trim());
        let due_ms = md.due_ms();
        self.subscribe(
            c,
            req_id,
            Sub {
                kind: SubKind::MktData(md),
                inst,
                key,
                due_ms,
            },
        );
    }

    fn real_time_bars(&mut self, c: &mut Conn, now: Instant, r: RealTimeBarsRequest) {
        let req_id = r.req_id;
        if self.refuse_open_id(c, now, req_id) {
            return;
        }
        let what = bars::parse_what(&r.what_to_show).filter(|w| {
            matches!(
                w,
                WhatToShow::Trades | WhatToShow::Midpoint | WhatToShow::Bid | WhatToShow::Ask
            )
        });
        let Some(what) = what else {
            return self.refuse(c, now, req_id, errors::real_time_what_to_show());
        };
        let Some(inst) = self.stream_instrument(c, now, req_id, &r.contract) else {
            return;
        };
        if !inst.data_permitted {
            let cause = format!(
                "No market data permissions for {}.",
                inst.permission_scope()
            );
            return self.refuse(c, now, req_id, errors::real_time_refused(&cause));
        }
        if !what.is_served_for(&inst.sec_type) {
            // TRADES on forex, quotes on an index: IB's text is not attested (the sim's choice).
            let cause = format!(
                "No real-time bars of {} for {}/{}",
                what.title(),
                inst.symbol,
                inst.sec_type
            );
            return self.refuse(c, now, req_id, errors::real_time_refused(&cause));
        }
        if self.stream_usage(Some(c)).lines >= self.line_budget() {
            self.counters.max_tickers_refused += 1;
            return self.refuse(c, now, req_id, errors::max_tickers());
        }
        let paced = PacedRequest {
            identity: format!("rtb|{}|{what:?}|{}", inst.con_id, r.use_rth),
            contract_tick: format!("{}|{}|{what:?}", inst.con_id, r.contract.exchange),
            bid_ask: false,
            kind: PacedKind::RealTimeBars,
        };
        let open = self.open_historical(c);
        if let Err(rule) = self.pacer.check(now, &paced, open) {
            tracing::debug!(?rule, req_id, "real-time bars pacing violation");
            self.pacing_violations += 1;
            return self.refuse(c, now, req_id, errors::real_time_pacing());
        }
        let wall_ms = self.unix_ms(now);
        let src = TickSource {
            market: &self.config.market,
            inst: &inst,
            salt: self.market_salt,
        };
        let due_ms = emit::first_bar_due(&src, r.use_rth, wall_ms);
        let key = format!("rtb|{}|{what:?}|{}", inst.con_id, r.use_rth);
        self.subscribe(
            c,
            req_id,
            Sub {
                kind: SubKind::RealTimeBars {
                    what,
                    use_rth: r.use_rth,
                },
                inst,
                key,
                due_ms,
            },
        );
    }

    fn tick_by_tick(&mut self, c: &mut Conn, now: Instant, r: TickByTickRequest) {
        let req_id = r.req_id;
        if self.refuse_open_id(c, now, req_id) {
            return;
        }
        let Some(kind) = TbtKind::parse(&r.tick_type) else {
            // IB's cause for an unknown type is not attested (the sim's choice).
            let cause = format!("Invalid tick type: {}", r.tick_type);
            return self.refuse(c, now, req_id, errors::tick_by_tick_failed(&cause));
        };
        let Some(inst) = self.stream_instrument(c, now, req_id, &r.contract) else {
            return;
        };
        if !inst.data_permitted {
            let cause = format!("No market data permissions for {}", inst.permission_scope());
            return self.refuse(c, now, req_id, errors::tick_by_tick_failed(&cause));
        }
        let budget = u64::try_from(self.config.max_tick_by_tick).unwrap_or(u64::MAX);
        if self.stream_usage(Some(c)).tick_by_tick >= budget {
            self.counters.tick_by_tick_refused += 1;
            return self.refuse(c, now, req_id, errors::max_tick_by_tick());
        }
        let wall_ms = self.unix_ms(now);
        let quote_ms = self.quote_ms();
        let src = TickSource {
            market: &self.config.market,
            inst: &inst,
            salt: self.market_salt,
        };
        let tbt = emit::TickByTickSub::new(&src, kind, r.ignore_size, wall_ms, quote_ms);
        let due_ms = tbt.due_ms();
        let key = format!("tbt|{}|{}|{}", inst.con_id, r.tick_type, r.ignore_size);
        self.subscribe(
            c,
            req_id,
            Sub {
                kind: SubKind::TickByTick(tbt),
                inst,
                key,
                due_ms,
            },
        );
    }

    /// Stop `req_id` at once if it is a live subscription of `kind`; else IB's 300.
    fn cancel_stream(&mut self, c: &mut Conn, now: Instant, req_id: i32, kind: Kind) {
        if c.subs.get(&req_id).is_some_and(|s| s.kind() == kind) {
            c.subs.remove(&req_id);
            tracing::debug!(req_id, ?kind, "subscription cancelled");
        } else {
            self.send_error(c, now, req_id, errors::no_ticker_id(req_id));
        }
    }

    fn line_budget(&self) -> u64 {
        u64::try_from(self.config.max_market_data_lines).unwrap_or(u64::MAX)
    }

    pub(super) fn quote_ms(&self) -> i64 {
        i64::try_from(self.config.quote_interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    fn subscribe(&mut self, c: &mut Conn, req_id: i32, sub: Sub) {
        tracing::debug!(req_id, key = %sub.key, "subscribed");
        c.subs.insert(req_id, sub);
        self.note_subscriptions(c);
    }

    /// Update the peaks (lines, tick-by-tick, duplicates) after a subscription started on `c`
    /// (which is out of the connection map while it is served).
    pub(super) fn note_subscriptions(&mut self, c: &Conn) {
        let usage = self.stream_usage(Some(c));
        let k = &mut self.counters;
        k.lines_in_use_max = k.lines_in_use_max.max(usage.lines);
        k.tick_by_tick_in_use_max = k.tick_by_tick_in_use_max.max(usage.tick_by_tick);
        let extra = |counts: BTreeMap<String, u64>| {
            counts.into_values().max().unwrap_or(0).saturating_sub(1)
        };
        let mut here = BTreeMap::new();
        for key in stream_keys(c) {
            *here.entry(key).or_insert(0u64) += 1;
        }
        let mut all = here.clone();
        for other in self.conns.values().filter(|o| !o.closing) {
            for key in stream_keys(other) {
                *all.entry(key).or_insert(0u64) += 1;
            }
        }
        let (here, all) = (extra(here), extra(all));
        let k = &mut self.counters;
        k.duplicate_subscriptions = k.duplicate_subscriptions.max(here);
        k.duplicate_subscriptions_across_connections =
            k.duplicate_subscriptions_across_connections.max(all);
    }

    /// Streaming in use over every open session, `current` (out of the map while served)
    /// included.
    pub(super) fn stream_usage(&self, current: Option<&Conn>) -> Usage {
        let mut u = Usage::default();
        for c in self.conns.values().chain(current).filter(|c| !c.closing) {
            for s in c.subs.values() {
                u.lines += u64::from(s.holds_line());
                u.tick_by_tick += u64::from(s.kind() == Kind::TickByTick);
                u.subscriptions += 1;
            }
            u.subscriptions += c
                .hist
                .values()
                .filter(|h| matches!(h, HistState::Streaming { .. }))
                .count() as u64;
        }
        u
    }

    /// IB's 1101 ("restored - data lost") for `c`: every server-side subscription is gone —
    /// market data, real-time bars, tick-by-tick and keep-up-to-date bars (the research calls
    /// the last UNCONFIRMED; the sim drops them as IB's "re-submit all market data" implies). No
    /// message per subscription: the client must subscribe again.
    pub(super) fn drop_streams(&mut self, c: &mut Conn) {
        let streaming: Vec<i32> = c
            .hist
            .iter()
            .filter(|(_, h)| matches!(h, HistState::Streaming { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in &streaming {
            c.hist.remove(id);
        }
        let n = c.subs.len() + streaming.len();
        c.subs.clear();
        self.counters.subscriptions_dropped += n as u64;
        if n > 0 {
            tracing::debug!(n, "subscriptions dropped (1101)");
        }
    }

    /// Send what every due subscription of `c` has at `now` (nothing while market data is
    /// paused: the subscriptions resume with the data of the moment the pause ends).
    pub(super) fn flush_streams(&mut self, c: &mut Conn, now: Instant) {
        if c.subs.is_empty() || self.is_market_data_paused(now) {
            return;
        }
        let wall_ms = self.unix_ms(now);
        let quote_ms = self.quote_ms();
        let mut out = Vec::new();
        for (&req_id, sub) in &mut c.subs {
            if sub.due_ms.is_none_or(|due| due > wall_ms) {
                continue;
            }
            let src = TickSource {
                market: &self.config.market,
                inst: &sub.inst,
                salt: self.market_salt,
            };
            sub.due_ms = match &mut sub.kind {
                SubKind::MktData(md) => md.step(&src, req_id, wall_ms, quote_ms, &mut out),
                SubKind::RealTimeBars { what, use_rth } => {
                    emit::real_time_bar(&src, req_id, *what, *use_rth, wall_ms, &mut out)
                }
                SubKind::TickByTick(t) => t.step(&src, req_id, wall_ms, quote_ms, &mut out),
            };
        }
        self.counters.stream_messages += out.len() as u64;
        for m in out {
            c.push(&Response::Market(m));
        }
    }
}

/// The duplicate keys of `c`'s live subscriptions, keep-up-to-date streams included.
fn stream_keys(c: &Conn) -> impl Iterator<Item = String> + '_ {
    let hist = c.hist.values().filter_map(|h| match h {
        HistState::Streaming { stream, .. } => Some(stream.key()),
        HistState::Pending => None,
    });
    c.subs.values().map(|s| s.key.clone()).chain(hist)
}
