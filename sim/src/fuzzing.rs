//! Entry point for the `sim_gateway` fuzz target (in `fuzz/`) and for replaying its corpus in
//! `cargo test`: the sans-IO gateway fed arbitrary client bytes must never panic, and whatever it
//! writes back must be well-formed frames.
#![doc(hidden)]
// Invariant violations are the point of a fuzz entry: they must abort loudly.
#![allow(clippy::panic)]

use std::time::{Duration, Instant};

use ibconn_core::wire::{FrameDecoder, MAX_FRAME_LEN};

use crate::{Gateway, GatewayConfig};

/// Two client connections fed the input in chunks (sizes and time steps taken from the input).
/// Invariants: no panic; every byte the gateway writes splits into frames under the cap; its timer
/// is never in the past after `handle_timeout`.
pub fn gateway(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    // The origin only anchors virtual time; nothing depends on its value.
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let mut gw = Gateway::new(GatewayConfig::default(), u64::from(seed));
    let conns = [gw.accept(now), gw.accept(now)];
    let mut readers = [FrameDecoder::new(), FrameDecoder::new()];
    for (i, chunk) in rest.chunks(17).enumerate() {
        let (&control, bytes) = chunk.split_first().unwrap_or((&0, &[]));
        let k = usize::from(control & 1);
        now += Duration::from_millis(u64::from(control >> 1) * 25);
        if control == 0xFF && i % 7 == 6 {
            gw.handle_eof(conns[k], now);
        } else {
            gw.handle_input(conns[k], now, bytes);
        }
        gw.handle_timeout(now);
        for (conn, reader) in conns.iter().zip(readers.iter_mut()) {
            while let Some(out) = gw.poll_transmit(*conn) {
                reader.push(&out);
            }
            let _ = gw.poll_close(*conn);
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => assert!(frame.len() <= MAX_FRAME_LEN),
                    Ok(None) => break,
                    Err(e) => panic!("gateway wrote a malformed frame: {e}"),
                }
            }
        }
        if let Some(t) = gw.poll_timeout() {
            assert!(t > now, "gateway timer in the past after handle_timeout");
        }
    }
}
