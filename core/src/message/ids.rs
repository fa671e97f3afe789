//! Message ids and the server version from which each message travels as protobuf.
//!
//! Thresholds are IB's `getServerVersionForMessage` / `PROTOBUF_MSG_IDS`
//! (docs/ib-facts.md#server-version-thresholds); replies follow the threshold of the request
//! family they answer.

/// Client → server message ids.
pub mod outgoing {
    /// `reqMktData`.
    pub const REQ_MKT_DATA: i32 = 1;
    /// `cancelMktData`.
    pub const CANCEL_MKT_DATA: i32 = 2;
    /// `reqRealTimeBars`.
    pub const REQ_REAL_TIME_BARS: i32 = 50;
    /// `cancelRealTimeBars`.
    pub const CANCEL_REAL_TIME_BARS: i32 = 51;
    /// `reqMarketDataType`.
    pub const REQ_MARKET_DATA_TYPE: i32 = 59;
    /// `reqTickByTickData`.
    pub const REQ_TICK_BY_TICK_DATA: i32 = 97;
    /// `cancelTickByTickData`.
    pub const CANCEL_TICK_BY_TICK_DATA: i32 = 98;
    /// `reqContractDetails`.
    pub const REQ_CONTRACT_DATA: i32 = 9;
    /// `reqIds`.
    pub const REQ_IDS: i32 = 8;
    /// `reqManagedAccts`.
    pub const REQ_MANAGED_ACCTS: i32 = 17;
    /// `reqHistoricalData`.
    pub const REQ_HISTORICAL_DATA: i32 = 20;
    /// `cancelHistoricalData`.
    pub const CANCEL_HISTORICAL_DATA: i32 = 25;
    /// `reqCurrentTime`.
    pub const REQ_CURRENT_TIME: i32 = 49;
    /// `startApi`.
    pub const START_API: i32 = 71;
    /// `reqMatchingSymbols`.
    pub const REQ_MATCHING_SYMBOLS: i32 = 81;
    /// `reqHeadTimestamp`.
    pub const REQ_HEAD_TIMESTAMP: i32 = 87;
    /// `cancelHeadTimestamp`.
    pub const CANCEL_HEAD_TIMESTAMP: i32 = 90;
    /// `reqCurrentTimeInMillis`.
    pub const REQ_CURRENT_TIME_IN_MILLIS: i32 = 105;
    /// `cancelContractData` (protobuf only).
    pub const CANCEL_CONTRACT_DATA: i32 = 106;
}

/// Server → client message ids.
pub mod incoming {
    /// `tickPrice`.
    pub const TICK_PRICE: i32 = 1;
    /// `tickSize`.
    pub const TICK_SIZE: i32 = 2;
    /// `tickGeneric`.
    pub const TICK_GENERIC: i32 = 45;
    /// `tickString`.
    pub const TICK_STRING: i32 = 46;
    /// `realtimeBar`.
    pub const REAL_TIME_BARS: i32 = 50;
    /// `tickSnapshotEnd`.
    pub const TICK_SNAPSHOT_END: i32 = 57;
    /// `marketDataType`.
    pub const MARKET_DATA_TYPE: i32 = 58;
    /// `tickReqParams`.
    pub const TICK_REQ_PARAMS: i32 = 81;
    /// `tickByTick`.
    pub const TICK_BY_TICK: i32 = 99;
    /// `error`.
    pub const ERR_MSG: i32 = 4;
    /// `nextValidId`.
    pub const NEXT_VALID_ID: i32 = 9;
    /// `contractDetails`.
    pub const CONTRACT_DATA: i32 = 10;
    /// `managedAccounts`.
    pub const MANAGED_ACCTS: i32 = 15;
    /// `historicalData`.
    pub const HISTORICAL_DATA: i32 = 17;
    /// `currentTime`.
    pub const CURRENT_TIME: i32 = 49;
    /// `contractDetailsEnd`.
    pub const CONTRACT_DATA_END: i32 = 52;
    /// `symbolSamples`.
    pub const SYMBOL_SAMPLES: i32 = 79;
    /// `headTimestamp`.
    pub const HEAD_TIMESTAMP: i32 = 88;
    /// `historicalDataUpdate`.
    pub const HISTORICAL_DATA_UPDATE: i32 = 90;
    /// `historicalDataEnd`.
    pub const HISTORICAL_DATA_END: i32 = 108;
    /// `currentTimeInMillis`.
    pub const CURRENT_TIME_IN_MILLIS: i32 = 109;
}
