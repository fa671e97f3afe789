//! `ibconn-sim`: the simulated IB Gateway on a real TCP port.
//!
//! Prints exactly one line, `listening on ADDR`, when ready; exits cleanly on SIGINT or SIGTERM.
//! The arguments and the run loop are [`ibconn_sim::cli`], shared with `ibconn sim`.

use std::process::ExitCode;

use clap::Parser;
use ibconn_sim::cli::{run, SimArgs};

/// A simulated IB Gateway: deterministic, rule-enforcing, speaks the TWS API.
#[derive(Debug, Parser)]
#[command(name = "ibconn-sim", version)]
struct Args {
    #[command(flatten)]
    sim: SimArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    run(Args::parse().sim, "ibconn-sim").await
}
