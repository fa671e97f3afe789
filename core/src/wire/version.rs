//! Named server versions (IB's `MIN_SERVER_VER_*`) that change the wire layout of a message we speak.
//!
//! The server version is a plain `i32` as on the wire; these constants name the thresholds.

/// Oldest server version of the length-prefixed ("V100+") protocol; the lowest this crate speaks.
pub const MIN_SUPPORTED: i32 = 100;
/// Newest server version this crate knows (`CONDITIONS_INCLUDE_OVERNIGHT`, IB Java `MAX_VERSION`).
pub const MAX_SUPPORTED: i32 = 226;

/// `reqHistoricalData` sent with an explicit PRIMARY exchange field.
pub const PRIMARYEXCH: i32 = 75;
/// `optionalCapabilities` field in START_API.
pub const OPTIONAL_CAPABILITIES: i32 = 72;
/// `chartOptions` field in historical requests.
pub const LINKING: i32 = 70;
/// `mdSizeMultiplier` appears in contract data (until `SIZE_RULES`).
pub const MD_SIZE_MULTIPLIER: i32 = 110;
/// Contract data carries `aggGroup`.
pub const AGG_GROUP: i32 = 121;
/// Contract data carries `underSymbol` and `underSecType`.
pub const UNDERLYING_INFO: i32 = 122;
/// `keepUpToDate`; historical data loses its leading version field.
pub const SYNT_REALTIME_BARS: i32 = 124;
/// Contract data carries `marketRuleIds`.
pub const MARKET_RULES: i32 = 126;
/// Contract data carries `realExpirationDate`.
pub const REAL_EXPIRATION_DATE: i32 = 134;
/// Contract data carries `stockType`.
pub const STOCK_TYPE: i32 = 152;
/// Contract data carries the (obsolete) `sizeMinTick` (until `SIZE_RULES`).
pub const FRACTIONAL_SIZE_SUPPORT: i32 = 163;
/// Contract data loses its version field and gains `minSize`, `sizeIncrement`, `suggestedSizeIncrement`.
pub const SIZE_RULES: i32 = 164;
/// Error messages carry `advancedOrderRejectJson`.
pub const ADVANCED_ORDER_REJECT: i32 = 166;
/// `issuerId` in contract requests and symbol samples.
pub const BOND_ISSUERID: i32 = 176;
/// Contract data of FUND contracts carries 17 fund fields.
pub const FUND_DATA_FIELDS: i32 = 179;
/// Contract data carries `lastTradeDate`.
pub const LAST_TRADE_DATE: i32 = 182;
/// Contract data carries the ineligibility-reason list.
pub const INELIGIBILITY_REASONS: i32 = 186;
/// Error messages lose their version field and gain `errorTime`.
pub const ERROR_TIME: i32 = 194;
/// Historical data ends with a separate `historicalDataEnd` message (108).
pub const HISTORICAL_DATA_END: i32 = 196;
/// `reqCurrentTimeInMillis` exists.
pub const CURRENT_TIME_IN_MILLIS: i32 = 197;
/// `reqMktData` carries `regulatorySnapshot` (IB's `SMART_COMPONENTS` threshold).
pub const REGULATORY_SNAPSHOT: i32 = 114;
/// `reqTickByTickData` exists.
pub const TICK_BY_TICK: i32 = 137;
/// `reqTickByTickData` carries `numberOfTicks` and `ignoreSize`.
pub const TICK_BY_TICK_IGNORE_SIZE: i32 = 140;
/// Every frame carries a 4-byte binary message id; ids above 200 are protobuf.
pub const PROTOBUF: i32 = 201;
/// Contract-details requests and replies go protobuf.
pub const PROTOBUF_CONTRACT_DATA: i32 = 205;
/// Market data (`reqMktData`, its cancel, `reqMarketDataType` and their ticks) go protobuf.
pub const PROTOBUF_MARKET_DATA: i32 = 206;
/// Account messages (managed accounts) go protobuf.
pub const PROTOBUF_ACCOUNTS_POSITIONS: i32 = 207;
/// Historical data, head timestamp, real-time bars, tick-by-tick and their cancels go protobuf.
pub const PROTOBUF_HISTORICAL_DATA: i32 = 208;
/// Matching symbols goes protobuf.
pub const PROTOBUF_REST_MESSAGES_2: i32 = 212;
/// START_API, reqIds, current time go protobuf; ibapi 5.5's minimum.
pub const PROTOBUF_REST_MESSAGES_3: i32 = 213;
/// `cancelContractData` (protobuf only) exists.
pub const CANCEL_CONTRACT_DATA: i32 = 215;
