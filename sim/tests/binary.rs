//! The `ibconn-sim` binary: one ready line, a working port, a clean exit on SIGTERM, a pinned
//! clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![cfg(all(unix, feature = "tcp"))]
// Tests and benches start from a real instant, wait on real processes or use maps freely:
// the sim's determinism rules are for the library.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn prints_listening_line_serves_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ibconn-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "9",
            "--server-version",
            "222",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_owned();

    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"API\0\0\0\0\x09v213..226").unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    assert!(body.starts_with(b"222\0"), "{body:?}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ibconn-sim did not exit on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--wall-clock` pins the gateway's clock (its hello tells the time, New York); a malformed
/// value is a usage error (exit 2).
#[test]
fn wall_clock_pins_the_gateways_time() {
    let bad = Command::new(env!("CARGO_BIN_EXE_ibconn-sim"))
        .args(["--listen", "127.0.0.1:0", "--wall-clock", "tomorrow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--wall-clock"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_ibconn-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--wall-clock",
            "20260106-15:00:00",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect(&line);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"API\0\0\0\0\x09v213..226").unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let hello = String::from_utf8_lossy(&body);
    assert!(hello.starts_with("226\x0020260106 10:00:0"), "{hello:?}");
    child.kill().unwrap();
    let _ = child.wait();
}
