//! Glue to the shared pacing ledger: waiting out an unreachable store, reporting it down or back,
//! renewing this pool's claims, and what the pacer needs to know about a query.

use std::time::Instant;

use super::{Pool, PoolEvent, ReqState, LEDGER_RETRY};
use crate::connection::Query;
use crate::message::Contract;
use crate::pacer::{
    HeadTimestampKey, HistoricalRequestKey, LedgerError, PacedRequest, ReservationId, TickByTickKey,
};
use crate::stream::StreamQuery;

impl Pool {
    /// A pacing-ledger step failed: queued requests wait (never unpaced, each within its own
    /// deadline) and are tried again after [`LEDGER_RETRY`].
    pub(super) fn ledger_wait(&mut self, now: Instant, gateway: usize, error: &LedgerError) {
        self.stats.pacing_store_errors += 1;
        tracing::debug!(gateway, %error, "request waits for the pacing store");
        self.ledger_retry = Some(now + LEDGER_RETRY);
    }

    /// Report each gateway's pacing store going down or coming back, whichever step saw it
    /// (a reservation, a renewal at the heartbeat, a completion): [`PoolEvent::PacingStore`].
    pub(super) fn report_ledger_changes(&mut self) {
        for (gateway, g) in self.gateways.iter().enumerate() {
            let failing = g.pacer.failing();
            let was_down = self.ledger_down.contains(&gateway);
            match failing {
                Some(error) if !was_down => {
                    self.ledger_down.insert(gateway);
                    self.events.push_back(PoolEvent::PacingStore {
                        gateway,
                        error: Some(error.to_string()),
                    });
                }
                None if was_down => {
                    self.ledger_down.remove(&gateway);
                    self.events.push_back(PoolEvent::PacingStore {
                        gateway,
                        error: None,
                    });
                }
                _ => {}
            }
        }
    }

    /// Renew this pool's claims in every gateway's pacing book, and take back to the queue the
    /// paced requests whose slot the book dropped (this process's claim lapsed: it was stopped,
    /// or the host slept, longer than [`PoolConfig::pacing_claim_ttl`]).
    ///
    /// [`PoolConfig::pacing_claim_ttl`]: super::PoolConfig::pacing_claim_ttl
    pub(super) fn renew_pacing(&mut self, now: Instant) {
        for gateway in 0..self.gateways.len() {
            let _ = self.renew_gateway_pacing(now, gateway, false);
        }
    }

    /// [`Pool::renew_pacing`] for one gateway. `overdue`: the claim may have lapsed and
    /// reserved requests are due (or past due): renew even if nothing else needs it, and reserve
    /// those again, since a request sent later than its slot counts later at IB than in the book.
    /// `false` when the store could not be reached.
    pub(super) fn renew_gateway_pacing(
        &mut self,
        now: Instant,
        gateway: usize,
        overdue: bool,
    ) -> bool {
        let held: Vec<ReservationId> = self
            .requests
            .values()
            .filter_map(|r| match r.state {
                ReqState::Paced {
                    gateway: g, res, ..
                }
                | ReqState::Sent { gateway: g, res }
                    if g == gateway =>
                {
                    res.shared()
                }
                _ => None,
            })
            .collect();
        let owner = self.ledger.owner().to_owned();
        let Some(g) = self.gateways.get_mut(gateway) else {
            return true;
        };
        // With nothing held and nothing of ours left in the window, there is nothing to keep.
        if !overdue && held.is_empty() && !g.pacer.needs_renewal(&owner, now) {
            return true;
        }
        let Ok(lost) = g.pacer.renew(&mut *self.ledger, now, &held) else {
            return false;
        };
        for req in self.requests.values_mut() {
            if let ReqState::Paced {
                gateway: g2,
                res,
                at,
            } = req.state
            {
                let lost = res.shared().is_some_and(|id| lost.contains(&id));
                if g2 == gateway && (lost || (overdue && at < now)) {
                    tracing::warn!(
                        lost,
                        "pacing claim lapsed or slot missed; reserving the request again"
                    );
                    if let Some(g) = self.gateways.get_mut(gateway) {
                        g.pacer.cancel(&mut *self.ledger, now, res);
                    }
                    req.state = ReqState::Queued;
                    req.delayed = false;
                }
            }
        }
        true
    }
}

/// What the pacer needs to know about a query.
///
/// Queries are typed, so this cannot misjudge one: a historical query always has one of IB's bar
/// sizes and `whatToShow` values (an unknown one could not be built), and every query kind is
/// named below, so a new kind cannot slip through as an ordinary message unnoticed.
pub fn paced(query: &Query) -> PacedRequest {
    match query {
        Query::HistoricalData(q) => PacedRequest::Historical(HistoricalRequestKey {
            contract: contract_key(&q.contract),
            exchange: q.contract.exchange.clone(),
            // Exactly the text sent (IB compares sent requests).
            end: q.end.to_string(),
            duration: q.duration.to_string(),
            bar_size: q.bar_size,
            what_to_show: q.what_to_show,
            use_rth: q.use_rth,
        }),
        Query::HeadTimestamp(q) => PacedRequest::HeadTimestamp(HeadTimestampKey {
            contract: contract_key(&q.contract),
            exchange: q.contract.exchange.clone(),
            what_to_show: q.what_to_show,
            use_rth: q.use_rth,
        }),
        Query::ContractDetails(_) => PacedRequest::ContractDetails,
        Query::Stream(q) => paced_stream(q),
        Query::CurrentTime | Query::CurrentTimeMillis | Query::MatchingSymbols(_) => {
            PacedRequest::Message
        }
    }
}

/// A stream request as the pacer sees it: keep-up-to-date bars as the historical request they
/// are; real-time bars as a 5-second historical request (IB: "≤ 60 new requests in 10 min",
/// the historical rules; identical = same contract and `whatToShow`); market data and
/// tick-by-tick only count against the message rate.
fn paced_stream(q: &StreamQuery) -> PacedRequest {
    match q {
        StreamQuery::BarUpdates(h) => {
            paced(&Query::HistoricalData(StreamQuery::bar_updates_query(h)))
        }
        StreamQuery::RealTimeBars {
            contract,
            what_to_show,
            use_rth,
        } => PacedRequest::Historical(HistoricalRequestKey {
            contract: contract_key(contract),
            exchange: contract.exchange.clone(),
            end: String::new(),
            duration: "realtime".to_owned(),
            bar_size: crate::bar_size::BarSize::Sec5,
            what_to_show: *what_to_show,
            use_rth: *use_rth,
        }),
        StreamQuery::TickByTick { contract, kind } => PacedRequest::TickByTick(TickByTickKey {
            contract: contract_key(contract),
            tick_type: kind.as_str().to_owned(),
        }),
        StreamQuery::MarketData { .. } => PacedRequest::Message,
    }
}

/// How the pacer tells contracts apart: the contract id, else symbol, type and currency plus
/// whatever selects one derivative among its siblings (expiry, strike, right, local symbol), so
/// two futures months or two strikes are not one contract to IB's per-contract rules.
fn contract_key(c: &Contract) -> String {
    if c.con_id != 0 {
        return c.con_id.to_string();
    }
    let mut key = format!("{}:{}:{}", c.symbol, c.sec_type, c.currency);
    for part in [
        c.last_trade_date_or_contract_month.clone(),
        c.strike.map(|k| k.to_string()).unwrap_or_default(),
        c.right.clone(),
        c.local_symbol.clone(),
    ] {
        if !part.is_empty() {
            key.push(':');
            key.push_str(&part);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract_spec::ContractSpec;

    #[test]
    fn derivatives_of_one_symbol_are_different_contracts_to_the_pacer() {
        let key = |s: &str| contract_key(&ContractSpec::parse(s).unwrap().to_contract());
        assert_eq!(key("AAPL"), "AAPL:STK:USD", "a stock keys as before");
        assert_ne!(key("ES:FUT:202612"), key("ES:FUT:202703"));
        assert_ne!(key("ESZ6"), key("ESH7"));
        assert_ne!(
            key("AAPL:OPT:20261218:200:C"),
            key("AAPL:OPT:20261218:205:C")
        );
        assert_eq!(key("@265598"), "265598");
    }
}
