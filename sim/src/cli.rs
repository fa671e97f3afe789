//! The command line of the simulated gateway, shared by the `ibconn-sim` binary and `ibconn sim`:
//! one argument struct ([`SimArgs`]) and one run function ([`run`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ibconn_core::wire::VersionRange;
use tokio::net::TcpListener;

use crate::{serve, GatewayConfig, Market, ServerConfig};

/// A simulated IB Gateway: deterministic, rule-enforcing, speaks the TWS API.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4002")]
    pub listen: String,
    /// Seed of all randomness (bar paths, latency jitter).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Highest server version to answer (default 226).
    #[arg(long)]
    pub server_version: Option<i32>,
    /// Extra instruments: a TOML (`.toml`) or JSON file.
    #[arg(long)]
    pub instruments: Option<PathBuf>,
}

/// Serve until SIGINT or SIGTERM. Prints exactly one line, `listening on ADDR`, on stdout when
/// ready; errors go to stderr prefixed with `program`. Exit codes: 0 on a clean stop, 1 when the
/// server fails, 2 for a bad argument or instruments file.
pub async fn run(args: SimArgs, program: &str) -> ExitCode {
    let mut gateway = GatewayConfig::default();
    if let Some(v) = args.server_version {
        if v < 1 {
            eprintln!("{program}: --server-version must be positive");
            return ExitCode::from(2);
        }
        gateway.versions = VersionRange::new(gateway.versions.min.min(v), v);
    }
    if let Some(path) = &args.instruments {
        match Market::builtin_with_file(path) {
            Ok(m) => gateway.market = m,
            Err(err) => {
                eprintln!("{program}: {err}");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("{program}: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(err) => {
            eprintln!("{program}: {err}");
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
                eprintln!("{program}: {err}");
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
