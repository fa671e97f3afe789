//! What the HTTP benches share: a keep-alive HTTP/1.1 client connection, sequential timed GETs
//! and their percentiles.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

impl Conn {
    /// A connection to `addr` that will `GET path`.
    pub(crate) fn open(addr: &str, path: &str) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        Self {
            reader: BufReader::new(s),
            request,
            body: Vec::new(),
        }
    }

    /// Send the request, read the whole response; returns the status.
    pub(crate) fn get(&mut self) -> u16 {
        self.reader
            .get_mut()
            .write_all(&self.request)
            .expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.expect("content-length (no chunked bodies here)");
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).expect("body");
        status
    }
}

/// Latency percentiles of a set of request times.
pub(crate) struct Percentiles {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Percentiles {
    pub(crate) fn of(mut times: Vec<Duration>) -> Self {
        times.sort_unstable();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: times[times.len() - 1],
        }
    }
}

/// `n` sequential GETs on `conn`, their times appended to `times`.
pub(crate) fn measure(conn: &mut Conn, n: usize, times: &mut Vec<Duration>) {
    for _ in 0..n {
        let start = Instant::now();
        let status = conn.get();
        times.push(start.elapsed());
        assert!(status == 200, "answered {status}");
    }
}

/// A duration in microseconds.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
