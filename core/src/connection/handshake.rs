//! The handshake after the client's hello: the server's hello (version checks, START_API unless
//! it was pipelined) and the startup burst (next valid id and accounts) that makes the session ready.

use std::time::Instant;

use bytes::Bytes;

use super::{Connection, ConnectionError, Event, RequestError, State};
use crate::message::Request;
use crate::wire::{check_server_choice, ServerHello};

impl Connection {
    pub(super) fn handle_server_hello(&mut self, now: Instant, body: &Bytes) {
        let hello = match ServerHello::decode(body) {
            Ok(h) => h,
            Err(e) => return self.fail(e.into()),
        };
        if hello.server_version < self.offered.min {
            return self.fail(ConnectionError::VersionBelowOffer {
                offered_min: self.offered.min,
                server: hello.server_version,
            });
        }
        match check_server_choice(self.offered, hello.server_version) {
            Ok(v) => self.server_version = v,
            Err(e) => return self.fail(e.into()),
        }
        tracing::debug!(
            server_version = self.server_version,
            time = %hello.connection_time,
            "server hello; starting API"
        );
        if !self.start_api_sent {
            self.start_api_sent = true;
            let start = Request::StartApi {
                client_id: self.cfg.client_id,
                optional_capabilities: String::new(),
            };
            self.write(now, &start);
        }
        self.state = State::ExpectStartup {
            next_valid_id: None,
            accounts: None,
            connection_time: hello.connection_time,
        };
    }

    pub(super) fn maybe_ready(&mut self, now: Instant) {
        let State::ExpectStartup {
            next_valid_id: Some(next_valid_id),
            accounts: Some(accounts),
            connection_time,
        } = &self.state
        else {
            return;
        };
        let event = Event::Connected {
            server_version: self.server_version,
            connection_time: connection_time.clone(),
            next_valid_id: *next_valid_id,
            accounts: accounts
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        self.state = State::Ready;
        self.stats.handshake_us =
            Some(now.saturating_duration_since(self.started).as_micros() as u64);
        tracing::info!(
            client_id = self.cfg.client_id,
            server_version = self.server_version,
            "connected"
        );
        self.events.push_back(event);
        while let Some((id, query, _, deadline)) = self.queued.pop_front() {
            match self.to_request(id, &query).form(self.server_version) {
                Ok(_) => self.dispatch(now, id, query, deadline),
                Err(e) => self.complete(id, Err(RequestError::Unsupported(e))),
            }
        }
    }
}
