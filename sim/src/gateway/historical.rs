//! Historical data and head timestamps as IB answers them: validation, pacing, the bars of a
//! window, cancels, and the reference bars tests compare with; split out of `gateway.rs`.

use std::time::Instant;

use ibconn_core::bar_size::BarSize;
use ibconn_core::date_format::DateFormat;
use ibconn_core::ib_duration::IbDuration;
use ibconn_core::message::request::HistoricalDataRequest;
use ibconn_core::message::{Bar, HeadTimestampRequest, Response};
use ibconn_core::what_to_show::WhatToShow;

use crate::bars::{self, BarSpec};
use crate::calendar::{self, Zone, NEW_YORK};
use crate::errors::{self, IbError};
use crate::market::{Instrument, Lookup};
use crate::rules::{PacedKind, PacedRequest, PacingViolation, SMALL_BAR_SECS};

use super::{Conn, Gateway, HistState, ReplyKind, Stream};

impl Gateway {
    pub(super) fn spec<'a>(
        &'a self,
        inst: &'a Instrument,
        bar_size: BarSize,
        use_rth: bool,
        what: WhatToShow,
        now_secs: i64,
    ) -> BarSpec<'a> {
        BarSpec {
            market: &self.config.market,
            inst,
            salt: self.market_salt,
            bar_size,
            use_rth,
            what,
            format_date: DateFormat::Epoch,
            now: now_secs,
        }
    }

    /// Open HMDS requests over every session: historical (pending or streaming) and head
    /// timestamps; both count against IB's 50 (docs/ib-facts.md#historical-data-pacing).
    pub(super) fn open_historical(&self, current: &Conn) -> usize {
        self.conns
            .values()
            .chain(std::iter::once(current))
            .map(|c| c.hist.len() + c.heads.len())
            .sum()
    }

    /// Resolve a request contract or answer the lookup error; checks data permissions too.
    fn instrument_for(
        &mut self,
        c: &mut Conn,
        now: Instant,
        req_id: i32,
        contract: &ibconn_core::message::Contract,
    ) -> Option<Instrument> {
        let wall = self.unix_ms(now).div_euclid(1000);
        let inst = match self.config.market.resolve(contract, wall) {
            Lookup::Found(i) => *i,
            Lookup::NotFound => {
                self.send_error(c, now, req_id, errors::no_security_definition());
                return None;
            }
            Lookup::Ambiguous => {
                self.send_error(c, now, req_id, errors::ambiguous(named(contract)));
                return None;
            }
        };
        if !inst.data_permitted {
            self.send_error(
                c,
                now,
                req_id,
                errors::no_permissions(&inst.permission_scope()),
            );
            return None;
        }
        Some(inst)
    }

    /// Refuse `req_id` with 322 if it is still open on `c` (a pending or streaming historical
    /// request, a pending head timestamp, a live market-data, real-time-bars or tick-by-tick
    /// subscription) or a [`Fault::DuplicateTickerId`] is in force; the open request carries on.
    /// Checked before anything else, so a refused request is not paced.
    fn refuse_duplicate(&mut self, c: &mut Conn, now: Instant, req_id: i32) -> bool {
        let open = Self::id_in_use(c, req_id);
        if !open && !take_one(&mut c.faults.duplicate_ids) {
            return false;
        }
        tracing::debug!(req_id, open, "duplicate ticker id");
        self.counters.duplicate_ids += 1;
        self.send_error(c, now, req_id, errors::duplicate_ticker_id());
        true
    }

    pub(super) fn historical(&mut self, c: &mut Conn, now: Instant, r: HistoricalDataRequest) {
        let req_id = r.req_id;
        if self.refuse_duplicate(c, now, req_id) {
            return;
        }
        let Some(inst) = self.instrument_for(c, now, req_id, &r.contract) else {
            return;
        };
        let Ok(bar_size) = calendar::parse_bar_size(&r.bar_size) else {
            let cause = format!("Invalid bar size setting: {}", r.bar_size);
            return self.send_error(c, now, req_id, errors::validation("bS", &cause));
        };
        let Some(what) = bars::parse_what(&r.what_to_show) else {
            let cause = format!("Invalid what to show: {}", r.what_to_show);
            return self.send_error(c, now, req_id, errors::validation("bT", &cause));
        };
        let paced = PacedRequest {
            identity: format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}",
                inst.con_id,
                r.contract.exchange,
                r.end_date_time,
                r.bar_size,
                r.duration,
                r.use_rth,
                r.what_to_show,
                r.format_date,
                r.keep_up_to_date
            ),
            contract_tick: contract_tick(inst.con_id, &r.contract.exchange, &format!("{what:?}")),
            bid_ask: what == WhatToShow::BidAsk,
            kind: PacedKind::Bars {
                secs: calendar::bar_secs(bar_size),
            },
        };
        if !self.paced(c, now, req_id, &paced) {
            return;
        }
        if let Some(e) = refuse_series(&inst, what, Some(bar_size)) {
            return self.send_error(c, now, req_id, e);
        }
        let wall = self.unix_ms(now).div_euclid(1000);
        let window = match self.window(&inst, bar_size, what, &r, wall) {
            Ok(w) => Ok(w),
            // Refused by TWS's validation: answered at once, whatever the faults.
            Err((Refusal::Invalid, e)) => return self.send_error(c, now, req_id, e),
            Err((why, e)) => {
                match why {
                    Refusal::TooOld => self.counters.small_bars_too_old += 1,
                    Refusal::Future => self.counters.end_in_future += 1,
                    _ => {}
                }
                Err(e)
            }
        };
        if take_one(&mut c.faults.never_answer) {
            tracing::debug!(req_id, "never answered (fault)");
            self.counters.never_answered += 1;
            c.hist.insert(req_id, HistState::Pending);
            return;
        }
        let w = match window {
            Ok(w) => w,
            Err(e) => return self.send_error(c, now, req_id, e),
        };
        if take_one(&mut c.faults.spurious_no_data) {
            tracing::debug!(req_id, "spurious no data (fault)");
            self.counters.spurious_no_data += 1;
            let err = errors::no_data(&inst.symbol, &exchange_of(&inst, &r), what.title());
            return self.send_error(c, now, req_id, err);
        }
        let fmt = |t: i64| match answer_format(r.format_date) {
            DateFormat::Text => calendar::format_new_york(t),
            DateFormat::Epoch => calendar::format_utc_dash(t),
        };
        let (start_s, end_s) = (fmt(w.start), fmt(w.end));
        let replies = if c.sv() >= ibconn_core::wire::version::HISTORICAL_DATA_END {
            vec![
                Response::HistoricalData {
                    req_id,
                    start: String::new(),
                    end: String::new(),
                    bars: w.bars,
                },
                Response::HistoricalDataEnd {
                    req_id,
                    start: start_s,
                    end: end_s,
                },
            ]
        } else {
            vec![Response::HistoricalData {
                req_id,
                start: start_s,
                end: end_s,
                bars: w.bars,
            }]
        };
        let stream = r.keep_up_to_date.then_some(Stream {
            con_id: inst.con_id,
            bar_size,
            use_rth: r.use_rth,
            what,
            format_date: answer_format(r.format_date),
        });
        self.schedule(c, now, req_id, ReplyKind::Historical, replies, stream);
    }

    /// Judge `paced` by the historical pacing rules with every open HMDS request counted;
    /// refuse it (and `false`) if it breaks one: a 162 pacing violation, or IB's 322 "Only 50
    /// simultaneous API historical data requests allowed." past the open-request cap.
    fn paced(&mut self, c: &mut Conn, now: Instant, req_id: i32, paced: &PacedRequest) -> bool {
        let open = self.open_historical(c);
        match self.pacer.check(now, paced, open) {
            Ok(()) => true,
            Err(rule) => {
                tracing::debug!(?rule, req_id, "historical pacing violation");
                self.pacing_violations += 1;
                let err = match rule {
                    PacingViolation::TooManyOpen => errors::too_many_open_historical(),
                    _ => errors::pacing_violation(),
                };
                self.send_error(c, now, req_id, err);
                false
            }
        }
    }

    /// The bars `r` asks for at wall time `wall` (Unix seconds), or why IB refuses and its error:
    /// 321 for an invalid duration or end date, 162 for a too long duration, an end in the
    /// future, small bars older than [`GatewayConfig::small_bar_history`], or a window without
    /// bars.
    fn window(
        &self,
        inst: &Instrument,
        bar_size: BarSize,
        what: WhatToShow,
        r: &HistoricalDataRequest,
        wall: i64,
    ) -> Result<Window, (Refusal, IbError)> {
        let invalid = |tag: &str, cause: &str| (Refusal::Invalid, errors::validation(tag, cause));
        let Ok(duration) = r.duration.parse::<IbDuration>() else {
            let cause = format!("Historical data query duration {:?} is invalid", r.duration);
            return Err(invalid("bD", &cause));
        };
        if duration.nominal_secs() > calendar::max_duration_secs(bar_size) {
            return Err((Refusal::TooLong, errors::time_length_exceeded()));
        }
        let no_bars = || (inst.symbol.as_str(), exchange_of(inst, r), what.title());
        let end = if r.end_date_time.trim().is_empty() {
            wall
        } else if r.keep_up_to_date {
            return Err(invalid("bP", "End date not supported with live updates"));
        } else {
            let Ok(end) = calendar::parse_end_date(&r.end_date_time, Zone::Us(NEW_YORK)) else {
                let cause = format!(
                    "Historical data query end date/time string [{}] is invalid.  Format is 'YYYYMMDD{{SPACE}}hh:mm:ss[{{SPACE}}TMZ]'.",
                    r.end_date_time
                );
                return Err(invalid("bW", &cause));
            };
            if end > wall {
                let (symbol, exchange, title) = no_bars();
                let err = errors::end_in_future(symbol, &exchange, title);
                return Err((Refusal::Future, err));
            }
            end
        };
        let history = self
            .config
            .small_bar_history
            .map(|d| wall.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        if calendar::bar_secs(bar_size) <= SMALL_BAR_SECS
            && history.is_some_and(|oldest| end < oldest)
        {
            let (symbol, exchange, title) = no_bars();
            let err = errors::small_bars_too_old(symbol, &exchange, title);
            return Err((Refusal::TooOld, err));
        }
        let spec = BarSpec {
            format_date: answer_format(r.format_date),
            ..self.spec(inst, bar_size, r.use_rth, what, wall)
        };
        let start = bars::window_start(&spec, end, duration);
        let found = bars::bars(&spec, start, end);
        if found.is_empty() {
            let (symbol, exchange, title) = no_bars();
            return Err((Refusal::NoData, errors::no_data(symbol, &exchange, title)));
        }
        Ok(Window {
            start,
            end,
            bars: found,
        })
    }

    pub(super) fn cancel_historical(&mut self, c: &mut Conn, now: Instant, req_id: i32) {
        match c.hist.remove(&req_id) {
            Some(HistState::Pending) => {
                c.scheduled
                    .retain(|_, s| !(s.req_id == req_id && s.kind == ReplyKind::Historical));
                self.send_error(c, now, req_id, errors::query_cancelled(req_id));
            }
            Some(HistState::Streaming { .. }) => {}
            None => self.send_error(c, now, req_id, errors::no_query_found(req_id)),
        }
    }

    pub(super) fn head_timestamp(&mut self, c: &mut Conn, now: Instant, r: HeadTimestampRequest) {
        if self.refuse_duplicate(c, now, r.req_id) {
            return;
        }
        let Some(inst) = self.instrument_for(c, now, r.req_id, &r.contract) else {
            return;
        };
        // Bars and head timestamps of one contract and tick type share the same-contract rule.
        let tick = bars::parse_what(&r.what_to_show)
            .map_or_else(|| r.what_to_show.to_uppercase(), |w| format!("{w:?}"));
        let paced = PacedRequest {
            identity: format!(
                "head|{}|{}|{}|{}|{}",
                inst.con_id, r.contract.exchange, r.what_to_show, r.use_rth, r.format_date
            ),
            contract_tick: contract_tick(inst.con_id, &r.contract.exchange, &tick),
            bid_ask: r.what_to_show.eq_ignore_ascii_case("BID_ASK"),
            kind: PacedKind::HeadTimestamp,
        };
        self.counters.head_timestamps += 1;
        if !self.paced(c, now, r.req_id, &paced) {
            return;
        }
        let refused = bars::parse_what(&r.what_to_show).and_then(|w| refuse_series(&inst, w, None));
        if let Some(e) = refused {
            return self.send_error(c, now, r.req_id, e);
        }
        if take_one(&mut c.faults.never_answer) {
            tracing::debug!(req_id = r.req_id, "never answered (fault)");
            self.counters.never_answered += 1;
            c.heads.insert(r.req_id);
            return;
        }
        let head = inst.head_timestamp;
        let timestamp = match answer_format(r.format_date) {
            DateFormat::Text => calendar::format_new_york(head),
            DateFormat::Epoch => head.to_string(),
        };
        let reply = Response::HeadTimestamp {
            req_id: r.req_id,
            timestamp,
        };
        self.schedule(
            c,
            now,
            r.req_id,
            ReplyKind::HeadTimestamp,
            vec![reply],
            None,
        );
    }

    /// The bars a historical request would get now, by IB's rules but outside any session: no
    /// pacing, no faults, nothing recorded — the ground truth a test compares a client's result
    /// with. The error is the one IB would answer instead (200, 321, 162).
    pub fn reference_bars(
        &mut self,
        now: Instant,
        r: &HistoricalDataRequest,
    ) -> Result<Vec<Bar>, IbError> {
        let wall = self.unix_ms(now).div_euclid(1000);
        let inst = match self.config.market.resolve(&r.contract, wall) {
            Lookup::Found(i) => *i,
            Lookup::NotFound => return Err(errors::no_security_definition()),
            Lookup::Ambiguous => return Err(errors::ambiguous(named(&r.contract))),
        };
        if !inst.data_permitted {
            return Err(errors::no_permissions(&inst.permission_scope()));
        }
        let Ok(bar_size) = calendar::parse_bar_size(&r.bar_size) else {
            let cause = format!("Invalid bar size setting: {}", r.bar_size);
            return Err(errors::validation("bS", &cause));
        };
        let Some(what) = bars::parse_what(&r.what_to_show) else {
            let cause = format!("Invalid what to show: {}", r.what_to_show);
            return Err(errors::validation("bT", &cause));
        };
        if let Some(e) = refuse_series(&inst, what, Some(bar_size)) {
            return Err(e);
        }
        self.window(&inst, bar_size, what, r, wall)
            .map(|w| w.bars)
            .map_err(|(_, e)| e)
    }
}

/// Why IB answers a historical request without bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// TWS's validation (321): answered at once.
    Invalid,
    /// The duration is too long for the bar size.
    TooLong,
    /// The end date lies in the future.
    Future,
    /// Small bars older than IB keeps them.
    TooOld,
    /// No bars in the window.
    NoData,
}

/// The bars of one answered historical request.
#[derive(Debug)]
pub(super) struct Window {
    start: i64,
    end: i64,
    bars: Vec<Bar>,
}

/// How TWS answers a wire `formatDate`: text for 1, epoch seconds for 2 and for any other value
/// (TWS does not refuse one).
fn answer_format(code: i32) -> DateFormat {
    DateFormat::from_code(code).unwrap_or(DateFormat::Epoch)
}

/// Use up one of `n` (a fault's remaining requests); whether there was one.
fn take_one(n: &mut u32) -> bool {
    let had = *n > 0;
    *n = n.saturating_sub(1);
    had
}

/// The pacer's same-contract key: contract, exchange, tick type.
fn contract_tick(con_id: i32, exchange: &str, tick: &str) -> String {
    format!("{con_id}|{exchange}|{tick}")
}

/// How IB names a request's contract in "is ambiguous": its symbol, else its local symbol.
pub(super) fn named(c: &ibconn_core::message::Contract) -> &str {
    if c.symbol.is_empty() {
        &c.local_symbol
    } else {
        &c.symbol
    }
}

/// IB's 162 for a series it does not keep for the instrument's security type (TRADES on forex,
/// quotes on an index; docs/ib-facts.md#contracts), or `None` when it serves it.
fn refuse_series(inst: &Instrument, what: WhatToShow, bar: Option<BarSize>) -> Option<IbError> {
    if what.is_served_for(&inst.sec_type) {
        return None;
    }
    let title = match what {
        WhatToShow::Trades => "Last",
        other => other.title(),
    };
    let bar = bar.map(|b| match b {
        BarSize::Day1 => "1d".to_owned(),
        BarSize::Week1 => "1w".to_owned(),
        BarSize::Month1 => "1m".to_owned(),
        intraday => intraday.seconds().to_string(),
    });
    Some(errors::no_historical_data(
        &inst.symbol,
        &inst.sec_type,
        &inst.exchange,
        title,
        bar.as_deref(),
    ))
}

/// The exchange IB names in a "no data" text: the request's, else the instrument's.
fn exchange_of(inst: &Instrument, r: &HistoricalDataRequest) -> String {
    if r.contract.exchange.is_empty() {
        inst.exchange.clone()
    } else {
        r.contract.exchange.clone()
    }
}
