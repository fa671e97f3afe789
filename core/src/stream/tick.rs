//! Level-1 ticks, typed: which field of the quote changed ([`TickType`]) and to what ([`Tick`]).

use std::fmt;

use crate::message::MarketReply;

/// IB's tick type number with a name for the common ones (IB's "Available Tick Types" list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TickType(pub i32);

impl TickType {
    /// Bid size.
    pub const BID_SIZE: Self = Self(0);
    /// Bid price.
    pub const BID: Self = Self(1);
    /// Ask price.
    pub const ASK: Self = Self(2);
    /// Ask size.
    pub const ASK_SIZE: Self = Self(3);
    /// Last trade price.
    pub const LAST: Self = Self(4);
    /// Last trade size.
    pub const LAST_SIZE: Self = Self(5);
    /// Day's high.
    pub const HIGH: Self = Self(6);
    /// Day's low.
    pub const LOW: Self = Self(7);
    /// Day's volume.
    pub const VOLUME: Self = Self(8);
    /// Previous close.
    pub const CLOSE: Self = Self(9);
    /// Day's open.
    pub const OPEN: Self = Self(14);
    /// Last trade time (text, epoch seconds).
    pub const LAST_TIMESTAMP: Self = Self(45);
    /// Halted (generic).
    pub const HALTED: Self = Self(49);

    /// IB's name for it (`bid`, `ask_size`, `delayed_last`, …); `tick_N` for the rest.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "bid_size",
            1 => "bid",
            2 => "ask",
            3 => "ask_size",
            4 => "last",
            5 => "last_size",
            6 => "high",
            7 => "low",
            8 => "volume",
            9 => "close",
            14 => "open",
            45 => "last_timestamp",
            49 => "halted",
            66 => "delayed_bid",
            67 => "delayed_ask",
            68 => "delayed_last",
            69 => "delayed_bid_size",
            70 => "delayed_ask_size",
            71 => "delayed_last_size",
            72 => "delayed_high",
            73 => "delayed_low",
            74 => "delayed_volume",
            75 => "delayed_close",
            76 => "delayed_open",
            88 => "delayed_last_timestamp",
            _ => "other",
        }
    }

    /// The size field a price tick of this type carries with it (bid → bid size, …), as IB's
    /// own decoders derive it.
    pub fn size_field(self) -> Option<Self> {
        match self.0 {
            1 => Some(Self(0)),
            2 => Some(Self(3)),
            4 => Some(Self(5)),
            66 => Some(Self(69)),
            67 => Some(Self(70)),
            68 => Some(Self(71)),
            _ => None,
        }
    }
}

impl fmt::Display for TickType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "other" => write!(f, "tick_{}", self.0),
            name => f.write_str(name),
        }
    }
}

/// One level-1 tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// A price, with the size IB sent with it (bid, ask and last carry one).
    Price {
        /// Which price.
        field: TickType,
        /// The price.
        price: f64,
        /// The size sent with it.
        size: Option<f64>,
        /// Bits: 1 can auto-execute, 2 past limit, 4 pre-open.
        attributes: i32,
    },
    /// A size.
    Size {
        /// Which size.
        field: TickType,
        /// The size.
        size: f64,
    },
    /// A text value (e.g. last timestamp).
    Text {
        /// Which field.
        field: TickType,
        /// The value.
        value: String,
    },
    /// A number (generic ticks, e.g. halted).
    Generic {
        /// Which field.
        field: TickType,
        /// The value.
        value: f64,
    },
}

impl Tick {
    /// The field it updates (the key under which a lagging buffer conflates it).
    pub fn field(&self) -> TickType {
        match self {
            Self::Price { field, .. }
            | Self::Size { field, .. }
            | Self::Text { field, .. }
            | Self::Generic { field, .. } => *field,
        }
    }

    /// The tick a reply carries, if it is one.
    pub fn from_reply(reply: &MarketReply) -> Option<Self> {
        Some(match reply {
            MarketReply::TickPrice {
                tick_type,
                price,
                size,
                attr_mask,
                ..
            } => Self::Price {
                field: TickType(*tick_type),
                price: *price,
                size: *size,
                attributes: *attr_mask,
            },
            MarketReply::TickSize {
                tick_type, size, ..
            } => Self::Size {
                field: TickType(*tick_type),
                size: *size,
            },
            MarketReply::TickString {
                tick_type, value, ..
            } => Self::Text {
                field: TickType(*tick_type),
                value: value.clone(),
            },
            MarketReply::TickGeneric {
                tick_type, value, ..
            } => Self::Generic {
                field: TickType(*tick_type),
                value: *value,
            },
            _ => return None,
        })
    }
}
