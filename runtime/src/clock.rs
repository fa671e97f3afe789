//! The clocks the driver reports to the core (which never reads one): the wall clock for
//! registry leases and the suspend-including clock for sleep detection.

use std::time::{Duration, SystemTime};

use ibconn_core::client_id::UnixMillis;

/// Both clocks, as [`Driver::handle_timeout`](ibconn_core::pool::Driver::handle_timeout) asks.
pub(crate) fn clocks() -> (Duration, UnixMillis) {
    (boottime(), wall())
}

/// Wall clock for registry leases.
pub(crate) fn wall() -> UnixMillis {
    UnixMillis::from_system_time(SystemTime::now())
}

/// The suspend-including clock (`CLOCK_BOOTTIME`) for sleep detection.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Elsewhere there is no suspend-including clock; sleep detection stays off.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boottime() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}
