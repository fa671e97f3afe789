//! A tour of the wire codec: the bytes ibconn puts on the socket for a handshake and a
//! historical-data request, in the protobuf form (server 226) and the text form (server 176), and
//! the same bytes decoded back.
//!
//! Run: `cargo run -p ibconn-core --example wire_tour`

use bytes::BytesMut;
use ibconn_core::message::{Contract, HistoricalDataRequest, Request};
use ibconn_core::wire::{ClientHello, FrameDecoder, VersionRange};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = BytesMut::new();
    ClientHello::new(VersionRange::new(100, 226)).encode(&mut out);
    println!("client hello          {}", hex(&out));

    let request = Request::ReqHistoricalData(HistoricalDataRequest {
        req_id: 7,
        contract: Contract::stock("AAPL"),
        end_date_time: "20251231 21:00:00 UTC".into(),
        bar_size: "1 hour".into(),
        duration: "2 D".into(),
        use_rth: true,
        what_to_show: "TRADES".into(),
        format_date: 2,
        ..HistoricalDataRequest::default()
    });
    for server_version in [226, 176] {
        let mut frame = BytesMut::new();
        request.encode(server_version, &mut frame)?;
        println!(
            "historical @ v{server_version} ({:?}) {}",
            request.form(server_version)?,
            hex(&frame)
        );
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame);
        let body = decoder.next_frame()?.ok_or("incomplete frame")?;
        let decoded = Request::decode_payload(body, server_version)?;
        println!("  decodes back equal: {}", decoded == request);
        if decoded != request {
            return Err("round trip mismatch".into());
        }
    }
    Ok(())
}
