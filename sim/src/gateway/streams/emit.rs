//! What a subscription sends at each of its instants: the market-data state machine (changes
//! only, IB's tick types, live or delayed), real-time bars and tick-by-tick ticks; split out of
//! `streams.rs`.

use ibconn_core::message::{MarketReply, RealTimeBar, TickByTick};
use ibconn_core::what_to_show::WhatToShow;

use crate::market::ticks::{Quote, TickSource, Trade, DELAYED_SECS};

use super::TbtKind;

/// `tickReqParams`' BBO exchange: IB's id of the SMART components map (a live capture's value).
const BBO_EXCHANGE: &str = "9c0001";
/// `tickReqParams`' snapshot permissions (a live capture's value).
const SNAPSHOT_PERMISSIONS: i32 = 3;
/// Trades come on whole seconds; real-time bars every 5 s.
const TRADE_MS: i64 = 1000;
const BAR_SECS: i64 = 5;
/// "Never again" for one of a subscription's timers.
const NEVER: i64 = i64::MAX;

/// IB's tick type for `live` served delayed: 0–5 → 69, 66, 67, 70, 68, 71; volume 74; close
/// 75; last timestamp 88.
fn tick_type(live: i32, delayed: bool) -> i32 {
    if !delayed {
        return live;
    }
    match live {
        0 => 69,
        1 => 66,
        2 => 67,
        3 => 70,
        4 => 68,
        5 => 71,
        8 => 74,
        9 => 75,
        45 => 88,
        other => other,
    }
}

/// One `reqMktData` subscription: the requested type, the values last sent (ticks are sent
/// when they change) and its two timers (quote steps, trades).
#[derive(Debug, Clone)]
pub(in crate::gateway) struct MarketData {
    requested: i32,
    permitted: bool,
    served: i32,
    next_quote_ms: i64,
    next_trade_ms: i64,
    bid: Option<(f64, f64)>,
    ask: Option<(f64, f64)>,
    last: Option<f64>,
    volume: Option<f64>,
}

impl MarketData {
    /// Start a subscription (or a snapshot) at `wall_ms`: push its opening messages to `out`.
    pub(super) fn open(
        src: &TickSource<'_>,
        req_id: i32,
        requested: i32,
        snapshot: bool,
        wall_ms: i64,
        quote_ms: i64,
        out: &mut Vec<MarketReply>,
    ) -> Self {
        let mut md = Self {
            requested,
            permitted: src.inst.data_permitted,
            served: 0,
            next_quote_ms: NEVER,
            next_trade_ms: NEVER,
            bid: None,
            ask: None,
            last: None,
            volume: None,
        };
        let delay = md.delay_ms();
        let data_sec = (wall_ms - delay).div_euclid(1000);
        let open = src.is_open(data_sec, false);
        md.served = md.served_type(open);
        out.push(MarketReply::MarketDataType {
            req_id,
            market_data_type: md.served,
        });
        out.push(MarketReply::TickReqParams {
            req_id,
            min_tick: src.inst.min_tick.to_string(),
            bbo_exchange: BBO_EXCHANGE.into(),
            snapshot_permissions: SNAPSHOT_PERMISSIONS,
        });
        let frozen = matches!(md.served, 2 | 4);
        if open {
            let step = wall_ms.div_euclid(quote_ms) * quote_ms;
            md.show(src, req_id, step - delay, data_sec, out);
        } else if snapshot || frozen {
            if let Some(sec) = src.last_open_at_or_before(data_sec) {
                md.show(src, req_id, sec * 1000, sec, out);
            }
        }
        if let Some(close) = src.prior_close(data_sec) {
            out.push(MarketReply::TickPrice {
                req_id,
                tick_type: tick_type(9, md.delayed()),
                price: close,
                size: None,
                attr_mask: 0,
            });
        }
        if !snapshot {
            md.schedule(src, wall_ms, quote_ms);
        }
        md
    }

    fn delayed(&self) -> bool {
        !self.permitted
    }

    /// Delayed data (no permissions, type 3/4) is 15 minutes old.
    fn delay_ms(&self) -> i64 {
        if self.delayed() {
            DELAYED_SECS * 1000
        } else {
            0
        }
    }

    /// 1 live, 2 frozen (a closed session, frozen asked), 3 delayed, 4 delayed-frozen.
    fn served_type(&self, open: bool) -> i32 {
        let frozen = matches!(self.requested, 2 | 4) && !open;
        match (self.delayed(), frozen) {
            (false, false) => 1,
            (false, true) => 2,
            (true, false) => 3,
            (true, true) => 4,
        }
    }

    pub(super) fn due_ms(&self) -> Option<i64> {
        Some(self.next_quote_ms.min(self.next_trade_ms)).filter(|&t| t != NEVER)
    }

    /// Set both timers from `wall_ms`: the next quote step and whole second while the session
    /// is open, else the next open.
    fn schedule(&mut self, src: &TickSource<'_>, wall_ms: i64, quote_ms: i64) {
        let data_sec = (wall_ms - self.delay_ms()).div_euclid(1000);
        let open = src.is_open(data_sec, false);
        self.schedule_known(src, wall_ms, quote_ms, open);
    }

    /// [`MarketData::schedule`] when whether the session is open at `wall_ms` is known.
    fn schedule_known(&mut self, src: &TickSource<'_>, wall_ms: i64, quote_ms: i64, open: bool) {
        let delay = self.delay_ms();
        let data_sec = (wall_ms - delay).div_euclid(1000);
        if open {
            self.next_quote_ms = if src.has_quotes() {
                (wall_ms.div_euclid(quote_ms) + 1) * quote_ms
            } else {
                NEVER
            };
            self.next_trade_ms = if src.has_trades() {
                (wall_ms.div_euclid(TRADE_MS) + 1) * TRADE_MS
            } else {
                NEVER
            };
        } else {
            let at = src
                .next_open(data_sec, false)
                .map_or(NEVER, |t| t.saturating_mul(1000).saturating_add(delay));
            self.next_quote_ms = at;
            self.next_trade_ms = at;
        }
    }

    /// Send what is due at `wall_ms`; returns the next instant.
    pub(super) fn step(
        &mut self,
        src: &TickSource<'_>,
        req_id: i32,
        wall_ms: i64,
        quote_ms: i64,
        out: &mut Vec<MarketReply>,
    ) -> Option<i64> {
        let delay = self.delay_ms();
        let data_sec = (wall_ms - delay).div_euclid(1000);
        let open = src.is_open(data_sec, false);
        let served = self.served_type(open);
        if served != self.served {
            self.served = served;
            out.push(MarketReply::MarketDataType {
                req_id,
                market_data_type: served,
            });
        }
        if open {
            if self.next_quote_ms <= wall_ms {
                let step = wall_ms.div_euclid(quote_ms) * quote_ms;
                if let Some(q) = src.quote_at_ms(step - delay) {
                    self.quote(req_id, q, out);
                }
            }
            if self.next_trade_ms <= wall_ms {
                if let Some(t) = src.trade(data_sec) {
                    self.trade(src, req_id, t, out);
                }
            }
        }
        self.schedule_known(src, wall_ms, quote_ms, open);
        self.due_ms()
    }

    /// The full state at one instant: the quote of `quote_ms` (data time), the trade of `sec`.
    fn show(
        &mut self,
        src: &TickSource<'_>,
        req_id: i32,
        quote_ms: i64,
        sec: i64,
        out: &mut Vec<MarketReply>,
    ) {
        if let Some(q) = src.quote_at_ms(quote_ms) {
            self.quote(req_id, q, out);
        }
        if let Some(t) = src.trade(sec) {
            self.trade(src, req_id, t, out);
        }
    }

    /// Bid and ask: a price tick (with its size) when the price moved, else a size tick when
    /// the size did.
    fn quote(&mut self, req_id: i32, q: Quote, out: &mut Vec<MarketReply>) {
        let d = self.delayed();
        // Bit 0 "can auto-execute" is set on live quotes.
        let attr_mask = i32::from(self.served == 1);
        let sides = [
            (&mut self.bid, q.bid, q.bid_size, 1, 0),
            (&mut self.ask, q.ask, q.ask_size, 2, 3),
        ];
        for (sent, price, size, price_type, size_type) in sides {
            match *sent {
                Some((p, s)) if p == price => {
                    if s != size {
                        out.push(MarketReply::TickSize {
                            req_id,
                            tick_type: tick_type(size_type, d),
                            size,
                        });
                    }
                }
                _ => out.push(MarketReply::TickPrice {
                    req_id,
                    tick_type: tick_type(price_type, d),
                    price,
                    size: Some(size),
                    attr_mask,
                }),
            }
            *sent = Some((price, size));
        }
    }

    /// A trade: the last price with its size (or the size alone at an unchanged price), the
    /// day's volume when it changed, and the last timestamp.
    fn trade(&mut self, src: &TickSource<'_>, req_id: i32, t: Trade, out: &mut Vec<MarketReply>) {
        let d = self.delayed();
        if self.last == Some(t.price) {
            if t.size > 0.0 {
                out.push(MarketReply::TickSize {
                    req_id,
                    tick_type: tick_type(5, d),
                    size: t.size,
                });
            }
        } else {
            out.push(MarketReply::TickPrice {
                req_id,
                tick_type: tick_type(4, d),
                price: t.price,
                size: Some(t.size),
                attr_mask: 0,
            });
        }
        self.last = Some(t.price);
        if let Some(v) = src.day_volume(t.time) {
            if self.volume != Some(v) {
                out.push(MarketReply::TickSize {
                    req_id,
                    tick_type: tick_type(8, d),
                    size: v,
                });
                self.volume = Some(v);
            }
        }
        out.push(MarketReply::TickString {
            req_id,
            tick_type: tick_type(45, d),
            value: t.time.to_string(),
        });
    }
}

/// The first boundary a new real-time-bars subscription sends at: the next 5-second boundary
/// while the session is open, else 5 s after the next open.
pub(super) fn first_bar_due(src: &TickSource<'_>, use_rth: bool, wall_ms: i64) -> Option<i64> {
    let sec = wall_ms.div_euclid(1000);
    if src.is_open(sec, use_rth) {
        return Some((wall_ms.div_euclid(BAR_SECS * 1000) + 1) * BAR_SECS * 1000);
    }
    after_open(src, use_rth, sec)
}

/// 5 s after the next open at or after `sec` (on the 5-second grid).
fn after_open(src: &TickSource<'_>, use_rth: bool, sec: i64) -> Option<i64> {
    let open = src.next_open(sec, use_rth)?;
    let boundary = (open + BAR_SECS - 1).div_euclid(BAR_SECS) * BAR_SECS;
    Some((boundary + BAR_SECS) * 1000)
}

/// At boundary `T` (the latest at or before `wall_ms`): the bar `[T − 5 s, T)` if it lies in
/// the session; returns the next boundary.
pub(super) fn real_time_bar(
    src: &TickSource<'_>,
    req_id: i32,
    what: WhatToShow,
    use_rth: bool,
    wall_ms: i64,
    out: &mut Vec<MarketReply>,
) -> Option<i64> {
    let t = wall_ms.div_euclid(BAR_SECS * 1000) * BAR_SECS;
    if let Some(b) = src.bar5(what, use_rth, t - BAR_SECS) {
        out.push(MarketReply::RealTimeBar {
            req_id,
            bar: RealTimeBar {
                time: t - BAR_SECS,
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
                wap: b.wap,
                count: b.count,
            },
        });
    }
    if src.is_open(t, use_rth) {
        Some((t + BAR_SECS) * 1000)
    } else {
        after_open(src, use_rth, t)
    }
}

/// One `reqTickByTickData` subscription: its type, the last quote sent and its timer.
#[derive(Debug, Clone)]
pub(in crate::gateway) struct TickByTickSub {
    kind: TbtKind,
    ignore_size: bool,
    next_ms: Option<i64>,
    sent: Option<Quote>,
}

impl TickByTickSub {
    pub(super) fn new(
        src: &TickSource<'_>,
        kind: TbtKind,
        ignore_size: bool,
        wall_ms: i64,
        quote_ms: i64,
    ) -> Self {
        let mut t = Self {
            kind,
            ignore_size,
            next_ms: None,
            sent: None,
        };
        t.schedule(src, wall_ms, quote_ms);
        t
    }

    pub(super) fn due_ms(&self) -> Option<i64> {
        self.next_ms
    }

    fn trades(&self) -> bool {
        matches!(self.kind, TbtKind::Last | TbtKind::AllLast)
    }

    fn schedule(&mut self, src: &TickSource<'_>, wall_ms: i64, quote_ms: i64) {
        let open = src.is_open(wall_ms.div_euclid(1000), false);
        self.schedule_known(src, wall_ms, quote_ms, open);
    }

    /// [`TickByTickSub::schedule`] when whether the session is open at `wall_ms` is known.
    fn schedule_known(&mut self, src: &TickSource<'_>, wall_ms: i64, quote_ms: i64, open: bool) {
        let period = if self.trades() { TRADE_MS } else { quote_ms };
        let served = if self.trades() {
            src.has_trades()
        } else {
            src.has_quotes()
        };
        let sec = wall_ms.div_euclid(1000);
        self.next_ms = if !served {
            None
        } else if open {
            Some((wall_ms.div_euclid(period) + 1) * period)
        } else {
            src.next_open(sec, false).map(|t| t.saturating_mul(1000))
        };
    }

    /// Send the tick due at `wall_ms` (trades every second; quotes and midpoints when they
    /// changed); returns the next instant.
    pub(super) fn step(
        &mut self,
        src: &TickSource<'_>,
        req_id: i32,
        wall_ms: i64,
        quote_ms: i64,
        out: &mut Vec<MarketReply>,
    ) -> Option<i64> {
        let sec = wall_ms.div_euclid(1000);
        let open = src.is_open(sec, false);
        if open {
            let tick = if self.trades() {
                src.trade(sec).map(|t| TickByTick::Last {
                    all: self.kind == TbtKind::AllLast,
                    time: t.time,
                    price: t.price,
                    size: t.size,
                    past_limit: false,
                    unreported: false,
                    exchange: exchange(src),
                    special_conditions: String::new(),
                })
            } else {
                let step = wall_ms.div_euclid(quote_ms) * quote_ms;
                src.quote_at_ms(step).and_then(|q| self.quote_tick(q))
            };
            if let Some(tick) = tick {
                out.push(MarketReply::TickByTick { req_id, tick });
            }
        }
        self.schedule_known(src, wall_ms, quote_ms, open);
        self.next_ms
    }

    /// A `BidAsk` tick when the quote changed (prices only with `ignoreSize`), a `MidPoint`
    /// tick when the midpoint did.
    fn quote_tick(&mut self, q: Quote) -> Option<TickByTick> {
        let prev = self.sent;
        let changed = match (self.kind, prev) {
            (_, None) => true,
            (TbtKind::MidPoint, Some(p)) => p.mid != q.mid,
            (_, Some(p)) => {
                p.bid != q.bid
                    || p.ask != q.ask
                    || (!self.ignore_size && (p.bid_size != q.bid_size || p.ask_size != q.ask_size))
            }
        };
        if !changed {
            return None;
        }
        self.sent = Some(q);
        Some(match self.kind {
            TbtKind::MidPoint => TickByTick::MidPoint {
                time: q.time,
                mid: q.mid,
            },
            _ => TickByTick::BidAsk {
                time: q.time,
                bid: q.bid,
                ask: q.ask,
                bid_size: q.bid_size,
                ask_size: q.ask_size,
                bid_past_low: false,
                ask_past_high: false,
            },
        })
    }
}

/// The exchange a tick-by-tick trade names: the primary listing, else the routing exchange.
fn exchange(src: &TickSource<'_>) -> String {
    if src.inst.primary_exchange.is_empty() {
        src.inst.exchange.clone()
    } else {
        src.inst.primary_exchange.clone()
    }
}
