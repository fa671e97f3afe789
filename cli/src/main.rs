//! `ibconn`: the command line of ibconn.
//!
//! - `ibconn fetch SYMBOL --bar 1h --from DATE --to DATE [--out FILE.csv]`: a paced, resumable
//!   backfill. Without `--gateway` it runs against an embedded simulated IB Gateway in virtual
//!   time; with `--gateway HOST:PORT` against a real TWS / IB Gateway on wall time.
//! - `ibconn plan …` (same arguments): request count and IB-pacing time, nothing sent.
//! - `ibconn explain CODE "MESSAGE" [--json]`: the error classifier's verdict.
//! - `ibconn sim --listen ADDR`: the simulated gateway on a TCP port.
//! - `ibconn health --gateway HOST:PORT [--timeout SECS] [--json]`: handshake plus one
//!   `reqCurrentTime` round trip; exit 0 healthy, 1 not (a container healthcheck).
//! - `ibconn serve --gateway HOST:PORT --listen 127.0.0.1:PORT [--token TOKEN]`: the HTTP status
//!   API and Prometheus `/metrics` over a pool.
//!
//! Exit codes: 0 ok, 1 runtime or gateway failure, 2 usage or configuration error, 3 partial
//! result (some chunks failed; everything fetched was written).

mod args;
mod csvio;
mod explain;
mod fetch;
mod health;
mod metrics;
mod probe;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Fetch(args) => match fetch::fetch(&args) {
            Ok(summary) => {
                eprint!("{}", summary.text());
                ExitCode::from(summary.exit_code)
            }
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Plan(args) => match fetch::plan(&args.fetch) {
            Ok(report) => {
                if args.json {
                    match serde_json::to_string_pretty(&report) {
                        Ok(s) => println!("{s}"),
                        Err(e) => return fail(&e.to_string(), 1),
                    }
                } else {
                    print!("{}", report.text());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
        Command::Explain(args) => {
            let verdict = explain::explain(args.code, &args.message);
            if args.json {
                match serde_json::to_string_pretty(&verdict) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail(&e.to_string(), 1),
                }
            } else {
                print!("{}", verdict.text());
            }
            ExitCode::SUCCESS
        }
        Command::Sim(args) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(ibconn_sim::cli::run(args, "ibconn sim")),
            Err(e) => fail(&format!("cannot start the runtime: {e}"), 1),
        },
        Command::Health(args) => {
            let report = health::health(&args);
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail(&e.to_string(), 1),
                }
            } else if report.healthy {
                print!("{}", report.text());
            } else {
                eprint!("{}", report.text());
            }
            ExitCode::from(report.exit_code())
        }
        Command::Serve(args) => match serve::serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string(), e.exit_code()),
        },
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("ibconn: {message}");
    ExitCode::from(code)
}
