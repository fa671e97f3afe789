//! One Redis connection and the optimistic read-modify-write step both stores are built on.
//!
//! A step is `UNWATCH; WATCH key; TIME; GET key` in one round trip, the caller's change on the
//! decoded value, then — only if the value changed — `MULTI; SET key json PX ttl; EXEC` (the
//! expiry renewed with every write, so the state of a gateway nobody uses any more vanishes).
//! `EXEC` answers nil when another client wrote the key after our `WATCH`: the whole step is run
//! again (a bounded number of times, within a deadline). Redis' `TIME` is the clock of the step,
//! so every host judges the shared state by one clock.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::time::{Duration, Instant};

use ibconn_core::client_id::UnixMillis;
use ibconn_core::pacer::PaceTime;
use redis::{IntoConnectionInfo, Value};
use serde::Serialize;

/// How long a corrupt value moved aside is kept for inspection.
const CORRUPT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// The shortest socket timeout used (the OS rejects a zero timeout).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Why a Redis step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL does not parse or names a transport this build lacks (e.g. `rediss://`: no TLS).
    #[error("invalid redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis cannot be reached, timed out or answered with an error. After a failed write the
    /// outcome is unknown (the reply may have been lost).
    #[error("redis {store} is unavailable: {reason}")]
    Unavailable {
        /// The store ([`RedisStore::describe`]).
        store: String,
        /// What failed.
        reason: String,
    },
    /// Other clients kept changing the key: every optimistic try lost.
    #[error("redis {store}: {key} kept changing; gave up after {attempts} tries in {waited:?}")]
    Contended {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// Tries made.
        attempts: u32,
        /// Time spent.
        waited: Duration,
    },
    /// The value did not decode; it was moved to `preserved_at` (kept 7 days) so the next step
    /// starts afresh instead of failing forever.
    #[error("redis {store}: {key} is corrupt ({reason}); preserved at {preserved_at}")]
    Corrupt {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The key the bad value now lives under.
        preserved_at: String,
        /// The decode error.
        reason: String,
    },
    /// The value was written by a newer schema; it was left untouched.
    #[error("redis {store}: {key} has schema version {found}, this build supports {supported}")]
    UnsupportedSchema {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// Version found.
        found: u64,
        /// Version this build reads and writes.
        supported: u32,
    },
}

/// Connection and retry settings of a [`RedisStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prefix of every key (default `"ibconn"`): `{prefix}:pace:{gateway}`, `{prefix}:client-ids`.
    pub prefix: String,
    /// TCP connect plus handshake (AUTH/SELECT) limit (default 500 ms). Host-name resolution is
    /// not covered: use an IP address where a hung resolver matters.
    pub connect_timeout: Duration,
    /// Limit on waiting for each reply (default 500 ms).
    pub read_timeout: Duration,
    /// Limit on each write to the socket (default 500 ms).
    pub write_timeout: Duration,
    /// Optimistic tries per step before giving up with [`RedisStoreError::Contended`] (default 64).
    pub max_attempts: u32,
    /// No new try starts after this much time in one step (default 2 s).
    pub deadline: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "ibconn".to_owned(),
            connect_timeout: Duration::from_millis(500),
            read_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
            max_attempts: 64,
            deadline: Duration::from_secs(2),
        }
    }
}

/// Redis server time, as `TIME` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerTime {
    /// Whole seconds since the Unix epoch.
    pub secs: u64,
    /// Microseconds within the second.
    pub micros: u64,
}

impl ServerTime {
    /// As pacing-ledger time (nanoseconds since the Unix epoch).
    pub fn pace_time(self) -> PaceTime {
        PaceTime(
            self.secs
                .saturating_mul(1_000_000_000)
                .saturating_add(self.micros.saturating_mul(1_000)),
        )
    }

    /// As client-id registry time (milliseconds since the Unix epoch).
    pub fn unix_millis(self) -> UnixMillis {
        UnixMillis(
            self.secs
                .saturating_mul(1_000)
                .saturating_add(self.micros / 1_000),
        )
    }
}

/// A stored value that could not be decoded.
#[derive(Debug)]
pub(crate) enum Undecodable {
    /// Not the expected JSON (or not a string at all): move it aside.
    Corrupt(String),
    /// A schema version this build does not know: leave it alone.
    Schema {
        /// Version found.
        found: u64,
        /// Version supported.
        supported: u32,
    },
}

/// How a step reads, creates and expires its value.
pub(crate) struct Codec<'a, S> {
    /// Parses the stored bytes.
    pub(crate) decode: &'a dyn Fn(&[u8]) -> Result<S, Undecodable>,
    /// The value when the key does not exist (stored by the step even if unchanged), given the
    /// time and the earliest time an earlier value can have been lost (when the server started,
    /// or now if this step moved a corrupt value aside).
    pub(crate) fresh: &'a dyn Fn(ServerTime, ServerTime) -> S,
    /// Expiry renewed with every write.
    pub(crate) ttl: Duration,
}

/// What `GET` found.
enum Found {
    Missing,
    Bytes(Vec<u8>),
    /// Not a string (`WRONGTYPE`).
    WrongType,
}

/// A Redis server reached through one lazily opened connection. A failed call drops the
/// connection; the next call opens a new one (so a restarted Redis is picked up). Clones share
/// the URL and options but each opens its own connection.
pub struct RedisStore {
    url: String,
    client: redis::Client,
    options: RedisOptions,
    conn: Option<redis::Connection>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("options", &self.options)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Clone for RedisStore {
    fn clone(&self) -> Self {
        Self {
            url: self.url.clone(),
            client: self.client.clone(),
            options: self.options.clone(),
            conn: None,
        }
    }
}

impl RedisStore {
    /// A store at `url` (`redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`) with default options.
    /// Does not connect: the first step does.
    pub fn open(url: &str) -> Result<Self, RedisStoreError> {
        Self::with_options(url, RedisOptions::default())
    }

    /// A store at `url` with `options`. Does not connect.
    pub fn with_options(url: &str, options: RedisOptions) -> Result<Self, RedisStoreError> {
        let redacted = redact_url(url);
        let invalid = |e: redis::RedisError| RedisStoreError::InvalidUrl {
            url: redacted.clone(),
            reason: e.to_string(),
        };
        let info = url.into_connection_info().map_err(invalid)?;
        // No `CLIENT SETINFO` on connect: one round trip less that a hung server could stall.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(invalid)?;
        Ok(Self {
            url: redacted,
            client,
            options,
            conn: None,
        })
    }

    /// The URL with any password replaced by `***`, for messages and status.
    pub fn describe(&self) -> &str {
        &self.url
    }

    /// The options in force.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// `{prefix}:{name}`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.options.prefix)
    }

    /// Redis' clock now (one round trip).
    pub fn server_time(&mut self) -> Result<ServerTime, RedisStoreError> {
        let reply = self.command(&redis::cmd("TIME"))?;
        redis::from_redis_value::<(u64, u64)>(reply)
            .map(|(secs, micros)| ServerTime { secs, micros })
            .map_err(|e| self.unavailable(&ReadError::Reply(format!("TIME: {e}"))))
    }

    /// Deletes `key` (tests, and operators resetting a gateway's book).
    pub fn delete(&mut self, key: &str) -> Result<(), RedisStoreError> {
        self.command(redis::cmd("DEL").arg(key)).map(drop)
    }

    /// One command, one reply within the read timeout.
    fn command(&mut self, cmd: &redis::Cmd) -> Result<Value, RedisStoreError> {
        let read_timeout = self.options.read_timeout;
        let conn = self.connection()?;
        let reply = exchange(conn, &cmd.get_packed_command(), 1, read_timeout)
            .and_then(|replies| {
                replies
                    .into_iter()
                    .next()
                    .ok_or_else(|| ReadError::Reply("no reply".to_owned()))
            })
            .and_then(|reply| match reply {
                Value::ServerError(e) => Err(server_error("command", &e)),
                reply => Ok(reply),
            });
        reply.map_err(|e| self.unavailable(&e))
    }

    /// One atomic read-modify-write of the JSON value at `key` (see the module docs). `op` may be
    /// called more than once; only the last call's change is stored and its result returned.
    pub(crate) fn transact<S, T>(
        &mut self,
        key: &str,
        codec: &Codec<'_, S>,
        op: &mut dyn FnMut(&mut S, ServerTime) -> T,
    ) -> Result<T, RedisStoreError>
    where
        S: Serialize,
    {
        let start = Instant::now();
        let mut attempts = 0_u32;
        let mut reconnected = false;
        let mut moved_aside = false;
        loop {
            attempts += 1;
            let reused = self.conn.is_some();
            let (time, found) = match self.read(key) {
                Ok(read) => read,
                Err(e) => {
                    // A connection that sat idle may have died with a Redis restart: one
                    // immediate reconnect (reads have no effects, so redoing them is safe).
                    if reused && !reconnected && e.is_connection_dropped() {
                        reconnected = true;
                        attempts -= 1;
                        self.conn = None;
                        continue;
                    }
                    return Err(self.unavailable(&e));
                }
            };
            let bytes = match found {
                Found::Missing => None,
                Found::Bytes(bytes) => Some(bytes),
                Found::WrongType => {
                    let reason = "not a string value (WRONGTYPE)".to_owned();
                    self.move_aside(key, time, reason)?;
                    moved_aside = true;
                    self.pause_or_give_up(key, start, attempts)?;
                    continue;
                }
            };
            let stored = match bytes.as_deref().map(codec.decode).transpose() {
                Ok(stored) => stored,
                Err(Undecodable::Corrupt(reason)) => {
                    self.move_aside(key, time, reason)?;
                    moved_aside = true;
                    self.pause_or_give_up(key, start, attempts)?;
                    continue;
                }
                Err(Undecodable::Schema { found, supported }) => {
                    return Err(RedisStoreError::UnsupportedSchema {
                        store: self.url.clone(),
                        key: key.to_owned(),
                        found,
                        supported,
                    });
                }
            };
            // Changed means "serializes differently": a new value is always stored.
            let (mut state, before) = match stored {
                Some(state) => {
                    let before = self.encode(&state)?;
                    (state, Some(before))
                }
                None => {
                    let lost_since = if moved_aside {
                        time
                    } else {
                        self.started(time)
                    };
                    ((codec.fresh)(time, lost_since), None)
                }
            };
            let out = op(&mut state, time);
            let after = self.encode(&state)?;
            if before.as_ref() == Some(&after) {
                return Ok(out);
            }
            match self.write(key, &after, codec.ttl) {
                Ok(true) => return Ok(out),
                Ok(false) => self.pause_or_give_up(key, start, attempts)?,
                Err(e) => return Err(self.unavailable(&e)),
            }
        }
    }

    /// When the server started (`INFO server`'s uptime before `time`): a missing key cannot
    /// have been lost by a restart earlier than that. `time` itself if the server will not say.
    fn started(&mut self, time: ServerTime) -> ServerTime {
        let read_timeout = self.options.read_timeout;
        let Ok(conn) = self.connection() else {
            return time;
        };
        let packed = redis::cmd("INFO").arg("server").get_packed_command();
        let uptime = exchange(conn, &packed, 1, read_timeout)
            .ok()
            .and_then(|mut replies| replies.pop())
            .and_then(|reply| redis::from_redis_value::<String>(reply).ok())
            .and_then(|info| uptime_secs(&info));
        match uptime {
            Some(up) => ServerTime {
                secs: time.secs.saturating_sub(up),
                micros: time.micros,
            },
            None => time,
        }
    }

    fn encode<S: Serialize>(&self, state: &S) -> Result<Vec<u8>, RedisStoreError> {
        serde_json::to_vec(state).map_err(|e| RedisStoreError::Unavailable {
            store: self.url.clone(),
            reason: format!("cannot encode the value: {e}"),
        })
    }

    /// `UNWATCH; WATCH key; TIME; GET key` in one round trip.
    fn read(&mut self, key: &str) -> Result<(ServerTime, Found), ReadError> {
        let read_timeout = self.options.read_timeout;
        let conn = self.connection().map_err(ReadError::Store)?;
        let packed = redis::pipe()
            .cmd("UNWATCH")
            .cmd("WATCH")
            .arg(key)
            .cmd("TIME")
            .cmd("GET")
            .arg(key)
            .get_packed_pipeline();
        let replies = exchange(conn, &packed, 4, read_timeout)?;
        let [unwatch, watch, time, get] = <[Value; 4]>::try_from(replies)
            .map_err(|r| ReadError::Reply(format!("{} replies instead of 4", r.len())))?;
        for (name, reply) in [("UNWATCH", unwatch), ("WATCH", watch)] {
            if let Value::ServerError(e) = reply {
                return Err(server_error(name, &e));
            }
        }
        let (secs, micros) = redis::from_redis_value::<(u64, u64)>(time)
            .map_err(|e| ReadError::Reply(format!("TIME: {e}")))?;
        let found = match get {
            Value::Nil => Found::Missing,
            Value::BulkString(bytes) => Found::Bytes(bytes),
            Value::ServerError(e) if e.code() == "WRONGTYPE" => Found::WrongType,
            Value::ServerError(e) => return Err(server_error("GET", &e)),
            other => return Err(ReadError::Reply(format!("GET: unexpected {other:?}"))),
        };
        Ok((ServerTime { secs, micros }, found))
    }

    /// `MULTI; SET key value PX ttl; EXEC`: `Ok(false)` if the watched key changed.
    fn write(&mut self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, ReadError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis(ttl));
        self.exec_watched(&pipe)
    }

    /// Runs an atomic (`MULTI`/`EXEC`) pipeline on the connection holding the watch:
    /// `Ok(false)` when `EXEC` answered nil (a watched key changed).
    fn exec_watched(&mut self, pipe: &redis::Pipeline) -> Result<bool, ReadError> {
        let read_timeout = self.options.read_timeout;
        let conn = self.connection().map_err(ReadError::Store)?;
        // MULTI's OK, one QUEUED per command, EXEC's answer.
        let replies = exchange(
            conn,
            &pipe.get_packed_pipeline(),
            pipe.len() + 2,
            read_timeout,
        )?;
        let mut replies = replies.into_iter();
        let exec = replies.next_back();
        if let Some(Value::ServerError(e)) = replies.find(|r| matches!(r, Value::ServerError(_))) {
            return Err(server_error("MULTI", &e));
        }
        match exec {
            Some(Value::Nil) => Ok(false),
            Some(Value::Array(results)) => match results.into_iter().find_map(|r| match r {
                Value::ServerError(e) => Some(e),
                _ => None,
            }) {
                Some(e) => Err(server_error("EXEC", &e)),
                None => Ok(true),
            },
            Some(Value::ServerError(e)) => Err(server_error("EXEC", &e)),
            other => Err(ReadError::Reply(format!("EXEC: unexpected {other:?}"))),
        }
    }

    /// Moves the undecodable value at `key` to `{key}:corrupt-{ms}` (under the watch, so only the
    /// value we saw) and reports it. `Ok(())` means another client changed the key first: retry.
    fn move_aside(
        &mut self,
        key: &str,
        time: ServerTime,
        reason: String,
    ) -> Result<(), RedisStoreError> {
        let preserved_at = format!("{key}:corrupt-{}", time.unix_millis().0);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("RENAME")
            .arg(key)
            .arg(&preserved_at)
            .cmd("PEXPIRE")
            .arg(&preserved_at)
            .arg(millis(CORRUPT_KEEP));
        match self.exec_watched(&pipe) {
            Ok(false) => Ok(()),
            Ok(true) => {
                tracing::warn!(
                    store = %self.url,
                    key,
                    preserved_at = %preserved_at,
                    reason = %reason,
                    "corrupt value moved aside"
                );
                Err(RedisStoreError::Corrupt {
                    store: self.url.clone(),
                    key: key.to_owned(),
                    preserved_at,
                    reason,
                })
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    /// After a lost optimistic try: wait a little (jittered, so contenders spread out) or give up.
    fn pause_or_give_up(
        &self,
        key: &str,
        start: Instant,
        attempts: u32,
    ) -> Result<(), RedisStoreError> {
        let waited = start.elapsed();
        let left = self.options.deadline.saturating_sub(waited);
        if attempts >= self.options.max_attempts || left.is_zero() {
            return Err(RedisStoreError::Contended {
                store: self.url.clone(),
                key: key.to_owned(),
                attempts,
                waited,
            });
        }
        let cap_us = 100_u64 << attempts.min(7); // 0.2 ms … 12.8 ms
        let jitter_us = RandomState::new().hash_one(attempts) % cap_us;
        std::thread::sleep(Duration::from_micros(jitter_us).min(left));
        Ok(())
    }

    /// The open connection, or a new one with the configured timeouts.
    fn connection(&mut self) -> Result<&mut redis::Connection, RedisStoreError> {
        if self.conn.is_none() {
            let opts = &self.options;
            let opened = self
                .client
                .get_connection_with_timeout(opts.connect_timeout.max(MIN_TIMEOUT))
                .and_then(|conn| {
                    conn.set_read_timeout(Some(opts.read_timeout.max(MIN_TIMEOUT)))?;
                    conn.set_write_timeout(Some(opts.write_timeout.max(MIN_TIMEOUT)))?;
                    Ok(conn)
                });
            match opened {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => {
                    return Err(RedisStoreError::Unavailable {
                        store: self.url.clone(),
                        reason: format!("connect: {e}"),
                    })
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| RedisStoreError::Unavailable {
                store: self.url.clone(),
                reason: "no connection".to_owned(),
            })
    }

    /// Drops the connection after an error and describes it.
    fn unavailable(&mut self, e: &ReadError) -> RedisStoreError {
        self.conn = None;
        match e {
            ReadError::Store(e) => e.clone(),
            ReadError::Redis(e) => RedisStoreError::Unavailable {
                store: self.url.clone(),
                reason: e.to_string(),
            },
            ReadError::Reply(reason) => RedisStoreError::Unavailable {
                store: self.url.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// A failure inside one step, before it is reported.
#[derive(Debug)]
enum ReadError {
    /// Could not connect.
    Store(RedisStoreError),
    /// The client or server failed.
    Redis(redis::RedisError),
    /// The reply was not what the commands return.
    Reply(String),
}

impl ReadError {
    fn is_connection_dropped(&self) -> bool {
        matches!(self, Self::Redis(e) if e.is_connection_dropped() && !e.is_timeout())
    }
}

/// Sends `packed` and reads `replies` answers, all within `read_timeout` (the client library
/// would wait a full timeout for each answer after the first failed; this stops at the first).
fn exchange(
    conn: &mut redis::Connection,
    packed: &[u8],
    replies: usize,
    read_timeout: Duration,
) -> Result<Vec<Value>, ReadError> {
    conn.send_packed_command(packed).map_err(ReadError::Redis)?;
    let deadline = Instant::now() + read_timeout.max(MIN_TIMEOUT);
    let mut out = Vec::with_capacity(replies);
    while out.len() < replies {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let timeout =
                io::Error::new(io::ErrorKind::TimedOut, "no reply within the read timeout");
            return Err(ReadError::Redis(timeout.into()));
        }
        conn.set_read_timeout(Some(left.max(MIN_TIMEOUT)))
            .map_err(ReadError::Redis)?;
        match conn.recv_response().map_err(ReadError::Redis)? {
            Value::Push { .. } => {}
            reply => out.push(reply),
        }
    }
    Ok(out)
}

/// `uptime_in_seconds` from an `INFO server` reply.
fn uptime_secs(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
        .and_then(|v| v.trim().parse().ok())
}

fn server_error(command: &str, e: &redis::ServerError) -> ReadError {
    ReadError::Reply(format!(
        "{command}: {} {}",
        e.code(),
        e.details().unwrap_or_default()
    ))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `url` with the password (and any `pass`/`password` query value) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***{host}"),
                None => format!("***{host}"),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k == "pass" || k == "password" => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::uptime_secs;

    #[test]
    fn uptime_is_read_from_info_server() {
        let info =
            "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:4211\r\nuptime_in_days:0\r\n";
        assert_eq!(uptime_secs(info), Some(4211));
        assert_eq!(uptime_secs("# Server\r\n"), None);
    }

    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:s3cret@host:6379"),
            "redis://user:***@host:6379"
        );
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
    }

    #[test]
    fn server_time_converts_to_both_clocks() {
        let t = ServerTime {
            secs: 1_700_000_000,
            micros: 123_456,
        };
        assert_eq!(t.pace_time(), PaceTime(1_700_000_000_123_456_000));
        assert_eq!(t.unix_millis(), UnixMillis(1_700_000_000_123));
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        let err = RedisStore::open("http://user:s3cret@host/").err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("invalid redis URL"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
