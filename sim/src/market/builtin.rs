//! The built-in instrument set (stocks, futures, options, forex, CFDs, indices) and the helpers
//! that build it; split out of `market.rs` to keep the market model apart from its data.

use crate::calendar::{utc, Date, Zone, NEW_YORK, SECS_PER_DAY};

use super::{Hours, Instrument};

#[allow(clippy::too_many_arguments)]
fn inst(
    con_id: i32,
    symbol: &str,
    sec_type: &str,
    exchange: &str,
    primary: &str,
    currency: &str,
    long_name: &str,
    head: i64,
    price: f64,
) -> Instrument {
    let (hours, tick, derivs): (Hours, f64, &[&str]) = match sec_type {
        "CASH" => (Hours::Fx, 0.00005, &[]),
        "FUT" => (Hours::Futures, 0.25, &["FOP"]),
        "IND" => (Hours::Index, 0.01, &["OPT", "FUT"]),
        _ => (Hours::UsEquity, 0.01, &["OPT", "WAR", "CFD", "IOPT"]),
    };
    Instrument {
        con_id,
        symbol: symbol.into(),
        sec_type: sec_type.into(),
        exchange: exchange.into(),
        primary_exchange: primary.into(),
        currency: currency.into(),
        local_symbol: String::new(),
        trading_class: String::new(),
        last_trade_date_or_contract_month: String::new(),
        multiplier: None,
        long_name: long_name.into(),
        min_tick: tick,
        head_timestamp: head,
        price,
        volatility: 0.25,
        volume_per_minute: 50_000.0,
        hours,
        data_permitted: true,
        derivative_sec_types: derivs.iter().map(|s| (*s).to_owned()).collect(),
        industry: String::new(),
    }
}

/// 09:30 New York on a date, as IB's head timestamps for US stocks are.
fn ny_open(y: i32, m: u32, d: u32) -> i64 {
    Zone::Us(NEW_YORK).to_utc(Date::new(y, m, d).days() * SECS_PER_DAY + 34_200)
}

pub(super) fn builtin_instruments() -> Vec<Instrument> {
    let stk = |con, sym, primary, name, head, price| {
        let mut i = inst(con, sym, "STK", "SMART", primary, "USD", name, head, price);
        i.industry = "Technology".into();
        i
    };
    let mut out = vec![
        stk(265_598, "AAPL", "NASDAQ", "APPLE INC", 345_479_400, 190.0),
        stk(
            272_093,
            "MSFT",
            "NASDAQ",
            "MICROSOFT CORP",
            ny_open(1986, 3, 13),
            420.0,
        ),
        stk(
            756_733,
            "SPY",
            "ARCA",
            "SPDR S&P 500 ETF TRUST",
            ny_open(1993, 1, 29),
            580.0,
        ),
        stk(
            320_227_571,
            "QQQ",
            "NASDAQ",
            "INVESCO QQQ TRUST SERIES 1",
            ny_open(1999, 3, 10),
            500.0,
        ),
        stk(
            3_691_937,
            "AMZN",
            "NASDAQ",
            "AMAZON.COM INC",
            ny_open(1997, 5, 15),
            200.0,
        ),
        stk(
            208_813_719,
            "GOOGL",
            "NASDAQ",
            "ALPHABET INC-CL A",
            ny_open(2004, 8, 19),
            170.0,
        ),
        stk(
            107_113_386,
            "META",
            "NASDAQ",
            "META PLATFORMS INC-CLASS A",
            ny_open(2012, 5, 18),
            560.0,
        ),
        stk(
            4_815_747,
            "NVDA",
            "NASDAQ",
            "NVIDIA CORP",
            ny_open(1999, 1, 22),
            130.0,
        ),
        stk(
            76_792_991,
            "TSLA",
            "NASDAQ",
            "TESLA INC",
            ny_open(2010, 6, 29),
            250.0,
        ),
        stk(
            1_520_593,
            "JPM",
            "NYSE",
            "JPMORGAN CHASE & CO",
            ny_open(1980, 3, 17),
            220.0,
        ),
        stk(
            9_579_970,
            "IWM",
            "ARCA",
            "ISHARES RUSSELL 2000 ETF",
            ny_open(2000, 5, 26),
            220.0,
        ),
        stk(
            15_547_841,
            "TLT",
            "NASDAQ",
            "ISHARES 20+ YEAR TREASURY BD",
            ny_open(2002, 7, 30),
            90.0,
        ),
    ];
    // No market data subscription for NYSE in the simulated account.
    let mut ko = stk(
        8_894,
        "KO",
        "NYSE",
        "COCA-COLA CO/THE",
        ny_open(1980, 1, 2),
        62.0,
    );
    ko.data_permitted = false;
    out.push(ko);

    let fx = |con, sym: &str, cur: &str, head, price| {
        let mut i = inst(con, sym, "CASH", "IDEALPRO", "", cur, "", head, price);
        i.local_symbol = format!("{sym}.{cur}");
        i.trading_class = format!("{sym}.{cur}");
        i.long_name = format!("{sym}.{cur}");
        i.volatility = 0.08;
        i
    };
    out.push(fx(12_087_792, "EUR", "USD", utc(2005, 3, 1, 0, 0, 0), 1.08));
    out.push(fx(12_087_797, "GBP", "USD", utc(2005, 3, 1, 0, 0, 0), 1.27));
    let mut jpy = fx(15_016_059, "USD", "JPY", utc(2005, 3, 1, 0, 0, 0), 150.0);
    jpy.min_tick = 0.005;
    out.push(jpy);

    // Two ES expiries: "ES FUT CME" without a month is ambiguous, as at IB.
    for (con, expiry, local) in [
        (637_533_641, "20270319", "ESH7"),
        (649_180_695, "20270618", "ESM7"),
    ] {
        let mut es = inst(
            con,
            "ES",
            "FUT",
            "CME",
            "",
            "USD",
            "E-mini S&P 500",
            0,
            5800.0,
        );
        es.head_timestamp = utc(2025, 6, 20, 13, 30, 0);
        es.last_trade_date_or_contract_month = expiry.into();
        es.local_symbol = local.into();
        es.trading_class = "ES".into();
        es.multiplier = Some(50.0);
        es.volatility = 0.18;
        es.volume_per_minute = 1_500.0;
        out.push(es);
    }
    let mut nq = inst(
        637_533_450,
        "NQ",
        "FUT",
        "CME",
        "",
        "USD",
        "E-mini NASDAQ 100",
        utc(2025, 6, 20, 13, 30, 0),
        20_500.0,
    );
    nq.last_trade_date_or_contract_month = "20270319".into();
    nq.local_symbol = "NQH7".into();
    nq.trading_class = "NQ".into();
    nq.multiplier = Some(20.0);
    out.push(nq);

    let idx = |con, sym, exch, name, head, price| {
        let mut i = inst(con, sym, "IND", exch, exch, "USD", name, head, price);
        i.volatility = 0.18;
        i
    };
    out.push(idx(
        416_904,
        "SPX",
        "CBOE",
        "S&P 500 Stock Index",
        ny_open(1980, 1, 2),
        5800.0,
    ));
    out.push(idx(
        13_455_763,
        "VIX",
        "CBOE",
        "CBOE Volatility Index",
        ny_open(1990, 1, 2),
        16.0,
    ));
    out.push(idx(
        416_843,
        "NDX",
        "NASDAQ",
        "NASDAQ 100 Stock Index",
        ny_open(1985, 2, 1),
        20_000.0,
    ));
    out
}
