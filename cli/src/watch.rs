//! What a wall-time fetch tells its user while it runs: the gateway lost and back, the pacing
//! store failing and answering again — and when to give up on a gateway that stays away.

use std::time::Duration;

use ibconn_core::pool::PoolNotice;

use crate::fetch::{human, Progress};

/// What a wall-time fetch tells its user about the gateway while it runs (on stderr, also when
/// stderr is not a terminal), and when it gives up on a gateway that stays away.
pub(crate) struct GatewayWatch<'a> {
    addr: &'a str,
    patience: Duration,
    /// Since when no session is up (`None`: connected).
    down_since: Option<tokio::time::Instant>,
    /// The notice stream ended (the pool shut down).
    pub(crate) closed: bool,
}

impl<'a> GatewayWatch<'a> {
    pub(crate) fn new(addr: &'a str, patience: Duration) -> Self {
        Self {
            addr,
            patience,
            down_since: None,
            closed: false,
        }
    }

    pub(crate) fn on_notice(&mut self, notice: &PoolNotice, progress: &Progress) {
        let text = match notice {
            PoolNotice::Disconnected { reason, .. } => {
                self.down_since
                    .get_or_insert_with(tokio::time::Instant::now);
                format!(
                    "lost the connection to {} ({reason}); reconnecting for up to {} — \
                     requests in flight are asked again",
                    self.addr,
                    human(self.patience)
                )
            }
            PoolNotice::Connected { client_id, .. } => match self.down_since.take() {
                Some(since) => format!(
                    "reconnected to {} (client id {client_id}) after {}",
                    self.addr,
                    human(since.elapsed())
                ),
                None => return,
            },
            PoolNotice::PacingStore {
                error: Some(error), ..
            } => format!("{error}; requests wait for it, none is sent unpaced"),
            PoolNotice::PacingStore { error: None, .. } => {
                "the pacing store answers again; requests go on".to_owned()
            }
            PoolNotice::Connectivity { change, .. } => {
                format!("{} reports its link to IB: {change:?}", self.addr)
            }
            PoolNotice::LeaseLost { error, .. } => format!("lost the connection's lease: {error}"),
            PoolNotice::PacingWait { until, held_by, .. } => {
                // Said by the progress when long (once per wait), not here.
                progress.waiting(*until, *held_by, None);
                return;
            }
            // Streams are not a fetch's; a missed notice changes nothing it would say.
            _ => return,
        };
        tracing::debug!(%text, "pool notice");
        progress.bar.suspend(|| {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "ibconn: {text}");
        });
    }

    /// Resolves once the gateway has been away longer than the patience (never while up).
    pub(crate) async fn given_up(&self) {
        match self.down_since {
            Some(since) => tokio::time::sleep_until(since + self.patience).await,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn give_up_message(&self) -> String {
        format!(
            "{} stayed unreachable for {}; stopped (what was fetched is written — run the same \
             command again to resume; fetch.gateway_down_secs sets the patience)",
            self.addr,
            human(self.patience)
        )
    }
}
