//! Tests of the market model: the built-in set, symbol search, instrument files and contract
//! details' trading hours.

use super::*;
use crate::calendar::utc;

#[test]
fn the_builtin_file_loads_whole_through_the_instrument_file_path() {
    // Strictly: unknown fields are refused (the same `deny_unknown_fields` a user's file meets),
    // so a typo in the data file fails here rather than being dropped.
    let file: InstrumentFile = toml::from_str(BUILTIN_INSTRUMENTS).unwrap();
    assert_eq!(file.instruments.len(), 22);
    let m = Market::builtin();
    assert_eq!(m.instruments(), &file.instruments[..]);
    let ids: BTreeSet<i32> = m.instruments().iter().map(|i| i.con_id).collect();
    assert_eq!(ids.len(), 22, "con ids are unique");
}

#[test]
fn builtin_set_has_the_required_instruments() {
    let m = Market::builtin();
    assert!(m.instruments().len() >= 20);
    let find = |c: Contract| match m.resolve(&c) {
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
    assert_eq!(m.resolve(&es), Lookup::Ambiguous);
    assert_eq!(m.find_all(&es).len(), 2);
    es.last_trade_date_or_contract_month = "202703".into();
    assert_eq!(find(es), 637_533_641);
    assert_eq!(m.resolve(&Contract::stock("NOPE")), Lookup::NotFound);
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
        m.resolve(&Contract::stock("ZZZ")),
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
