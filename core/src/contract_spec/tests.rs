//! Tests of the contract syntax: each form, its defaults, the errors, overrides, and a proptest
//! round trip (`Display` parses back to the same spec).

use proptest::prelude::*;

use super::*;

fn parse(s: &str) -> ContractSpec {
    ContractSpec::parse(s).unwrap()
}

fn contract(s: &str) -> Contract {
    parse(s).to_contract()
}

#[test]
fn a_plain_symbol_is_a_smart_usd_stock() {
    assert_eq!(contract("aapl"), Contract::stock("AAPL"));
    assert_eq!(
        parse("BRK B"),
        ContractSpec::Stock {
            symbol: "BRK B".into()
        }
    );
    assert_eq!(contract(" brk b ").symbol, "BRK B");
    // Dots that are not a currency pair stay in the symbol (IB's LSE symbols, e.g. BT.A).
    assert_eq!(contract("BT.A").sec_type, "STK");
    // A stock whose symbol looks like something else says so.
    assert_eq!(contract("ESZ6:STK").symbol, "ESZ6");
}

#[test]
fn forex_indices_and_contract_ids() {
    let eur = contract("EUR.USD");
    assert_eq!(
        (
            eur.symbol.as_str(),
            eur.sec_type.as_str(),
            eur.exchange.as_str()
        ),
        ("EUR", "CASH", "IDEALPRO")
    );
    assert_eq!(eur.currency, "USD");
    assert_eq!(contract("eur:cash:usd"), eur);
    assert_eq!(contract("EUR.USD:CASH"), eur);

    let spx = contract("SPX:IND");
    assert_eq!(
        (spx.sec_type.as_str(), spx.exchange.as_str()),
        ("IND", "CBOE")
    );
    assert_eq!(contract("VIX:IND").exchange, "CBOE");
    assert_eq!(contract("NDX:IND").exchange, "NASDAQ");
    assert_eq!(contract("DAX:IND").exchange, "", "unknown home: left to IB");

    assert_eq!(
        contract("@265598"),
        Contract {
            con_id: 265_598,
            ..Contract::default()
        }
    );
}

#[test]
fn futures_by_month_date_or_local_symbol() {
    let es = contract("ES:FUT:202612");
    assert_eq!(es.sec_type, "FUT");
    assert_eq!(es.last_trade_date_or_contract_month, "202612");
    assert_eq!((es.exchange.as_str(), es.currency.as_str()), ("CME", "USD"));
    assert_eq!(
        contract("ES:FUT:20261218").last_trade_date_or_contract_month,
        "20261218"
    );
    assert_eq!(contract("NQ:FUT").last_trade_date_or_contract_month, "");
    assert!(parse("NQ:FUT").is_partial());
    assert!(!parse("NQ:FUT:202703").is_partial());
    assert_eq!(contract("YM:FUT:202703").exchange, "CBOT");

    assert_eq!(
        parse("esz6"),
        ContractSpec::FutureLocal {
            root: "ES".into(),
            month_code: 'Z',
            year_digit: 6
        }
    );
    let local = contract("ESH7");
    assert_eq!(local.local_symbol, "ESH7");
    assert_eq!(
        (local.sec_type.as_str(), local.exchange.as_str()),
        ("FUT", "CME")
    );
    assert_eq!(local.symbol, "ES", "a known root is IB's symbol");
    assert_eq!(parse("6EH7").sec_type(), Some("FUT"));
    assert_eq!(
        contract("6EH7").symbol,
        "",
        "6E is EUR's: the local symbol names it"
    );
    assert_eq!(month_of_code('H'), Some(3));
    assert_eq!(code_of_month(12), Some('Z'));
    assert_eq!(code_of_month(13), None);
}

#[test]
fn options_in_full_partly_or_by_occ_symbol() {
    let c = contract("AAPL:OPT:20261218:200:C");
    assert_eq!(c.sec_type, "OPT");
    assert_eq!(c.last_trade_date_or_contract_month, "20261218");
    assert_eq!((c.strike, c.right.as_str()), (Some(200.0), "C"));
    assert_eq!(c.multiplier, Some(100.0));
    assert_eq!((c.exchange.as_str(), c.currency.as_str()), ("SMART", "USD"));
    assert_eq!(contract("aapl:opt:20261218:202.5:put").right, "P");
    let chain = parse("SPY:OPT");
    assert!(chain.is_partial());
    assert_eq!(chain.to_string(), "SPY:OPT");
    let any_expiry = parse("AAPL:OPT::200:C");
    assert_eq!(any_expiry.to_string(), "AAPL:OPT::200:C");
    assert_eq!(
        any_expiry.to_contract().last_trade_date_or_contract_month,
        ""
    );

    let occ = occ_local_symbol("AAPL", "261218", Right::Call, 200.0);
    assert_eq!(occ, "AAPL  261218C00200000");
    let c = contract(&occ);
    assert_eq!(
        (c.sec_type.as_str(), c.local_symbol.as_str()),
        ("OPT", occ.as_str())
    );
    assert_eq!(c.trading_class, "AAPL");
    assert_eq!(
        occ_local_symbol("SPY", "270115", Right::Put, 582.5),
        "SPY   270115P00582500"
    );
}

#[test]
fn bad_input_gets_a_typed_error_naming_the_problem() {
    use ContractSpecError as E;
    let err = |s: &str| ContractSpec::parse(s).unwrap_err();
    assert_eq!(err("  "), E::Empty);
    assert_eq!(err("@"), E::BadConId("@".into()));
    assert_eq!(err("@-5"), E::BadConId("@-5".into()));
    assert_eq!(err("@0"), E::BadConId("@0".into()));
    assert_eq!(err("@12x"), E::BadConId("@12x".into()));
    assert_eq!(err("AAPL:BOND"), E::UnknownSecType("BOND".into()));
    assert_eq!(err("ES:FUT:2026"), E::BadExpiry("2026".into()));
    assert_eq!(err("ES:FUT:202613"), E::BadExpiry("202613".into()));
    assert_eq!(err("ES:FUT:20260231"), E::BadExpiry("20260231".into()));
    assert_eq!(err("AAPL:OPT:20261218:-1:C"), E::BadStrike("-1".into()));
    assert_eq!(err("AAPL:OPT:20261218:0:C"), E::BadStrike("0".into()));
    assert_eq!(err("AAPL:OPT:20261218:1e3:C"), E::BadStrike("1E3".into()));
    assert_eq!(err("AAPL:OPT:20261218:200:X"), E::BadRight("X".into()));
    assert_eq!(err("EURUSD:CASH"), E::BadForex("EURUSD:CASH".into()));
    assert!(matches!(err("AAPL:STK:X"), E::TooManyFields { .. }));
    assert!(matches!(err("ES:FUT:202612:1"), E::TooManyFields { .. }));
    assert!(matches!(err("A:OPT:202612:1:C:X"), E::TooManyFields { .. }));
    assert!(matches!(err("BRK  B"), E::BadSymbol { .. }));
    assert!(matches!(err("AA$"), E::BadSymbol { .. }));
    assert!(matches!(err(":STK"), E::BadSymbol { .. }));
    assert!(matches!(err(&"X".repeat(40)), E::BadSymbol { .. }));
    // Messages say what was expected.
    assert!(err("ES:FUT:2026").to_string().contains("YYYYMM"));
    assert!(err("AAPL:BOND")
        .to_string()
        .contains("STK, CASH, IND, FUT, OPT"));
}

#[test]
fn overrides_apply_after_parsing() {
    let o = |sec_type: Option<&str>, exchange: Option<&str>| ContractOverrides {
        sec_type: sec_type.map(str::to_owned),
        exchange: exchange.map(str::to_owned),
        ..ContractOverrides::default()
    };
    // --sec-type re-reads a plain symbol, defaults included.
    let spx = parse("SPX").resolve(&o(Some("ind"), None)).unwrap();
    assert_eq!(spx, contract("SPX:IND"));
    let es = parse("ES").resolve(&o(Some("FUT"), None)).unwrap();
    assert_eq!(es, contract("ES:FUT"));
    let fx = parse("EUR")
        .resolve(&ContractOverrides {
            sec_type: Some("CASH".into()),
            currency: Some("usd".into()),
            ..ContractOverrides::default()
        })
        .unwrap();
    assert_eq!(fx, contract("EUR.USD"));
    // The same type is fine; another is a contradiction.
    assert!(parse("EUR.USD").resolve(&o(Some("CASH"), None)).is_ok());
    assert!(matches!(
        parse("EUR.USD").resolve(&o(Some("STK"), None)),
        Err(ContractSpecError::ConflictingSecType { .. })
    ));
    assert!(matches!(
        parse("AAPL").resolve(&o(Some("WAR"), None)),
        Err(ContractSpecError::UnknownSecType(_))
    ));
    // A contract id takes any type; exchange, currency and primary exchange replace defaults.
    let by_id = parse("@265598")
        .resolve(&ContractOverrides {
            sec_type: Some("STK".into()),
            exchange: Some("smart".into()),
            currency: Some("USD".into()),
            primary_exchange: Some("NASDAQ".into()),
        })
        .unwrap();
    assert_eq!(
        (
            by_id.con_id,
            by_id.sec_type.as_str(),
            by_id.exchange.as_str()
        ),
        (265_598, "STK", "SMART")
    );
    assert_eq!(by_id.primary_exchange, "NASDAQ");
    let cleared = parse("ES:FUT:202612").resolve(&o(None, Some(""))).unwrap();
    assert_eq!(cleared.exchange, "");
    assert!(matches!(
        parse("AAPL").resolve(&o(None, Some("NY SE"))),
        Err(ContractSpecError::BadOverride { .. })
    ));
}

#[test]
fn canonical_text_of_each_form() {
    for text in [
        "AAPL",
        "BRK B",
        "EUR.USD",
        "SPX:IND",
        "ES:FUT",
        "ES:FUT:202612",
        "ESZ6",
        "AAPL:OPT:20261218:200:C",
        "AAPL:OPT:202612",
        "AAPL  261218C00200000",
        "@265598",
        "ESZ6:STK",
        "EUR.USD:STK",
    ] {
        assert_eq!(parse(text).to_string(), text);
    }
    assert_eq!(parse("eur:cash:usd").to_string(), "EUR.USD");
    assert_eq!(
        parse("a:opt:202612:200.50:call").to_string(),
        "A:OPT:202612:200.5:C"
    );
}

fn symbol() -> impl Strategy<Value = String> {
    "[A-Z][A-Z0-9./&-]{0,5}( [A-Z0-9]{1,3})?"
}

fn expiry() -> impl Strategy<Value = Expiry> {
    (1950u16..2150, 1u8..=12, proptest::option::of(1u8..=28))
        .prop_map(|(year, month, day)| Expiry { year, month, day })
}

fn spec() -> impl Strategy<Value = ContractSpec> {
    let right = prop_oneof![Just(Right::Call), Just(Right::Put)];
    prop_oneof![
        symbol().prop_map(|symbol| ContractSpec::Stock { symbol }),
        ("[A-Z]{3}", "[A-Z]{3}").prop_map(|(base, quote)| ContractSpec::Forex { base, quote }),
        symbol().prop_map(|symbol| ContractSpec::Index { symbol }),
        (symbol(), proptest::option::of(expiry()))
            .prop_map(|(symbol, expiry)| ContractSpec::Future { symbol, expiry }),
        ("[A-Z][A-Z0-9]{0,3}", 1u8..=12, 0u8..=9).prop_map(|(root, m, year_digit)| {
            ContractSpec::FutureLocal {
                root,
                month_code: code_of_month(m).unwrap(),
                year_digit,
            }
        }),
        (
            symbol(),
            proptest::option::of(expiry()),
            proptest::option::of((1u32..10_000_000).prop_map(|c| f64::from(c) / 100.0)),
            proptest::option::of(right.clone()),
        )
            .prop_map(|(symbol, expiry, strike, right)| ContractSpec::Option {
                symbol,
                expiry,
                strike,
                right,
            }),
        (
            "[A-Z]{1,6}",
            0u32..100,
            1u32..=12,
            1u32..=28,
            right,
            1u32..99_999
        )
            .prop_map(|(root, y, m, d, r, k)| ContractSpec::OptionLocal {
                local_symbol: occ_local_symbol(
                    &root,
                    &format!("{y:02}{m:02}{d:02}"),
                    r,
                    f64::from(k)
                ),
            }),
        (1i32..=i32::MAX).prop_map(ContractSpec::ConId),
    ]
}

proptest! {
    #[test]
    fn display_parses_back_to_the_same_spec(s in spec()) {
        let text = s.to_string();
        prop_assert_eq!(ContractSpec::parse(&text), Ok(s), "{}", text);
    }

    #[test]
    fn any_text_parses_or_errs_without_panicking(text in ".{0,40}") {
        if let Ok(s) = ContractSpec::parse(&text) {
            // Whatever parses has a canonical text that parses to it again.
            prop_assert_eq!(ContractSpec::parse(&s.to_string()), Ok(s));
        }
    }
}
