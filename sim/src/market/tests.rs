//! Tests of the market model: the built-in set, symbol search, instrument files and contract
//! details' trading hours.

use super::*;
use crate::calendar::utc;

/// A gateway clock: Thursday 2026-11-05 15:00 UTC.
const NOW: i64 = 1_793_890_800;

#[test]
fn now_is_what_it_says() {
    assert_eq!(NOW, utc(2026, 11, 5, 15, 0, 0));
}

#[test]
fn the_builtin_file_loads_whole_through_the_instrument_file_path() {
    // Strictly: unknown fields are refused (the same `deny_unknown_fields` a user's file meets),
    // so a typo in the data file fails here rather than being dropped.
    let file: InstrumentFile = toml::from_str(BUILTIN_INSTRUMENTS).unwrap();
    assert_eq!(file.instruments.len(), 20);
    assert_eq!(file.futures.len(), 2);
    assert_eq!(file.option_chains.len(), 2);
    let m = Market::builtin();
    assert_eq!(m.instruments(), &file.instruments[..]);
    assert_eq!(m.futures_roots(), &file.futures[..]);
    assert_eq!(m.option_chains(), &file.option_chains[..]);
    let listed = m.listed(NOW);
    let ids: BTreeSet<i32> = m
        .instruments()
        .iter()
        .chain(&listed)
        .map(|i| i.con_id)
        .collect();
    assert_eq!(ids.len(), 20 + listed.len(), "con ids are unique");
}

#[test]
fn builtin_set_has_the_required_instruments() {
    let m = Market::builtin();
    assert!(m.instruments().len() + m.listed(NOW).len() >= 20);
    let find = |c: Contract| match m.resolve(&c, NOW) {
        Lookup::Found(i) => i.con_id,
        other => panic!("{c:?} → {other:?}"),
    };
    assert_eq!(find(Contract::stock("AAPL")), 265_598);
    assert_eq!(find(Contract::stock("msft")), 272_093);
    assert_eq!(find(Contract::stock("SPY")), 756_733);
    let eur = Contract {
        symbol: "EUR".into(),
        sec_type: "CASH".into(),
        exchange: "IDEALPRO".into(),
        currency: "USD".into(),
        ..Contract::default()
    };
    assert_eq!(find(eur), 12_087_792);
    let spx = Contract {
        symbol: "SPX".into(),
        sec_type: "IND".into(),
        exchange: "CBOE".into(),
        ..Contract::default()
    };
    assert_eq!(find(spx), 416_904);
    let mut es = Contract {
        symbol: "ES".into(),
        sec_type: "FUT".into(),
        exchange: "CME".into(),
        ..Contract::default()
    };
    assert_eq!(m.resolve(&es, NOW), Lookup::Ambiguous);
    assert_eq!(m.find_all(&es, NOW).len(), 4);
    es.last_trade_date_or_contract_month = "202703".into();
    assert_eq!(find(es), 495_002_703);
    assert_eq!(m.resolve(&Contract::stock("NOPE"), NOW), Lookup::NotFound);
    assert_eq!(
        find(Contract {
            con_id: 265_598,
            ..Contract::default()
        }),
        265_598
    );
    let ko = m.instruments().iter().find(|i| i.symbol == "KO").unwrap();
    assert!(!ko.data_permitted);
    assert_eq!(ko.permission_scope(), "NYSE STK");
}

#[test]
fn matching_symbols_prefers_symbol_prefix() {
    let m = Market::builtin();
    let got: Vec<String> = m
        .matching_symbols("aa")
        .into_iter()
        .map(|d| d.contract.symbol)
        .collect();
    assert_eq!(got, ["AAPL"]);
    assert!(m.matching_symbols("").is_empty());
    let apple = m.matching_symbols("APPLE");
    assert_eq!(apple[0].contract.symbol, "AAPL");
}

#[test]
fn files_extend_the_set() {
    let toml_text = r#"
        holidays = ["20260102"]
        [[instruments]]
        con_id = 1
        symbol = "ZZZ"
        sec_type = "STK"
        primary_exchange = "NYSE"
        currency = "USD"
        head_timestamp = 946_684_800
        price = 10.0
    "#;
    let file: InstrumentFile = toml::from_str(toml_text).unwrap();
    let mut m = Market::builtin();
    let before = m.instruments().len();
    m.extend(file).unwrap();
    assert_eq!(m.instruments().len(), before + 1);
    assert!(matches!(
        m.resolve(&Contract::stock("ZZZ"), NOW),
        Lookup::Found(_)
    ));
    let zzz = m.instruments().last().unwrap().clone();
    assert!(!m.is_trading_day(&zzz, Date::new(2026, 1, 2).days()));
    assert!(m.is_trading_day(&zzz, Date::new(2026, 1, 5).days()));

    let json = r#"{"instruments":[{"con_id":265598,"symbol":"AAPL","sec_type":"STK",
        "currency":"USD","head_timestamp":0,"price":1.0,"data_permitted":false}]}"#;
    let file: InstrumentFile = serde_json::from_str(json).unwrap();
    m.extend(file).unwrap();
    assert_eq!(m.instruments().len(), before + 1, "same con id replaces");
    let bad: Result<InstrumentFile, _> = serde_json::from_str(r#"{"instrumentz":[]}"#);
    assert!(bad.is_err());
}

#[test]
fn contract_details_hours() {
    let m = Market::builtin();
    let aapl = &m.instruments()[0];
    // Friday 2026-01-02 15:00 UTC: Fri open, Sat/Sun closed, Mon open.
    let (c, d) = m.contract_details(aapl, utc(2026, 1, 2, 15, 0, 0));
    assert_eq!(c.con_id, 265_598);
    assert!(d
        .liquid_hours
        .starts_with("20260102:0930-20260102:1600;20260103:CLOSED;20260104:CLOSED;20260105:0930"));
    assert!(d.trading_hours.starts_with("20260102:0400-20260102:2000"));
    // Both read back with core's parser: Saturday and Sunday closed, the text unchanged.
    for text in [&d.liquid_hours, &d.trading_hours] {
        let hours: TradingHours = text.parse().unwrap();
        assert_eq!(hours.to_string(), *text);
        let closed: Vec<Date> = hours.closed_days().collect();
        assert_eq!(closed, [Date::new(2026, 1, 3), Date::new(2026, 1, 4)]);
        assert_eq!(hours.sessions().count(), 5);
    }
}

/// The contract `text` (core's contract syntax) resolves to, at `now`.
fn resolve_spec(m: &Market, text: &str, now: i64) -> Lookup {
    let c = ibconn_core::contract_spec::ContractSpec::parse(text)
        .unwrap()
        .to_contract();
    m.resolve(&c, now)
}

fn found(l: Lookup) -> Instrument {
    match l {
        Lookup::Found(i) => *i,
        other => panic!("{other:?}"),
    }
}

#[test]
fn futures_are_the_next_four_quarterlies_with_stable_ids() {
    let m = Market::builtin();
    let es = |now| {
        let c = Contract {
            symbol: "ES".into(),
            sec_type: "FUT".into(),
            ..Contract::default()
        };
        m.find_all(&c, now)
            .into_iter()
            .map(|i| {
                (
                    i.local_symbol,
                    i.last_trade_date_or_contract_month,
                    i.con_id,
                )
            })
            .collect::<Vec<_>>()
    };
    let listed = es(NOW);
    assert_eq!(
        listed,
        [
            ("ESZ6".to_owned(), "20261218".to_owned(), 495_002_612),
            ("ESH7".to_owned(), "20270319".to_owned(), 495_002_703),
            // 2027-06-18 is Juneteenth observed: the business day before.
            ("ESM7".to_owned(), "20270617".to_owned(), 495_002_706),
            ("ESU7".to_owned(), "20270917".to_owned(), 495_002_709),
        ]
    );
    // On the last trade date the contract is still listed; the day after, the next one joins,
    // and the contracts that stay keep their ids.
    assert_eq!(es(utc(2026, 12, 18, 15, 0, 0))[0].0, "ESZ6");
    let later = es(utc(2026, 12, 19, 15, 0, 0));
    assert_eq!(later[0].0, "ESH7");
    assert_eq!(later[3].0, "ESZ7");
    assert_eq!(later[..3], listed[1..]);
    // Good Friday 2025-04-18 was the third Friday of April: expiries move to the day before.
    assert_eq!(expiry(&m, 2025, 4), "20250417");

    let z6 = found(resolve_spec(&m, "ESZ6", NOW));
    assert_eq!(z6.con_id, 495_002_612);
    assert_eq!(found(resolve_spec(&m, "ES:FUT:202612", NOW)), z6);
    assert_eq!(found(resolve_spec(&m, "ES:FUT:20261218", NOW)), z6);
    assert_eq!(found(resolve_spec(&m, "@495002612", NOW)), z6);
    assert_eq!(found(resolve_spec(&m, "NQH7", NOW)).con_id, 496_002_703);
    // Expired (or not yet listed) months are unknown, as IB without includeExpired.
    assert_eq!(resolve_spec(&m, "ES:FUT:202609", NOW), Lookup::NotFound);
    assert_eq!(resolve_spec(&m, "ESZ7", NOW), Lookup::NotFound);
    assert_eq!(resolve_spec(&m, "ES:FUT", NOW), Lookup::Ambiguous);
    let (c, d) = m.contract_details(&z6, NOW);
    assert_eq!(
        (c.multiplier, c.last_trade_date.as_str()),
        (Some(50.0), "20261218")
    );
    assert_eq!(d.contract_month, "202612");
    assert_eq!(z6.trading_end(), Some(utc(2026, 12, 19, 5, 0, 0)));
}

fn expiry(m: &Market, year: i32, month: u32) -> String {
    Date::from_days(derivatives_expiry(m, year, month)).yyyymmdd()
}

fn derivatives_expiry(m: &Market, year: i32, month: u32) -> i64 {
    // Through the listing: the first contract listed on the first of the month.
    let now = Zone::Us(NEW_YORK).to_utc(Date::new(year, month, 1).days() * SECS_PER_DAY + 43_200);
    let opt = m
        .listed(now)
        .into_iter()
        .find(|i| i.sec_type == "OPT")
        .unwrap();
    let date = &opt.last_trade_date_or_contract_month;
    Date::new(
        date[..4].parse().unwrap(),
        date[4..6].parse().unwrap(),
        date[6..].parse().unwrap(),
    )
    .days()
}

#[test]
fn option_chains_list_monthly_expiries_around_the_price() {
    let m = Market::builtin();
    let chain = |text: &str| {
        let c = ibconn_core::contract_spec::ContractSpec::parse(text)
            .unwrap()
            .to_contract();
        m.find_all(&c, NOW)
    };
    let aapl = chain("AAPL:OPT");
    // Three expiries × eleven strikes × call and put.
    assert_eq!(aapl.len(), 3 * 11 * 2);
    let expiries: BTreeSet<&str> = aapl
        .iter()
        .map(|i| i.last_trade_date_or_contract_month.as_str())
        .collect();
    assert_eq!(
        expiries.into_iter().collect::<Vec<_>>(),
        ["20261120", "20261218", "20270115"]
    );
    let strikes: BTreeSet<i64> = aapl.iter().map(|i| i.strike.unwrap() as i64).collect();
    assert_eq!(strikes.first(), Some(&165));
    assert_eq!(strikes.last(), Some(&215));
    assert_eq!(chain("SPY:OPT:20261218").len(), 22);
    assert_eq!(chain("AAPL:OPT:20261218:200").len(), 2);

    let call = found(resolve_spec(&m, "AAPL:OPT:20261218:200:C", NOW));
    assert_eq!(call.local_symbol, "AAPL  261218C00200000");
    assert_eq!((call.multiplier, call.right.as_str()), (Some(100.0), "C"));
    assert_eq!(call.under_con_id, 265_598);
    assert_eq!(found(resolve_spec(&m, "AAPL  261218C00200000", NOW)), call);
    assert_eq!(
        found(resolve_spec(&m, &format!("@{}", call.con_id), NOW)),
        call
    );
    let put = found(resolve_spec(&m, "AAPL:OPT:20261218:200:P", NOW));
    assert_eq!(put.con_id, call.con_id + 1);
    assert!(
        call.price > 0.0 && put.price > call.price,
        "in the money puts at 190"
    );
    let (c, d) = m.contract_details(&call, NOW);
    assert_eq!((c.strike, c.right.as_str()), (Some(200.0), "C"));
    assert_eq!((d.under_con_id, d.under_symbol.as_str()), (265_598, "AAPL"));
    assert_eq!(d.contract_month, "202612");
    // A chain's contract keeps its id a month later.
    let later = m
        .by_con_id(call.con_id, utc(2026, 12, 5, 15, 0, 0))
        .unwrap();
    assert_eq!(later.local_symbol, call.local_symbol);
}

#[test]
fn sessions_per_type_fx_24x5_futures_with_the_break_indices_rth() {
    let m = Market::builtin();
    let by_symbol = |s: &str| {
        m.instruments()
            .iter()
            .find(|i| i.symbol == s)
            .unwrap()
            .clone()
    };
    let day = |y, mo, d| Date::new(y, mo, d).days();
    // Monday 2026-11-09 (EST, UTC−5).
    let eur = by_symbol("EUR");
    assert_eq!(
        m.sessions(&eur, day(2026, 11, 9), false),
        [(utc(2026, 11, 8, 22, 0, 0), utc(2026, 11, 9, 22, 0, 0))],
        "Sunday 17:00 to Monday 17:00 New York"
    );
    assert!(
        m.sessions(&eur, day(2026, 11, 7), false).is_empty(),
        "Saturday"
    );
    assert_eq!(
        m.sessions(&eur, day(2026, 11, 26), false).len(),
        1,
        "FX open on Thanksgiving"
    );
    let es = found(resolve_spec(&m, "ESZ6", NOW));
    assert_eq!(
        m.sessions(&es, day(2026, 11, 9), false),
        [(utc(2026, 11, 8, 23, 0, 0), utc(2026, 11, 9, 22, 0, 0))],
        "Sunday 18:00 to Monday 17:00 New York: the 17:00–18:00 break between days"
    );
    assert_eq!(
        m.sessions(&es, day(2026, 11, 9), true),
        [(utc(2026, 11, 9, 14, 30, 0), utc(2026, 11, 9, 21, 0, 0))]
    );
    let spx = by_symbol("SPX");
    assert_eq!(
        m.sessions(&spx, day(2026, 11, 9), false),
        [(utc(2026, 11, 9, 14, 30, 0), utc(2026, 11, 9, 21, 0, 0))],
        "indices: regular hours only"
    );
    // Contract details: Sunday is not "closed" when Monday's session opens on it.
    let (_, d) = m.contract_details(&es, utc(2026, 11, 6, 15, 0, 0));
    assert!(
        d.trading_hours
            .starts_with("20261105:1800-20261106:1700;20261107:CLOSED;20261108:1800-20261109:1700"),
        "{}",
        d.trading_hours
    );
    let (_, d) = m.contract_details(&eur, utc(2026, 11, 6, 15, 0, 0));
    assert!(d
        .trading_hours
        .contains("20261107:CLOSED;20261108:1700-20261109:1700"));
}

/// IB reads a strike of 0 as unset: clients that always send one (ib_async sends 0.0 for a
/// stock) still find the stock.
#[test]
fn a_zero_strike_is_unset() {
    let m = Market::builtin();
    let aapl = Contract {
        strike: Some(0.0),
        ..Contract::stock("AAPL")
    };
    assert!(matches!(m.resolve(&aapl, NOW), Lookup::Found(i) if i.con_id == 265_598));
}
