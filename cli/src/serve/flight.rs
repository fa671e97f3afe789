//! Single flight: callers that arrive while a job is running share that job and its result
//! instead of starting (or queueing for) their own.
//!
//! `/pool/health` runs its probe through one, so a burst of health calls costs one probe, and
//! answers in about one probe's time, instead of a queue of probes each up to the probe timeout
//! long. The job runs as its own task: a caller that gives up (its request timed out, its client
//! went away) does not cancel it for the others, and its result still lands (e.g. in `/metrics`).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Why a shared job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FlightError {
    /// The job's task ended without a result (aborted at shutdown, or it panicked).
    #[error("the shared job ended without a result")]
    Ended,
}

/// The job in flight.
#[derive(Debug)]
struct InFlight<T> {
    /// Tells this job's entry from a later one's (see [`Clear`]).
    id: u64,
    result: watch::Receiver<Option<T>>,
    task: AbortHandle,
}

/// The slot: the job in flight, if any, and the next job id.
#[derive(Debug)]
struct Slot<T> {
    current: Option<InFlight<T>>,
    next_id: u64,
}

/// A single-flight runner of jobs returning `T`.
#[derive(Debug)]
pub(crate) struct SingleFlight<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            slot: Arc::new(Mutex::new(Slot {
                current: None,
                next_id: 0,
            })),
        }
    }
}

/// Empties the slot when its job's task ends, however it ends (done, aborted, panicked), if the
/// slot still holds that job.
struct Clear<T> {
    slot: Arc<Mutex<Slot<T>>>,
    id: u64,
}

impl<T> Drop for Clear<T> {
    fn drop(&mut self) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.current.as_ref().is_some_and(|f| f.id == self.id) {
            slot.current = None;
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// The result of the job in flight, or of a new one made by `start` when none is.
    pub(crate) async fn run<F, Fut>(&self, start: F) -> Result<T, FlightError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let mut result = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            match &slot.current {
                Some(f) => f.result.clone(),
                None => {
                    let id = slot.next_id;
                    slot.next_id = slot.next_id.wrapping_add(1);
                    let (tx, rx) = watch::channel(None);
                    let job = start();
                    let clear = Clear {
                        slot: Arc::clone(&self.slot),
                        id,
                    };
                    // The task cannot clear the slot before it is filled: that needs this lock.
                    let task = tokio::spawn(async move {
                        let _clear = clear;
                        tx.send_replace(Some(job.await));
                    });
                    slot.current = Some(InFlight {
                        id,
                        result: rx.clone(),
                        task: task.abort_handle(),
                    });
                    rx
                }
            }
        };
        let got = match result.wait_for(Option::is_some).await {
            Ok(got) => got.clone().ok_or(FlightError::Ended),
            Err(_) => Err(FlightError::Ended),
        };
        got
    }

    /// Abort the job in flight, if any (its waiters get [`FlightError::Ended`]).
    pub(crate) fn abort(&self) {
        let taken = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .take();
        if let Some(f) = taken {
            f.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_job_and_later_ones_start_another() {
        let flight = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let call = |flight: Arc<SingleFlight<usize>>, runs: Arc<AtomicUsize>| async move {
            flight
                .run(|| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
        };
        let calls: Vec<_> = (0..10)
            .map(|_| tokio::spawn(call(Arc::clone(&flight), Arc::clone(&runs))))
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap(), Ok(1));
        }
        assert_eq!(call(Arc::clone(&flight), Arc::clone(&runs)).await, Ok(2));
    }

    #[tokio::test]
    async fn an_aborted_job_ends_its_waiters_and_frees_the_slot() {
        let flight = Arc::new(SingleFlight::<u8>::default());
        let f = Arc::clone(&flight);
        let waiter = tokio::spawn(async move {
            f.run(|| async {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                1
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        flight.abort();
        assert_eq!(waiter.await.unwrap(), Err(FlightError::Ended));
        assert_eq!(flight.run(|| async { 2 }).await, Ok(2));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_cancel_the_job() {
        let flight = Arc::new(SingleFlight::<u8>::default());
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            flight.run(|| async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                d.fetch_add(1, Ordering::SeqCst);
                7
            }),
        )
        .await;
        assert!(gave_up.is_err());
        // A later caller joins the same job.
        assert_eq!(flight.run(|| async { 8 }).await, Ok(7));
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
