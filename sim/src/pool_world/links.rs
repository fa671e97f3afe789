//! The simulated links: scheduling deliveries with latency and jitter, carrying bytes, dials
//! and closes both ways, and draining the pools and the gateway; split out of `pool_world.rs`.

use std::time::Instant;

use ibconn_core::pool::{Io, Pool};

use crate::gateway::ConnId;

use super::{Delivery, Link, PoolWorld, Sock};
use crate::virtual_net::Lanes;

impl PoolWorld {
    /// The next instant anything is scheduled: a delivery, the gateway's or a pool's timer.
    pub(super) fn next_instant(&self) -> Option<Instant> {
        let pools = self
            .procs
            .iter()
            .filter_map(|x| x.pool.as_ref().and_then(Pool::poll_timeout));
        self.net
            .next_instant(self.gateway.poll_timeout().into_iter().chain(pools))
    }

    /// Send `what` over `sock` (`up`: toward the gateway), in order per direction while the
    /// world still tracks the socket.
    fn carry(&mut self, sock: Sock, up: bool, what: Delivery) {
        let lanes = self.links.get_mut(&sock).map(|l| &mut l.lanes);
        self.net.carry(lanes, up, what);
    }

    fn forget_if_closed(&mut self, sock: Sock) {
        if self
            .links
            .get(&sock)
            .is_some_and(|l| !l.pool_open && l.gw.is_none())
        {
            self.links.remove(&sock);
        }
    }

    /// The pool side of `sock` closes (its pool's `Io::Close`, or its process died): a FIN
    /// follows the socket's bytes to the gateway.
    pub(super) fn close_socket(&mut self, sock: Sock) {
        let name = self.sock_name(sock);
        self.log(|| format!("{name} close"));
        if let Some(trace) = &mut self.trace {
            trace.taps.remove(&sock);
        }
        let gw = self.links.get_mut(&sock).and_then(|l| {
            l.pool_open = false;
            l.gw.take()
        });
        if let Some(conn) = gw {
            self.carry(sock, true, Delivery::FinToGateway { conn });
        }
        self.forget_if_closed(sock);
    }

    /// Whether the pool side of `sock` is still open.
    fn pool_open(&self, sock: Sock) -> bool {
        self.links.get(&sock).is_some_and(|l| l.pool_open)
    }

    pub(super) fn deliver(&mut self, what: Delivery) {
        let now = self.net.now();
        match what {
            Delivery::Syn { sock } => {
                if !self.pool_open(sock) {
                    self.links.remove(&sock);
                    return;
                }
                let name = self.sock_name(sock);
                if self.gateway.is_refusing(now) {
                    self.log(|| format!("{name} refused"));
                    self.carry(sock, false, Delivery::Refused { sock });
                    return;
                }
                let conn = self.gateway.accept(now);
                self.log(|| format!("{name} accepted as {conn:?}"));
                if let Some(link) = self.links.get_mut(&sock) {
                    link.gw = Some(conn);
                }
                self.carry(sock, false, Delivery::SynAck { sock });
                self.drain_gateway();
            }
            Delivery::SynAck { sock } => {
                if self.pool_open(sock) {
                    let name = self.sock_name(sock);
                    self.log(|| format!("{name} connected"));
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_dialed(now, sock.1);
                    }
                    self.drain_pool(sock.0);
                }
            }
            Delivery::Refused { sock } => {
                if self.links.remove(&sock).is_some_and(|l| l.pool_open) {
                    let name = self.sock_name(sock);
                    self.log(|| format!("{name} connection refused"));
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_dial_failed(now, sock.1, "connection refused".to_owned());
                    }
                    self.drain_pool(sock.0);
                }
            }
            Delivery::ToGateway { conn, bytes } => {
                if let Some(sock) = self.socket_of(conn) {
                    self.tap(sock, true, &bytes);
                }
                self.gateway.handle_input(conn, now, &bytes);
                self.drain_gateway();
            }
            Delivery::ToPool { sock, bytes } => {
                if self.pool_open(sock) {
                    self.tap(sock, false, &bytes);
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_input(now, sock.1, &bytes);
                    }
                    self.drain_pool(sock.0);
                }
            }
            Delivery::FinToGateway { conn } => {
                self.log(|| format!("FIN→G {conn:?}"));
                self.gateway.handle_eof(conn, now);
                self.drain_gateway();
            }
            Delivery::FinToPool { sock } => {
                let open = self.pool_open(sock);
                if let Some(link) = self.links.get_mut(&sock) {
                    link.pool_open = false;
                }
                self.forget_if_closed(sock);
                if open {
                    let name = self.sock_name(sock);
                    self.log(|| format!("G FIN→{name}"));
                    if let Some(pool) = self.pool_mut(sock.0) {
                        pool.handle_eof(now, sock.1, None);
                    }
                    self.drain_pool(sock.0);
                }
            }
        }
    }

    /// Carry out process `p`'s socket commands and take its events.
    pub(super) fn drain_pool(&mut self, p: usize) {
        while let Some(io) = self.pool_mut(p).and_then(Pool::poll_io) {
            match io {
                Io::Dial {
                    socket,
                    addr,
                    client_id,
                } => {
                    let sock = (p, socket);
                    let name = self.sock_name(sock);
                    self.log(|| format!("{name} dial {addr} client_id={client_id}"));
                    self.links.insert(
                        sock,
                        Link {
                            gw: None,
                            pool_open: true,
                            lanes: Lanes::new(self.net.now()),
                        },
                    );
                    self.carry(sock, true, Delivery::Syn { sock });
                }
                Io::Write { socket, bytes } => {
                    let sock = (p, socket);
                    if let Some(conn) = self.links.get(&sock).and_then(|l| l.gw) {
                        self.carry(sock, true, Delivery::ToGateway { conn, bytes });
                    }
                }
                Io::Close { socket } => self.close_socket((p, socket)),
            }
        }
        while let Some(event) = self.pool_mut(p).and_then(Pool::poll_event) {
            if self.trace.is_some() {
                let line = format!("{}{}", self.who(p), self.describe_event(&event));
                self.log(|| line);
            }
            if let Some(process) = self.procs.get_mut(p) {
                process.events.push_back(event);
            }
        }
    }

    /// The socket whose gateway side is `conn`.
    fn socket_of(&self, conn: ConnId) -> Option<Sock> {
        self.links
            .iter()
            .find(|(_, l)| l.gw == Some(conn))
            .map(|(s, _)| *s)
    }

    pub(super) fn drain_gateway(&mut self) {
        let socks: Vec<(Sock, ConnId)> = self
            .links
            .iter()
            .filter_map(|(s, l)| l.gw.map(|c| (*s, c)))
            .collect();
        for (sock, conn) in socks {
            while let Some(bytes) = self.gateway.poll_transmit(conn) {
                self.carry(sock, false, Delivery::ToPool { sock, bytes });
            }
            if self.gateway.poll_close(conn) {
                if let Some(link) = self.links.get_mut(&sock) {
                    link.gw = None;
                }
                self.carry(sock, false, Delivery::FinToPool { sock });
            }
        }
    }
}
