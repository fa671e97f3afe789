//! The whole pool driver, without an executor: the [`Pool`], the [`Router`] of replies, each
//! socket's queue of outgoing bytes with its write deadline, and the clock-observation cadence.
//!
//! A runtime is then sockets, one spawn and one timer: it reports what its sockets did
//! (`handle_dialed`, `handle_input`, `handle_written`, `handle_eof`, …) and users' commands
//! ([`Driver::handle_command`]), carries out [`Action`]s, writes [`Driver::outgoing`] whenever a
//! socket takes bytes, and calls [`Driver::handle_timeout`] at [`Driver::poll_timeout`] — one
//! deadline that covers the pool's timers, the clock tick and every socket's write deadline.
//! Everything that decides (which write is stuck, when the clocks are read, which caller an answer
//! goes to) is here and takes `now`, so it is tested without sockets.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use super::router::{Channels, Command, Flow, Leased, Router};
use super::types::{AcquireId, Io, SocketId};
use super::Pool;
use crate::client_id::{Purpose, UnixMillis};
use crate::connection::ConnectionError;
use crate::deadline::after;

/// Transmits queued for one socket behind a write it has not finished. Policy: a full queue
/// means the gateway stopped reading, so the connection closes with
/// [`ConnectionError::WriteQueueFull`] — never bytes dropped from the stream, never a wait. A
/// socket whose peer reads drains each transmit at once, so a healthy session stays far below.
pub const WRITE_QUEUE: usize = 1024;

/// What the runtime must do with a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to `addr` (nodelay; keepalive after `keepalive` idle), then report
    /// [`Driver::handle_dialed`] or [`Driver::handle_dial_failed`].
    Dial {
        /// The new socket.
        socket: SocketId,
        /// `host:port`.
        addr: String,
        /// TCP keepalive idle time, if any.
        keepalive: Option<Duration>,
    },
    /// Drop the socket (or abandon its dial). Everything queued for it before was written, or
    /// its write deadline passed.
    Close {
        /// The socket.
        socket: SocketId,
    },
}

/// What a deadline of the driver is for.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// One of the pool's own timers.
    Pool,
    /// The clock observation.
    Clock,
    /// A socket's stuck write.
    Write(SocketId),
}

/// One socket's unwritten transmits.
#[derive(Debug, Default)]
struct Outgoing {
    queue: VecDeque<Bytes>,
    /// Since when the front transmit has waited without progress (`None` while nothing waits).
    stalled_since: Option<Instant>,
    /// The pool closed the socket: close it once `queue` is written.
    closing: bool,
}

/// The pool's driver: see the [module docs](self).
pub struct Driver<C: Channels> {
    pool: Pool,
    router: Router<C>,
    outgoing: HashMap<SocketId, Outgoing>,
    actions: VecDeque<Action>,
    next_clock: Instant,
    /// Transmits one socket may queue ([`WRITE_QUEUE`]).
    write_queue: usize,
    /// `Client::connect`'s acquire, answered here rather than through the router.
    inline: Option<(AcquireId, Option<Leased>)>,
}

impl<C: Channels> fmt::Debug for Driver<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("router", &self.router)
            .field("sockets", &self.outgoing.len())
            .field("actions", &self.actions.len())
            .field("next_clock", &self.next_clock)
            .finish_non_exhaustive()
    }
}

impl<C: Channels> Driver<C> {
    /// Drive `pool`; the clocks are first observed at the first [`Driver::handle_timeout`].
    pub fn new(pool: Pool, now: Instant) -> Self {
        Self {
            pool,
            router: Router::new(),
            outgoing: HashMap::new(),
            actions: VecDeque::new(),
            next_clock: now,
            write_queue: WRITE_QUEUE,
            inline: None,
        }
    }

    /// A smaller [`WRITE_QUEUE`], for tests: the pool's cap on open requests keeps a real one
    /// from filling with requests alone.
    #[cfg(test)]
    fn with_write_queue(mut self, n: usize) -> Self {
        self.write_queue = n;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Start an acquire whose answer [`Driver::take_inline`] returns instead of a reply channel:
    /// `Client::connect` runs this driver in the caller's task until the session is ready.
    pub fn acquire_inline(&mut self, now: Instant, purpose: Purpose, timeout: Option<Duration>) {
        let id = self.pool.acquire(now, purpose, timeout);
        self.inline = Some((id, None));
        self.drain(now);
    }

    /// The answer to [`Driver::acquire_inline`], once.
    pub fn take_inline(&mut self) -> Option<Leased> {
        self.inline.as_mut().and_then(|(_, answer)| answer.take())
    }

    /// Apply a user's command (`None`: every handle is gone).
    pub fn handle_command(&mut self, now: Instant, cmd: Option<Command<C>>) -> Flow<C> {
        let flow = self.router.command(&mut self.pool, now, cmd);
        self.drain(now);
        flow
    }

    /// `socket` connected.
    pub fn handle_dialed(&mut self, now: Instant, socket: SocketId) {
        self.pool.handle_dialed(now, socket);
        self.drain(now);
    }

    /// `socket` could not connect.
    pub fn handle_dial_failed(&mut self, now: Instant, socket: SocketId, why: String) {
        self.outgoing.remove(&socket);
        self.pool.handle_dial_failed(now, socket, why);
        self.drain(now);
    }

    /// Bytes read from `socket`.
    pub fn handle_input(&mut self, now: Instant, socket: SocketId, bytes: &[u8]) {
        self.pool.handle_input(now, socket, bytes);
        self.drain(now);
    }

    /// `socket` saw EOF (`cause = None`) or failed; the runtime has dropped it.
    pub fn handle_eof(&mut self, now: Instant, socket: SocketId, cause: Option<String>) {
        self.outgoing.remove(&socket);
        self.pool.handle_eof(now, socket, cause);
        self.drain(now);
    }

    /// What to write to `socket` next (empty: nothing).
    pub fn outgoing(&self, socket: SocketId) -> &[u8] {
        self.outgoing
            .get(&socket)
            .and_then(|o| o.queue.front())
            .map_or(&[], |b| &b[..])
    }

    /// The socket took `n` bytes of [`Driver::outgoing`].
    pub fn handle_written(&mut self, now: Instant, socket: SocketId, n: usize) {
        let Some(out) = self.outgoing.get_mut(&socket) else {
            return;
        };
        let mut n = n;
        while n > 0 {
            let Some(front) = out.queue.front_mut() else {
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            n -= step;
            if front.is_empty() {
                out.queue.pop_front();
            }
        }
        out.stalled_since = (!out.queue.is_empty()).then_some(now);
        if out.queue.is_empty() && out.closing {
            self.outgoing.remove(&socket);
            self.actions.push_back(Action::Close { socket });
        }
    }

    /// The next socket action. Poll after every input and command until `None`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Driver::handle_timeout`] must next be called: the pool's next deadline, the next
    /// clock observation or the first socket write deadline, whichever is first.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines().map(|(_, at)| at).min()
    }

    /// Time passed: end the sessions whose socket write passed its deadline, observe the clocks
    /// when due (`clocks` reads the suspend-including clock and the wall clock), and let the pool
    /// run its timers. Spurious calls are fine.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        clocks: impl FnOnce() -> (Duration, UnixMillis),
    ) {
        let due: Vec<Due> = self
            .deadlines()
            .filter(|(_, at)| *at <= now)
            .map(|(due, _)| due)
            .collect();
        let mut clocks = Some(clocks);
        for due in due {
            match due {
                Due::Write(socket) => {
                    let limit = self.write_timeout();
                    tracing::warn!(
                        socket = socket.0,
                        ?limit,
                        "socket write timed out (the gateway stopped reading); closing the connection"
                    );
                    self.fail(now, socket, ConnectionError::WriteTimeout(limit));
                }
                Due::Clock => {
                    self.next_clock = after(now, self.pool.config().clock_interval);
                    if let Some(read) = clocks.take() {
                        let (boottime, wall) = read();
                        self.pool.observe_clocks(now, boottime, wall);
                    }
                }
                // Spurious calls are fine: the pool runs its timers below in any case.
                Due::Pool => {}
            }
        }
        self.pool.handle_timeout(now);
        self.drain(now);
    }

    /// Every deadline of the driver, each computed here once: [`Driver::poll_timeout`] takes the
    /// earliest, [`Driver::handle_timeout`] acts on the due ones.
    fn deadlines(&self) -> impl Iterator<Item = (Due, Instant)> + '_ {
        let limit = self.write_timeout();
        let pool = self.pool.poll_timeout().map(|at| (Due::Pool, at));
        let clock = (!self.pool.is_shut_down()).then_some((Due::Clock, self.next_clock));
        let writes = self.outgoing.iter().filter_map(move |(socket, out)| {
            let since = out.stalled_since?;
            Some((Due::Write(*socket), after(since, limit)))
        });
        pool.into_iter().chain(clock).chain(writes)
    }

    fn write_timeout(&self) -> Duration {
        self.pool.config().connection.write_timeout
    }

    /// Close `socket` at once (nothing more is written) and tell the pool why.
    fn fail(&mut self, now: Instant, socket: SocketId, reason: ConnectionError) {
        if self.outgoing.remove(&socket).is_some() {
            self.actions.push_back(Action::Close { socket });
        }
        self.pool.handle_socket_error(now, socket, reason);
    }

    /// Drain the pool's socket commands and events (the pool's run-loop rule): dials and closes
    /// become actions, writes join their socket's queue, answers go to their callers.
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(io) = self.pool.poll_io() {
                self.io(now, io);
            }
            let Some(event) = self.pool.poll_event() else {
                return;
            };
            let event = match self.inline.as_mut() {
                Some((id, answer)) if answer.is_none() => match event.answer_to(*id) {
                    Ok(leased) => {
                        *answer = Some(leased);
                        continue;
                    }
                    Err(other) => other,
                },
                _ => event,
            };
            self.router.event(&mut self.pool, now, event);
        }
    }

    fn io(&mut self, now: Instant, io: Io) {
        match io {
            Io::Dial { socket, addr, .. } => {
                self.outgoing.insert(socket, Outgoing::default());
                let keepalive = self.pool.config().tcp_keepalive;
                self.actions.push_back(Action::Dial {
                    socket,
                    addr,
                    keepalive,
                });
            }
            Io::Write { socket, bytes } => {
                let Some(out) = self.outgoing.get_mut(&socket) else {
                    return;
                };
                if out.queue.len() >= self.write_queue {
                    let queued = self.write_queue;
                    tracing::warn!(
                        socket = socket.0,
                        queued,
                        "socket write queue full (the gateway stopped reading); closing the connection"
                    );
                    self.fail(now, socket, ConnectionError::WriteQueueFull(queued));
                    return;
                }
                out.stalled_since.get_or_insert(now);
                out.queue.push_back(bytes);
            }
            Io::Close { socket } => match self.outgoing.get_mut(&socket) {
                Some(out) if !out.queue.is_empty() => out.closing = true,
                Some(_) => {
                    self.outgoing.remove(&socket);
                    self.actions.push_back(Action::Close { socket });
                }
                // Already closed here (its write failed).
                None => {}
            },
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
