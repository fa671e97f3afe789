//! The streaming family — market data, real-time bars and tick-by-tick — in both directions and
//! both forms. [`Request::Market`](super::Request::Market) and
//! [`Response::Market`](super::Response::Market) hand these over, so the two big enums stay one
//! line per family.

mod reply;
mod request;

pub use self::reply::{MarketReply, RealTimeBar, TickByTick};
pub use self::request::{MarketDataRequest, MarketRequest, RealTimeBarsRequest, TickByTickRequest};
