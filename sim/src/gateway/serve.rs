//! Serving a session: frames in, the handshake, START_API, request dispatch, replies scheduled
//! and flushed, and a text client's startup sync; split out of `gateway.rs`.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ibconn_core::message::{ErrorMessage, Request, Response};
use ibconn_core::wire::{negotiate, ClientHello, Form, ServerHello};

use crate::bars::{self, BarSpec};
use crate::calendar::{self, Zone, NEW_YORK};
use crate::errors::{self, IbError};
use crate::rules::RateVerdict;

use super::{Conn, Gateway, HistState, Phase, ReplyKind, Scheduled, Stream};

impl Gateway {
    pub(super) fn handle_frame(&mut self, c: &mut Conn, now: Instant, frame: Bytes) {
        if c.phase == Phase::ExpectHello {
            self.handle_hello(c, now, &frame);
            return;
        }
        match c.rate.check(now) {
            RateVerdict::Accept => {}
            RateVerdict::Reject { notify, disconnect } => {
                if notify {
                    self.send_error(c, now, -1, errors::max_rate());
                }
                c.closing |= disconnect;
                return;
            }
        }
        let request = match Request::decode_payload(frame, c.sv()) {
            Ok(r) => r,
            Err(err) => {
                tracing::debug!(%err, "undecodable request");
                self.send_error(c, now, -1, errors::read_error());
                return;
            }
        };
        match (c.phase, request) {
            (Phase::ExpectStartApi { .. }, Request::StartApi { client_id, .. }) => {
                self.start_api(c, now, client_id);
            }
            (Phase::Ready { .. }, request) => self.serve(c, now, request),
            (_, other) => tracing::debug!(msg = other.name(), "ignored before START_API"),
        }
    }

    fn handle_hello(&mut self, c: &mut Conn, now: Instant, frame: &[u8]) {
        let hello = match ClientHello::decode(frame) {
            Ok(h) => h,
            Err(err) => {
                tracing::debug!(%err, "bad client hello; closing");
                c.closing = true;
                return;
            }
        };
        let server = self.config.versions;
        let sv = match negotiate(hello.versions, server) {
            Ok(v) => v,
            Err(_) if hello.versions.min > server.max => server.max,
            Err(err) => {
                tracing::debug!(%err, "refusing client");
                c.closing = true;
                return;
            }
        };
        let local = Zone::Us(NEW_YORK).to_local(self.unix_ms(now).div_euclid(1000));
        let reply = ServerHello {
            server_version: sv,
            connection_time: format!("{} America/New_York", calendar::format_local(local)),
        };
        if reply.encode(&mut c.out).is_err() {
            c.closing = true;
            return;
        }
        c.phase = Phase::ExpectStartApi { sv };
    }

    fn start_api(&mut self, c: &mut Conn, now: Instant, client_id: i32) {
        let held = self.held_ids.get(&client_id).is_some_and(|&t| t > now);
        if held || self.client_ids().contains(&client_id) {
            self.send_error(c, now, -1, errors::client_id_in_use());
            c.closing = true;
            return;
        }
        if self.client_ids().len() >= self.config.max_clients {
            tracing::debug!(client_id, "too many API clients; closing");
            c.closing = true;
            return;
        }
        c.phase = Phase::Ready {
            sv: c.sv(),
            client_id,
        };
        c.push(&Response::ManagedAccounts {
            accounts: self.config.accounts.clone(),
        });
        c.push(&Response::NextValidId {
            order_id: c.next_order_id,
        });
        if self.config.farm_notices {
            for notice in errors::farm_notices() {
                self.send_error(c, now, -1, notice);
            }
        }
    }

    fn serve(&mut self, c: &mut Conn, now: Instant, request: Request) {
        match request {
            Request::ReqCurrentTime => {
                let within = self.config.ignore_current_time_within;
                if c.last_current_time
                    .is_some_and(|t| now.saturating_duration_since(t) < within)
                {
                    return;
                }
                c.last_current_time = Some(now);
                let time = self.unix_ms(now).div_euclid(1000);
                c.push(&Response::CurrentTime { time });
            }
            Request::ReqCurrentTimeInMillis => {
                let millis = self.unix_ms(now);
                c.push(&Response::CurrentTimeInMillis { millis });
            }
            Request::ReqIds { .. } => c.push(&Response::NextValidId {
                order_id: c.next_order_id,
            }),
            Request::ReqManagedAccts => c.push(&Response::ManagedAccounts {
                accounts: self.config.accounts.clone(),
            }),
            Request::ReqHistoricalData(r) => self.historical(c, now, r),
            Request::CancelHistoricalData { req_id } => self.cancel_historical(c, now, req_id),
            Request::ReqHeadTimestamp(r) => self.head_timestamp(c, now, r),
            Request::Market(m) => self.serve_market(c, now, m),
            Request::CancelHeadTimestamp { req_id } => {
                c.heads.remove(&req_id);
                c.scheduled
                    .retain(|_, s| !(s.req_id == req_id && s.kind == ReplyKind::HeadTimestamp));
            }
            Request::ReqContractDetails { req_id, contract } => {
                let wall = self.unix_ms(now).div_euclid(1000);
                let found = self.config.market.find_all(&contract, wall);
                if found.is_empty() {
                    self.send_error(c, now, req_id, errors::no_security_definition());
                    return;
                }
                let market = &self.config.market;
                let mut replies: Vec<Response> = found
                    .iter()
                    .map(|inst| {
                        let (contract, details) = market.contract_details(inst, wall);
                        Response::ContractData {
                            req_id,
                            contract: Box::new(contract),
                            details: Box::new(details),
                        }
                    })
                    .collect();
                replies.push(Response::ContractDataEnd { req_id });
                self.schedule(c, now, req_id, ReplyKind::Other, replies, None);
            }
            Request::ReqMatchingSymbols { req_id, pattern } => {
                let descriptions = self.config.market.matching_symbols(&pattern);
                let reply = Response::SymbolSamples {
                    req_id,
                    descriptions,
                };
                self.schedule(c, now, req_id, ReplyKind::Other, vec![reply], None);
            }
            // Accepted and ignored, as IB does once the data has been sent.
            Request::CancelContractData { .. } | Request::StartApi { .. } => {}
            Request::Unknown {
                id,
                form: Form::Text,
                payload,
            } if c.sv() < ibconn_core::wire::version::PROTOBUF => {
                self.startup_sync(c, id, &payload);
            }
            other => tracing::debug!(msg = other.name(), "ignored request"),
        }
    }

    pub(super) fn send_error(&mut self, c: &mut Conn, now: Instant, req_id: i32, err: IbError) {
        let err = errors::localize(err, self.config.locale);
        let error_time_ms = Some(self.unix_ms(now));
        c.push(&Response::Error(ErrorMessage {
            req_id,
            code: err.code,
            message: err.text,
            advanced_order_reject_json: String::new(),
            error_time_ms,
        }));
    }

    pub(super) fn schedule(
        &mut self,
        c: &mut Conn,
        now: Instant,
        req_id: i32,
        kind: ReplyKind,
        responses: Vec<Response>,
        then_stream: Option<Stream>,
    ) {
        let jitter_ns = u64::try_from(self.config.reply_jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.latency_rng.below_or_eq(jitter_ns));
        let due = now + self.config.reply_latency + jitter;
        self.seq += 1;
        c.scheduled.insert(
            (due, self.seq),
            Scheduled {
                req_id,
                kind,
                responses,
                then_stream,
            },
        );
        match kind {
            ReplyKind::Historical => {
                c.hist.insert(req_id, HistState::Pending);
            }
            ReplyKind::HeadTimestamp => {
                c.heads.insert(req_id);
            }
            ReplyKind::Other => {}
        }
    }

    pub(super) fn flush_due(&mut self, c: &mut Conn, now: Instant) {
        let hmds_paused = self.is_data_paused(now);
        let due: Vec<(Instant, u64)> = c
            .scheduled
            .iter()
            .take_while(|((t, _), _)| *t <= now)
            .filter(|(_, s)| !(hmds_paused && s.kind.is_hmds()))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(s) = c.scheduled.remove(&key) else {
                continue;
            };
            for r in &s.responses {
                c.push(r);
            }
            if s.kind == ReplyKind::HeadTimestamp {
                c.heads.remove(&s.req_id);
            }
            if s.kind == ReplyKind::Historical {
                match s.then_stream {
                    Some(stream) => {
                        let next_update = now + self.config.update_interval;
                        c.hist.insert(
                            s.req_id,
                            HistState::Streaming {
                                stream,
                                next_update,
                            },
                        );
                        self.note_subscriptions(c);
                    }
                    None => {
                        c.hist.remove(&s.req_id);
                    }
                }
            }
        }
        // Ticks, real-time bars and tick-by-tick: the market-data farm's, not the HMDS's.
        self.flush_streams(c, now);
        if hmds_paused {
            return;
        }
        let wall = self.unix_ms(now).div_euclid(1000);
        let interval = self.config.update_interval.max(Duration::from_millis(1));
        let mut updates = Vec::new();
        for (&req_id, h) in c.hist.iter_mut() {
            if let HistState::Streaming {
                stream,
                next_update,
            } = h
            {
                if *next_update > now {
                    continue;
                }
                while *next_update <= now {
                    *next_update += interval;
                }
                let Some(inst) = self.config.market.by_con_id(stream.con_id, wall) else {
                    continue;
                };
                let spec = self.spec(&inst, stream.bar_size, stream.use_rth, stream.what, wall);
                let spec = BarSpec {
                    format_date: stream.format_date,
                    ..spec
                };
                if let Some(bar) = bars::forming_bar(&spec) {
                    updates.push(Response::HistoricalDataUpdate { req_id, bar });
                }
            }
        }
        self.counters.stream_messages += updates.len() as u64;
        for u in &updates {
            c.push(u);
        }
    }

    /// Answer a text client's startup sync with the end message of an empty paper account.
    fn startup_sync(&mut self, c: &mut Conn, id: i32, payload: &[u8]) {
        let fields: Vec<&[u8]> = payload.split(|&b| b == 0).collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let reply: Option<(i32, Vec<&[u8]>)> = match id {
            61 => Some((62, vec![b"1"])), // reqPositions → positionEnd
            5 => Some((53, vec![b"1"])),  // reqOpenOrders → openOrderEnd
            99 => Some((102, vec![])),    // reqCompletedOrders → completedOrdersEnd
            6 if field(1) == b"1" => Some((54, vec![b"1", field(2)])), // → accountDownloadEnd
            76 => Some((74, vec![b"1", field(1)])), // → accountUpdateMultiEnd
            7 => Some((55, vec![b"1", field(1)])), // reqExecutions → execDetailsEnd
            _ => None,
        };
        let Some((id, values)) = reply else {
            return tracing::debug!(id, "ignored request");
        };
        let mut body = BytesMut::new();
        for v in values {
            body.extend_from_slice(v);
            body.extend_from_slice(&[0]);
        }
        c.push(&Response::Unknown {
            id,
            form: Form::Text,
            payload: body.freeze(),
        });
    }
}
