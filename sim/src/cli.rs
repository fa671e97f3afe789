//! The command line of the simulated gateway, shared by the `ibconn-sim` binary and `ibconn sim`:
//! one argument struct ([`SimArgs`]) and one run function ([`run`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ibconn_core::wire::VersionRange;
use tokio::net::TcpListener;

use crate::{GatewayConfig, Market, ServerConfig, SimServer};

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
    /// Scale IB's historical pacing windows (10 min, 15 s, 2 s) by this factor, for tests that
    /// cannot wait ten minutes (clients must scale their pacing rules alike).
    #[arg(long, default_value_t = 1.0)]
    pub pace_scale: f64,
    /// Start the gateway's clock at this UTC instant, `YYYYMMDD-HH:MM:SS`, instead of the real
    /// time (it runs in real time from there). IB keeps bars of 30 s or less for about six
    /// months and refuses end dates in the future, by the gateway's clock: tests that fetch fixed
    /// dates pin it so their data stays inside that history.
    #[arg(long, value_name = "YYYYMMDD-HH:MM:SS")]
    pub wall_clock: Option<String>,
}

/// Serve until SIGINT or SIGTERM. Prints `listening on ADDR` on stdout when ready and, when
/// stopped by a signal, `pacing violations: N` (every 162 pacing refusal, over all connections);
/// errors go to stderr prefixed with `program`. Exit codes: 0 on a clean stop, 1 when the
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
    if !(args.pace_scale.is_finite() && args.pace_scale > 0.0 && args.pace_scale <= 1.0) {
        eprintln!("{program}: --pace-scale must be in (0, 1]");
        return ExitCode::from(2);
    }
    let h = &mut gateway.historical;
    for d in [
        &mut h.window,
        &mut h.identical_within,
        &mut h.same_contract_within,
    ] {
        *d = d.mul_f64(args.pace_scale);
    }
    let wall_clock = match args.wall_clock.as_deref().map(parse_wall_clock) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(())) => {
            eprintln!("{program}: --wall-clock wants YYYYMMDD-HH:MM:SS (UTC)");
            return ExitCode::from(2);
        }
    };
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
    // Listen for the signals before saying we are ready: a caller may send SIGTERM as soon as
    // it reads the line.
    let stop = Shutdown::listen();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    let config = ServerConfig {
        gateway,
        seed: args.seed,
    };
    let started = match wall_clock {
        Some(ms) => SimServer::start_at(listener, config, ms),
        None => SimServer::start(listener, config),
    };
    let server = match started {
        Ok(server) => server,
        Err(err) => {
            eprintln!("{program}: {err}");
            return ExitCode::FAILURE;
        }
    };
    stop.wait().await;
    let violations = server.pacing_violations().await;
    server.shutdown().await;
    match violations {
        Some(n) => {
            let _ = writeln!(out, "pacing violations: {n}");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("{program}: the server stopped unexpectedly");
            ExitCode::FAILURE
        }
    }
}

/// `YYYYMMDD-HH:MM:SS` (UTC) as Unix milliseconds.
fn parse_wall_clock(s: &str) -> Result<i64, ()> {
    if !s.contains('-') {
        return Err(());
    }
    let secs = crate::calendar::parse_end_date(s, crate::calendar::Zone::Utc).map_err(|_| ())?;
    secs.checked_mul(1000).ok_or(())
}

/// SIGINT and SIGTERM, registered when created (a signal that arrives before [`Shutdown::wait`]
/// is polled is kept, not fatal).
struct Shutdown {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(self.interrupt) => {}
                () = recv(self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
