//! The opening exchange: the client's `API\0` hello with its version range, the server's reply with
//! its chosen version and connection time, and the negotiation rule between them.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::fields::FieldReader;
use super::frame::FrameEncoder;
use super::version;

/// An inclusive range of protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version accepted.
    pub min: i32,
    /// Highest version accepted.
    pub max: i32,
}

impl VersionRange {
    /// `min..=max`.
    pub const fn new(min: i32, max: i32) -> Self {
        Self { min, max }
    }

    /// Everything this crate speaks: 100..=226 (the "wide" offer: text-era gateways connect too,
    /// but START_API can only go out after the server's hello, whose version decides its form).
    pub const fn supported() -> Self {
        Self::new(version::MIN_SUPPORTED, version::MAX_SUPPORTED)
    }

    /// The protobuf era this crate speaks: 213..=226, as `ibapi` offers. Every version in it
    /// carries START_API in the same (protobuf) form, so it can travel with the hello.
    pub const fn modern() -> Self {
        Self::new(version::PROTOBUF_REST_MESSAGES_3, version::MAX_SUPPORTED)
    }

    /// Whether `v` is inside the range.
    pub fn contains(&self, v: i32) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}..{}", self.min, self.max)
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The client hello was not `v{min}..{max}[ options]`.
    #[error("malformed client hello {text:?}")]
    MalformedHello {
        /// The text received (truncated to 64 bytes).
        text: String,
    },
    /// The server reply did not start with a version number.
    #[error("malformed server hello: {reason}")]
    MalformedReply {
        /// What was wrong.
        reason: String,
    },
    /// Client and server ranges do not overlap.
    #[error("no common protocol version: client offers {client}, server speaks {server}")]
    NoCommonVersion {
        /// What the client offered.
        client: VersionRange,
        /// What the server speaks.
        server: VersionRange,
    },
    /// The server chose a version outside what the client offered.
    #[error("server chose version {chosen}, outside the offered {offered}")]
    VersionNotOffered {
        /// The server's answer.
        chosen: i32,
        /// What we offered.
        offered: VersionRange,
    },
}

/// The client's opening bytes: `"API\0"`, then a length-prefixed `v{min}..{max}[ {options}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Offered version range.
    pub versions: VersionRange,
    /// Connect options, e.g. `+PACEAPI`; empty for none.
    pub options: String,
}

impl ClientHello {
    /// A hello offering `versions` with no connect options.
    pub fn new(versions: VersionRange) -> Self {
        Self {
            versions,
            options: String::new(),
        }
    }

    /// The version string, e.g. `v213..226` or `v100..226 +PACEAPI`.
    pub fn version_string(&self) -> String {
        if self.options.is_empty() {
            self.versions.to_string()
        } else {
            format!("{} {}", self.versions, self.options)
        }
    }

    /// Append the complete hello (prefix, length, version string) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let text = self.version_string();
        out.put_slice(b"API\0");
        // The version string is a few dozen bytes; its length always fits.
        out.put_u32(u32::try_from(text.len()).unwrap_or(u32::MAX));
        out.put_slice(text.as_bytes());
    }

    /// Parse the frame body after the `API\0` prefix (a server-side
    /// [`FrameDecoder::server`](super::FrameDecoder::server) strips the prefix and length).
    pub fn decode(body: &[u8]) -> Result<Self, HandshakeError> {
        let malformed = || HandshakeError::MalformedHello {
            text: String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned(),
        };
        let text = std::str::from_utf8(body).map_err(|_| malformed())?;
        let (range, options) = text.split_once(' ').unwrap_or((text, ""));
        let range = range.strip_prefix('v').ok_or_else(malformed)?;
        let (min, max) = match range.split_once("..") {
            Some((a, b)) => (a.parse().ok(), b.parse().ok()),
            // A single version `vN` is legal in IB's clients: min = max = N.
            None => (range.parse().ok(), range.parse().ok()),
        };
        match (min, max) {
            (Some(min), Some(max)) if min <= max => Ok(Self {
                versions: VersionRange::new(min, max),
                options: options.trim().to_owned(),
            }),
            _ => Err(malformed()),
        }
    }
}

/// The server's reply: one length-prefixed text frame `"{version}\0{connection time}\0"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The protocol version the server chose.
    pub server_version: i32,
    /// Raw connection time, `YYYYMMDD HH:MM:SS <zone>` (zone may contain spaces).
    pub connection_time: String,
}

impl ServerHello {
    /// Append the reply frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::raw_text(out, "ServerHello", |w| {
            w.i32("server_version", self.server_version)
                .str("connection_time", &self.connection_time);
        })
    }

    /// Parse a reply frame body. Extra fields after the time are ignored (as IB's clients do).
    pub fn decode(body: &Bytes) -> Result<Self, HandshakeError> {
        let mut r = FieldReader::new(body, "ServerHello");
        let err = |e: DecodeError| HandshakeError::MalformedReply {
            reason: e.to_string(),
        };
        let server_version = r.i32("server_version").map_err(err)?;
        if server_version <= 0 {
            return Err(HandshakeError::MalformedReply {
                reason: format!("server version {server_version} is not positive"),
            });
        }
        // Very old servers (< 20) sent no time; treat a missing time as empty.
        let connection_time = r.string("connection_time").unwrap_or_default();
        Ok(Self {
            server_version,
            connection_time,
        })
    }

    /// The connection time split into its parts, if it has the usual shape.
    pub fn parsed_time(&self) -> Option<ConnectionTime> {
        ConnectionTime::parse(&self.connection_time)
    }
}

/// A server connection time `YYYYMMDD HH:MM:SS <zone>` split into parts. The zone is kept as text:
/// an unknown zone (`"Foo Standard Time"`) is not an error, the caller decides what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTime {
    /// Year, month, day.
    pub date: (i32, u8, u8),
    /// Hour, minute, second.
    pub time: (u8, u8, u8),
    /// Time-zone name as sent (IANA name, abbreviation or Windows name); may be empty.
    pub zone: String,
}

impl ConnectionTime {
    /// Parse `YYYYMMDD HH:MM:SS[ zone…]`; `None` if the date or time part is malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let (date, rest) = s.split_once(' ')?;
        let (time, zone) = rest.split_once(' ').unwrap_or((rest, ""));
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year = date[..4].parse().ok()?;
        let month: u8 = date[4..6].parse().ok()?;
        let day: u8 = date[6..8].parse().ok()?;
        let mut hms = time.split(':').map(|p| p.parse::<u8>().ok());
        let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
        if hms.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        Some(Self {
            date: (year, month, day),
            time: (h, m, sec),
            zone: zone.trim().to_owned(),
        })
    }
}

/// The version a server at `server` answers to a client offering `client`: the highest common one.
pub fn negotiate(client: VersionRange, server: VersionRange) -> Result<i32, HandshakeError> {
    let hi = client.max.min(server.max);
    let lo = client.min.max(server.min);
    if lo <= hi {
        Ok(hi)
    } else {
        Err(HandshakeError::NoCommonVersion { client, server })
    }
}

/// Client-side check of the server's answer against what we offered.
pub fn check_server_choice(offered: VersionRange, chosen: i32) -> Result<i32, HandshakeError> {
    if offered.contains(chosen) {
        Ok(chosen)
    } else {
        Err(HandshakeError::VersionNotOffered { chosen, offered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FrameDecoder;

    #[test]
    fn client_hello_matches_ibapi_bytes() {
        let mut out = BytesMut::new();
        ClientHello::new(VersionRange::new(213, 226)).encode(&mut out);
        assert_eq!(&out[..], b"API\0\0\0\0\x09v213..226");

        let mut dec = FrameDecoder::server();
        dec.push(&out);
        let body = dec.next_frame().unwrap().unwrap();
        assert_eq!(
            ClientHello::decode(&body).unwrap(),
            ClientHello::new(VersionRange::new(213, 226))
        );
    }

    #[test]
    fn client_hello_with_options() {
        let h = ClientHello::decode(b"v100..226 +PACEAPI").unwrap();
        assert_eq!(h.versions, VersionRange::new(100, 226));
        assert_eq!(h.options, "+PACEAPI");
        assert_eq!(h.version_string(), "v100..226 +PACEAPI");
        assert!(ClientHello::decode(b"v226..100").is_err());
        assert!(ClientHello::decode(b"x100..200").is_err());
        assert!(ClientHello::decode(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn server_hello_round_trip_and_zones() {
        let hello = ServerHello {
            server_version: 226,
            connection_time: "20260101 12:00:00 America/New_York".into(),
        };
        let mut out = BytesMut::new();
        hello.encode(&mut out).unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 0x27]);
        let decoded = ServerHello::decode(&out.freeze().slice(4..)).unwrap();
        assert_eq!(decoded, hello);
        let t = decoded.parsed_time().unwrap();
        assert_eq!((t.date, t.time), ((2026, 1, 1), (12, 0, 0)));
        assert_eq!(t.zone, "America/New_York");

        let china = ConnectionTime::parse("20230105 22:20:39 China Standard Time").unwrap();
        assert_eq!(china.zone, "China Standard Time");
        let unknown = ConnectionTime::parse("20230105 22:20:39 Foo Standard Time").unwrap();
        assert_eq!(unknown.zone, "Foo Standard Time");
        assert!(ConnectionTime::parse("20260101-12:00:00").is_none());
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let server = VersionRange::new(100, 226);
        assert_eq!(negotiate(VersionRange::new(213, 226), server), Ok(226));
        assert_eq!(negotiate(VersionRange::new(157, 178), server), Ok(178));
        assert_eq!(negotiate(VersionRange::new(100, 300), server), Ok(226));
        assert_eq!(
            negotiate(VersionRange::new(213, 226), VersionRange::new(100, 200)),
            Err(HandshakeError::NoCommonVersion {
                client: VersionRange::new(213, 226),
                server: VersionRange::new(100, 200)
            })
        );
        assert!(check_server_choice(VersionRange::new(213, 226), 212).is_err());
    }
}
