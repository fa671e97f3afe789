//! `ibconn`: the command line of ibconn.
//!
//! - `ibconn fetch SYMBOL… --bar 1h --from DATE --to DATE [--out FILE.csv | --out-dir DIR]
//!   [--json]`: a paced, resumable backfill (several symbols: one file each in `--out-dir`,
//!   through one pacer). Without `--gateway` it runs against an embedded simulated IB Gateway in
//!   virtual time; with `--gateway HOST:PORT` against a real TWS / IB Gateway on wall time.
//! - `ibconn plan …` (same arguments): request count and IB-pacing time, nothing sent.
//! - `ibconn validate SYMBOL…`: contract details and head timestamp through a persisted cache
//!   (negative answers cached only for IB's error 200).
//! - `ibconn head SYMBOL`: the earliest data point.
//! - `ibconn stream SYMBOL… (--bars 5s | --ticks [--what last|bidask|mid]) [--json] [--out
//!   FILE.csv]`: live bars or ticks until Ctrl-C, surviving a gateway restart with a gap line.
//! - `ibconn ids [list | release ID… | release --all] [--force]`: client-id leases in the shared
//!   registry file.
//! - `ibconn config`: the effective configuration (`ibconn.toml` + `IBCONN_*` variables).
//! - `ibconn explain CODE "MESSAGE" [--json]`: the error classifier's verdict.
//! - `ibconn sim --listen ADDR`: the simulated gateway on a TCP port.
//! - `ibconn health --gateway HOST:PORT [--timeout SECS] [--json]`: handshake plus one
//!   `reqCurrentTime` round trip; exit 0 healthy, 1 not (a container healthcheck).
//! - `ibconn serve --gateway HOST:PORT --listen 127.0.0.1:PORT [--token TOKEN]`: the HTTP status
//!   API and Prometheus `/metrics` over a pool.
//!
//! Exit codes: 0 ok, 1 runtime or gateway failure, 2 usage or configuration error, 3 partial
//! result (some chunks failed, or some of several symbols; everything fetched was written), 4 a
//! symbol does not exist (`validate`, `head`, `fetch`; with several symbols: none exists).

mod args;
mod batch;
mod batch_plan;
mod config;
mod contract;
mod coordination;
mod csvio;
mod dates;
mod drive;
mod explain;
mod fetch;
mod health;
mod ids;
mod metrics;
mod output;
mod plan;
mod probe;
mod progress;
mod serve;
mod session;
mod signals;
mod stream;
mod util;
mod validate;
mod watch;

use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use crate::args::{Cli, Command};
use crate::config::{secs, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that do not use the configuration run even when it is broken.
    match cli.command {
        Command::Explain(args) => {
            let verdict = explain::explain(args.code, &args.message);
            if args.json {
                print_json(&verdict, ExitCode::SUCCESS)
            } else {
                say(&verdict.text());
                ExitCode::SUCCESS
            }
        }
        Command::Sim(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(ibconn_sim::cli::run(args, "ibconn sim")),
            Err(e) => fail(&format!("cannot start the runtime: {e}"), 1),
        },
        command => {
            let loaded = match config::load(cli.config.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(&e.to_string(), 2),
            };
            for w in &loaded.warnings {
                say_err(&format!("ibconn: warning: {w}\n"));
            }
            run(command, &loaded)
        }
    }
}

fn run(command: Command, loaded: &config::Loaded) -> ExitCode {
    let settings = &loaded.settings;
    match command {
        Command::Fetch(args) => {
            if args.json && args.fetch.out.as_deref() == Some(std::path::Path::new("-")) {
                return fail(
                    "--json prints the summary on stdout, where --out - sends the bars: \
                     use --summary-json FILE instead",
                    2,
                );
            }
            let mut fetch_args = args.fetch.clone();
            fetch_args.gateway = validate::resolve_gateway(fetch_args.gateway.as_deref(), settings);
            if let Err(e) = fetch_args.resolve_range(dates::now_for(fetch_args.gateway.as_deref()))
            {
                return fail(&e.to_string(), 2);
            }
            match batch::run(&fetch_args, settings) {
                Ok(summary) => {
                    let code = ExitCode::from(summary.exit_code());
                    if args.json {
                        print_json(&summary, code)
                    } else {
                        say_err(&summary.text());
                        code
                    }
                }
                Err(e) => fail(&e.to_string(), e.exit_code()),
            }
        }
        Command::Plan(args) => {
            let mut fetch_args = args.fetch.clone();
            fetch_args.gateway = validate::resolve_gateway(fetch_args.gateway.as_deref(), settings);
            if let Err(e) = fetch_args.resolve_range(dates::now_for(fetch_args.gateway.as_deref()))
            {
                return fail(&e.to_string(), 2);
            }
            match batch_plan::run(&fetch_args, settings) {
                Ok(report) => {
                    if args.json {
                        print_json(&report, ExitCode::SUCCESS)
                    } else {
                        say(&report.text());
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => fail(&e.to_string(), e.exit_code()),
            }
        }
        Command::Health(args) => {
            let Some(gateway) = args.gateway.clone().or_else(|| settings.real_gateway()) else {
                return fail(
                    "no gateway: pass --gateway HOST:PORT or set `gateway` in ibconn.toml                      (health checks a real gateway, not the embedded simulator)",
                    2,
                );
            };
            let timeout = args
                .timeout
                .unwrap_or_else(|| secs(settings.health.timeout_secs));
            let report = health::health(settings, &gateway, timeout);
            let code = ExitCode::from(report.exit_code());
            if args.json {
                return print_json(&report, code);
            }
            if report.healthy {
                say(&report.text());
            } else {
                say_err(&report.text());
            }
            code
        }
        Command::Serve(args) => match serve::serve(&args, settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Stream(args) => match stream::stream(&args, settings) {
            Ok(code) => code,
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Validate(args) => match validate::validate(&args, settings) {
            Ok(report) => {
                if let Some(w) = &report.cache_warning {
                    say_err(&format!("ibconn: warning: {w}\n"));
                }
                let code = ExitCode::from(report.exit_code());
                if args.json {
                    print_json(&report, code)
                } else {
                    say(&report.text());
                    code
                }
            }
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Head(args) => match validate::head(&args, settings) {
            Ok(report) => {
                let code = ExitCode::from(report.exit_code);
                if args.json {
                    print_json(&report, code)
                } else if report.exit_code == 0 {
                    say(&report.text());
                    code
                } else {
                    say_err(&report.text());
                    code
                }
            }
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Ids(args) => match ids::ids(&args, settings) {
            Ok((out, refused)) => {
                let code = refused
                    .as_ref()
                    .map_or(ExitCode::SUCCESS, |e| ExitCode::from(e.exit_code()));
                let code = if args.json {
                    print_json(&out, code)
                } else {
                    say(&out.text());
                    code
                };
                match refused {
                    Some(e) => fail(&e.to_string(), e.exit_code()),
                    None => code,
                }
            }
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Config(args) => print_config(settings, &loaded.origin, args.json),
        Command::Explain(_) | Command::Sim(_) => ExitCode::SUCCESS,
    }
}

/// `ibconn config`: the effective settings, token redacted.
fn print_config(settings: &Settings, origin: &config::Origin, json: bool) -> ExitCode {
    let shown = settings.redacted();
    if json {
        return print_json(&shown, ExitCode::SUCCESS);
    }
    match toml::to_string_pretty(&shown) {
        Ok(text) => {
            say(&format!(
                "# effective configuration (defaults < file < IBCONN_* environment)\n{origin}\n{text}"
            ));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

/// Pretty JSON on stdout, then `code` (1 if it cannot be serialized).
fn print_json(value: &impl Serialize, code: ExitCode) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            say(&format!("{s}\n"));
            code
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

/// `text` on stdout. A reader that went away (`ibconn config | head -1`) is not an error of
/// ours: the rest is dropped quietly instead of panicking like `print!`.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `text` on stderr, quietly dropped if stderr is closed (see [`say`]).
fn say_err(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn fail(message: &str, code: u8) -> ExitCode {
    say_err(&format!("ibconn: {message}\n"));
    ExitCode::from(code)
}
