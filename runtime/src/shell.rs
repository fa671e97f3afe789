//! The driver's loop: the core's [`Driver`] plus the sockets and the timer it asks for, polled in
//! turns from one task. Each turn takes what is ready from every source in a fixed order —
//! commands, then each socket (its dial, its writes, one read), then the timer — so no source
//! starves another, and a turn that found nothing leaves every source's waker registered.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_channel::Receiver;
use futures_channel::oneshot;
use futures_core::Stream;
use ibconn_core::client_id::Purpose;
use ibconn_core::pool::{Action, Driver, Flow, Leased, Pool as CorePool, SocketId};

use crate::clock::clocks;
use crate::handles::{Async, Cmd};
use crate::net::configure;
use crate::{Dialing, Runtime, Socket};

/// Passes per wake-up before the driver yields to the executor (it wakes itself at once).
const TURNS: usize = 64;
/// Commands taken per pass.
const BATCH: usize = 64;
/// The read buffer starts this small (an idle session reads little)…
const READ_BUFFER_MIN: usize = 4 * 1024;
/// …and doubles, up to this, each time a read fills it (bulk answers: fewer, larger reads).
const READ_BUFFER_MAX: usize = 64 * 1024;

enum Link<S> {
    Dialing(Dialing<S>),
    Open(S),
}

/// The driver with its sockets and timer.
pub(crate) struct Shell<R: Runtime> {
    driver: Driver<Async>,
    links: HashMap<SocketId, Link<R::Socket>>,
    /// Scratch list of the sockets polled in a pass.
    ids: Vec<SocketId>,
    timer: Option<R::Timer>,
    /// The instant `timer` is set to; `None` after it fired (so it is set again, even to the
    /// same instant).
    armed: Option<Instant>,
    buf: Vec<u8>,
}

impl<R: Runtime> Shell<R> {
    pub(crate) fn new(pool: CorePool) -> Self {
        Self {
            driver: Driver::new(pool, Instant::now()),
            links: HashMap::new(),
            ids: Vec::new(),
            timer: None,
            armed: None,
            buf: vec![0; READ_BUFFER_MIN],
        }
    }

    /// Run until the acquire of `purpose` is answered, in the caller's task: the handshake
    /// without a task or channel hop between the caller and its socket.
    pub(crate) async fn acquire_inline(&mut self, purpose: Purpose) -> Leased {
        self.driver.acquire_inline(Instant::now(), purpose, None);
        poll_fn(|cx| {
            let _ = self.poll_turns(cx, None);
            self.driver.take_inline().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    /// Shut the pool down (nothing was handed out).
    pub(crate) fn abandon(mut self) {
        let _ = self.driver.handle_command(Instant::now(), None);
    }

    /// Run as the pool's task until it stops, then answer the shutdown call (if any).
    pub(crate) async fn run(mut self, cmds: Receiver<Cmd>) {
        let mut cmds = Box::pin(cmds);
        let stop = poll_fn(|cx| self.poll_turns(cx, Some(cmds.as_mut()))).await;
        // What the shutdown queued (e.g. cancels) goes out if the sockets take it now.
        poll_fn(|cx| {
            self.write_all(cx);
            Poll::Ready(())
        })
        .await;
        drop(self);
        // Refuse later commands and drop queued ones, so their callers see `Closed`: the channel
        // keeps queued messages (and their reply senders) while any sender lives.
        cmds.close();
        while cmds.try_recv().is_ok() {}
        if let Some(reply) = stop {
            let _ = reply.send(());
        }
    }

    /// Turns until nothing is ready (`Pending`, every waker registered) or a command stops the
    /// pool (`Ready` with the shutdown call's reply, if any).
    fn poll_turns(
        &mut self,
        cx: &mut Context<'_>,
        mut cmds: Option<Pin<&mut Receiver<Cmd>>>,
    ) -> Poll<Option<oneshot::Sender<()>>> {
        for _ in 0..TURNS {
            let mut busy = false;
            if let Some(rx) = cmds.as_mut() {
                for _ in 0..BATCH {
                    let Poll::Ready(cmd) = rx.as_mut().poll_next(cx) else {
                        break;
                    };
                    busy = true;
                    if let Flow::Stop(reply) = self.driver.handle_command(Instant::now(), cmd) {
                        self.act();
                        return Poll::Ready(reply);
                    }
                }
            }
            self.act();
            busy |= self.poll_links(cx);
            self.act();
            busy |= self.poll_timer(cx);
            if !busy {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Carry out the driver's socket actions.
    fn act(&mut self) {
        while let Some(action) = self.driver.poll_action() {
            match action {
                Action::Dial {
                    socket,
                    addr,
                    keepalive,
                } => {
                    let link = Link::Dialing(dial::<R>(addr, keepalive));
                    self.links.insert(socket, link);
                }
                Action::Close { socket } => drop(self.links.remove(&socket)),
            }
        }
    }

    fn poll_links(&mut self, cx: &mut Context<'_>) -> bool {
        let mut busy = false;
        self.ids.clear();
        self.ids.extend(self.links.keys().copied());
        for i in 0..self.ids.len() {
            busy |= self.poll_link(cx, self.ids[i]);
        }
        busy
    }

    /// One socket: its dial, or its queued writes and one read.
    fn poll_link(&mut self, cx: &mut Context<'_>, id: SocketId) -> bool {
        let stream = match self.links.get_mut(&id) {
            None => return false,
            Some(Link::Open(stream)) => stream,
            Some(link @ Link::Dialing(_)) => {
                let Link::Dialing(dial) = link else {
                    return false;
                };
                match dial.as_mut().poll(cx) {
                    Poll::Pending => return false,
                    Poll::Ready(Ok(stream)) => {
                        *link = Link::Open(stream);
                        self.driver.handle_dialed(Instant::now(), id);
                    }
                    Poll::Ready(Err(e)) => {
                        self.links.remove(&id);
                        self.driver
                            .handle_dial_failed(Instant::now(), id, e.to_string());
                    }
                }
                return true;
            }
        };
        let mut busy = false;
        loop {
            let out = self.driver.outgoing(id);
            if out.is_empty() {
                break;
            }
            match stream.poll_write(cx, out) {
                Poll::Pending => break,
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.driver.handle_written(Instant::now(), id, n);
                    busy = true;
                }
                Poll::Ready(failed) => {
                    let why =
                        failed.map_or_else(|e| e.to_string(), |_| "socket took no bytes".into());
                    self.links.remove(&id);
                    self.driver.handle_eof(Instant::now(), id, Some(why));
                    return true;
                }
            }
        }
        match stream.poll_read(cx, &mut self.buf) {
            Poll::Pending => busy,
            Poll::Ready(Ok(n)) if n > 0 => {
                self.driver.handle_input(Instant::now(), id, &self.buf[..n]);
                if n == self.buf.len() && n < READ_BUFFER_MAX {
                    self.buf.resize(n * 2, 0);
                }
                true
            }
            Poll::Ready(end) => {
                self.links.remove(&id);
                let cause = end.err().map(|e| e.to_string());
                self.driver.handle_eof(Instant::now(), id, cause);
                true
            }
        }
    }

    /// Whatever each open socket takes now of its queue, without waiting.
    fn write_all(&mut self, cx: &mut Context<'_>) {
        for (id, link) in &mut self.links {
            let Link::Open(stream) = link else { continue };
            loop {
                let out = self.driver.outgoing(*id);
                if out.is_empty() {
                    break;
                }
                match stream.poll_write(cx, out) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.driver.handle_written(Instant::now(), *id, n);
                    }
                    _ => break,
                }
            }
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.driver.poll_timeout() else {
            return false;
        };
        if at > Instant::now() {
            let timer = match self.timer.as_mut() {
                Some(timer) => {
                    if self.armed != Some(at) {
                        R::reset(timer, at);
                    }
                    timer
                }
                None => self.timer.insert(R::timer(at)),
            };
            self.armed = Some(at);
            if Pin::new(timer).poll(cx).is_pending() {
                return false;
            }
            self.armed = None;
        }
        self.driver.handle_timeout(Instant::now(), clocks);
        true
    }
}

/// Dial `addr` and set the socket's options.
fn dial<R: Runtime>(addr: String, keepalive: Option<Duration>) -> Dialing<R::Socket> {
    let connect = R::dial(addr);
    Box::pin(async move {
        let stream = connect.await?;
        configure(stream.sock(), keepalive);
        Ok(stream)
    })
}
