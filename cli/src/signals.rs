//! SIGINT (Ctrl-C) and SIGTERM (`docker stop`) stop a fetch the same way in every mode: the first
//! asks it to stop — what was fetched is written and the exit code says "partial" — and a second
//! ends the process at once (exit 130), for a user who does not want to wait for the write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A stop request set by the first SIGINT or SIGTERM. Registered once, for the whole run, so a
/// signal that arrives while a checkpoint is written is not lost.
#[derive(Debug, Clone)]
pub(crate) struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Install the handlers (a failure is logged: the default handlers then stay, as before).
    pub(crate) fn install() -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Order matters: the shutdown check runs first, so only a second signal exits.
            let registered =
                signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
                    .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)));
            if let Err(e) = registered {
                tracing::warn!(signal, error = %e, "cannot handle the signal; it ends the process");
            }
        }
        Self(flag)
    }

    /// Whether a stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Resolves once a stop was asked for (polls every 50 ms).
    pub(crate) async fn wait(&self) {
        while !self.requested() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
