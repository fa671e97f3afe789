//! `ibconn-sim`: the simulated IB Gateway on a real TCP port.
//!
//! Prints exactly one line, `listening on ADDR`, when ready; exits cleanly on SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ibconn_core::wire::VersionRange;
use ibconn_sim::{serve, GatewayConfig, Market, ServerConfig};
use tokio::net::TcpListener;

/// A simulated IB Gateway: deterministic, rule-enforcing, speaks the TWS API.
#[derive(Debug, Parser)]
#[command(name = "ibconn-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4002")]
    listen: String,
    /// Seed of all randomness (bar paths, latency jitter).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Highest server version to answer (default 226).
    #[arg(long)]
    server_version: Option<i32>,
    /// Extra instruments: a TOML (`.toml`) or JSON file.
    #[arg(long)]
    instruments: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut gateway = GatewayConfig::default();
    if let Some(v) = args.server_version {
        if v < 1 {
            eprintln!("ibconn-sim: --server-version must be positive");
            return ExitCode::from(2);
        }
        gateway.versions = VersionRange::new(gateway.versions.min.min(v), v);
    }
    if let Some(path) = &args.instruments {
        match Market::builtin_with_file(path) {
            Ok(m) => gateway.market = m,
            Err(err) => {
                eprintln!("ibconn-sim: {err}");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("ibconn-sim: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(err) => {
            eprintln!("ibconn-sim: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    let config = ServerConfig {
        gateway,
        seed: args.seed,
    };
    tokio::select! {
        result = serve(listener, config) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("ibconn-sim: {err}");
                ExitCode::FAILURE
            }
        },
        () = shutdown_signal() => ExitCode::SUCCESS,
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
