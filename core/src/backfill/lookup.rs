//! Before any chunk, a job can look its contract up once ([`JobConfig::lookup`]): an unknown
//! symbol then ends the job after one request instead of one failure per chunk (a week of
//! 5-second bars is 168 requests, twenty minutes of IB's pacing for a typo), the contract's
//! trading hours tell which chunks lie in closed sessions ([`super::sessions`]), and the
//! contract's head timestamp clamps the range before anything older is asked for.
//!
//! [`JobConfig::lookup`]: super::JobConfig::lookup

use serde::Serialize;

use super::job::ChunkId;
use crate::classify::ErrorClass;
use crate::connection::{Answer, Query, RequestError};
use crate::date_format::DateFormat;
use crate::message::{Contract, ContractDetails};
use crate::pool::CallError;
use crate::query::HeadTimestampQuery;
use crate::what_to_show::WhatToShow;

/// Why a job ended before its first chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// IB has no such contract (error 200, "No security definition has been found").
    #[error("no such contract: IB error {code}: {message}")]
    UnknownContract {
        /// IB's code.
        code: i32,
        /// IB's text.
        message: String,
    },
    /// The lookup itself kept failing (timeouts, lost connections) or was refused otherwise.
    #[error("contract lookup failed after {attempts} attempts: {last}")]
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last error, as text.
        last: String,
    },
}

impl LookupError {
    /// Whether the contract does not exist (a CLI's "invalid symbol" exit), as opposed to a
    /// lookup that could not be made.
    pub fn is_unknown_contract(&self) -> bool {
        matches!(self, Self::UnknownContract { .. })
    }
}

/// Where the lookup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Contract { in_flight: bool },
    Head { in_flight: bool },
    Done,
}

/// The lookup phase of a job: contract details, then the head timestamp.
#[derive(Debug, Clone)]
pub(super) struct Lookup {
    stage: Stage,
    attempts: u32,
    max_retries: u32,
}

/// What an answer to a lookup query means for the job.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Nothing to do yet (the next lookup query is pending, or the answer was stale).
    Continue,
    /// The contract's details (every match): the job takes its sessions from them; the head
    /// timestamp comes next.
    Details(Vec<(Contract, ContractDetails)>),
    /// The head timestamp, unix seconds: clamp the range to it.
    Head(i64),
    /// The job ends before its first chunk.
    Fatal(LookupError),
}

impl Lookup {
    /// The id of the contract-details query (no chunk has it).
    pub(super) const CONTRACT: ChunkId = ChunkId(usize::MAX);
    /// The id of the head-timestamp query.
    pub(super) const HEAD: ChunkId = ChunkId(usize::MAX - 1);

    pub(super) fn new(max_retries: u32) -> Self {
        Self {
            stage: Stage::Contract { in_flight: false },
            attempts: 0,
            max_retries,
        }
    }

    /// Whether chunks may be sent (the lookup finished).
    pub(super) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The next lookup query for `contract`, if one is due now.
    pub(super) fn poll(
        &mut self,
        contract: &Contract,
        what: WhatToShow,
        rth: bool,
    ) -> Option<(ChunkId, Query)> {
        match self.stage {
            Stage::Contract { in_flight: false } => {
                self.stage = Stage::Contract { in_flight: true };
                self.attempts += 1;
                Some((Self::CONTRACT, Query::ContractDetails(contract.clone())))
            }
            Stage::Head { in_flight: false } => {
                self.stage = Stage::Head { in_flight: true };
                self.attempts += 1;
                // The contract exactly as the chunks will name it (not by the conId IB found):
                // pacers key a contract's burst window by how requests name it.
                let contract = contract.clone();
                Some((
                    Self::HEAD,
                    Query::HeadTimestamp(HeadTimestampQuery {
                        contract,
                        what_to_show: what,
                        use_rth: rth,
                        format_date: DateFormat::Epoch,
                    }),
                ))
            }
            _ => None,
        }
    }

    /// The outcome of the lookup query `id`.
    pub(super) fn on_result(&mut self, id: ChunkId, result: Result<Answer, CallError>) -> Verdict {
        match (self.stage, id) {
            (Stage::Contract { in_flight: true }, Self::CONTRACT) => self.on_contract(result),
            (Stage::Head { in_flight: true }, Self::HEAD) => self.on_head(result),
            _ => Verdict::Continue,
        }
    }

    fn on_contract(&mut self, result: Result<Answer, CallError>) -> Verdict {
        match result {
            Ok(Answer::ContractDetails(found)) if !found.is_empty() => {
                self.next(Stage::Head { in_flight: false });
                Verdict::Details(found)
            }
            Ok(_) => Verdict::Fatal(LookupError::UnknownContract {
                code: 200,
                message: "an empty contract-details answer".to_owned(),
            }),
            Err(CallError::Request(RequestError::Api {
                code,
                message,
                class: ErrorClass::NoSecurityDefinition,
                ..
            })) => Verdict::Fatal(LookupError::UnknownContract { code, message }),
            Err(e) => self.retry(Stage::Contract { in_flight: false }, &e),
        }
    }

    fn on_head(&mut self, result: Result<Answer, CallError>) -> Verdict {
        match result {
            Ok(Answer::HeadTimestamp(raw)) => {
                self.stage = Stage::Done;
                parse_head_timestamp(&raw).map_or(Verdict::Continue, Verdict::Head)
            }
            // Transient: ask again. Anything else (IB has no head for this what-to-show, …):
            // go on without a clamp; the chunks' own answers still say "before the head".
            Err(e) if transient(&e) => self.retry(Stage::Head { in_flight: false }, &e),
            _ => self.next(Stage::Done),
        }
    }

    fn next(&mut self, stage: Stage) -> Verdict {
        self.stage = stage;
        self.attempts = 0;
        Verdict::Continue
    }

    fn retry(&mut self, again: Stage, e: &CallError) -> Verdict {
        if transient(e) && self.attempts <= self.max_retries {
            self.stage = again;
            return Verdict::Continue;
        }
        Verdict::Fatal(LookupError::Failed {
            attempts: self.attempts,
            last: e.to_string(),
        })
    }
}

/// Failures that asking again can fix: the same as a chunk's retries.
fn transient(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Request(
            RequestError::Timeout { .. }
                | RequestError::ConnectionClosed(_)
                | RequestError::Cancelled
        ) | CallError::Request(RequestError::Api {
            class: ErrorClass::Pacing
                | ErrorClass::RateExceeded
                | ErrorClass::QueryCancelled
                | ErrorClass::DuplicateId,
            ..
        })
    )
}

/// IB's head timestamp with `formatDate=2`: epoch seconds, or `YYYYMMDD-HH:MM:SS` (UTC) from
/// some builds. `None` for anything else.
pub fn parse_head_timestamp(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(t) = raw.parse() {
        return Some(t);
    }
    let (date, time) = raw.split_once(['-', ' '])?;
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u32>().ok());
    let (y, m, d) = (
        num(date.get(..4))?,
        num(date.get(4..6))?,
        num(date.get(6..8))?,
    );
    let mut hms = time.trim().split(':').map(|x| x.parse::<u32>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    let valid = date.len() == 8
        && (1..=12).contains(&m)
        && (1..=31).contains(&d)
        && h < 24
        && mi < 60
        && s < 61;
    if !valid {
        return None;
    }
    Some(crate::civil::utc(i32::try_from(y).ok()?, m, d, h, mi, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::{BackfillJob, BackfillSpec, JobConfig};
    use crate::bar_size::BarSize;
    use crate::classify::Advice;

    /// A week of 5-second bars for `symbol` (168 chunks), looking the contract up first.
    fn job(symbol: &str) -> BackfillJob {
        let spec = BackfillSpec {
            contract: Contract::stock(symbol),
            bar_size: BarSize::Sec5,
            what_to_show: WhatToShow::Trades,
            use_rth: false,
        };
        let cfg = JobConfig {
            lookup: true,
            ..JobConfig::default()
        };
        let monday = 1_764_547_200; // 2025-12-01
        BackfillJob::new(spec, monday, monday + 7 * 86_400, [], cfg).unwrap()
    }

    fn api(code: i32, class: ErrorClass) -> CallError {
        CallError::Request(RequestError::Api {
            code,
            message: "No security definition has been found for the request".into(),
            class,
            advice: Advice::Fail,
        })
    }

    #[test]
    fn an_unknown_contract_ends_the_job_after_one_request() {
        let mut job = job("NOPE");
        let (id, query) = job.poll_query().unwrap();
        assert!(matches!(query, Query::ContractDetails(_)));
        assert_eq!(
            job.poll_query(),
            None,
            "nothing else while the lookup is out"
        );
        job.on_result(id, Err(api(200, ErrorClass::NoSecurityDefinition)));
        assert!(job.is_finished() && !job.is_complete());
        assert!(job
            .lookup_error()
            .is_some_and(LookupError::is_unknown_contract));
        assert_eq!(job.poll_query(), None);
        let p = job.progress();
        assert_eq!((p.lookups, p.requests, p.chunks_total), (1, 0, 168));
    }

    #[test]
    fn a_known_contract_clamps_to_its_head_then_sends_chunks() {
        let mut job = job("AAPL");
        let (id, _) = job.poll_query().unwrap();
        let mut found = Contract::stock("AAPL");
        found.con_id = 265_598;
        job.on_result(
            id,
            Ok(Answer::ContractDetails(vec![(
                found,
                ContractDetails::default(),
            )])),
        );
        let (id, query) = job.poll_query().unwrap();
        let Query::HeadTimestamp(head) = query else {
            panic!("expected the head timestamp, got {query:?}");
        };
        assert_eq!(
            head.contract,
            Contract::stock("AAPL"),
            "named as the chunks name it: one burst window per contract"
        );
        // Data begins on Wednesday: Monday and Tuesday are never asked for.
        let wednesday = 1_764_547_200 + 2 * 86_400;
        job.on_result(id, Ok(Answer::HeadTimestamp(wednesday.to_string())));
        let (_, query) = job.poll_query().unwrap();
        assert!(matches!(query, Query::HistoricalData(_)));
        assert_eq!(job.summary().clamped_to_unix, Some(wednesday));
        assert_eq!(job.pending_chunks().count(), 5 * 24 - 1);
        assert_eq!(job.progress().lookups, 2);
    }

    #[test]
    fn a_chunk_answered_322_duplicate_id_is_asked_again() {
        let mut job = BackfillJob::new(
            job("AAPL").spec().clone(),
            1_764_547_200,
            1_764_547_200 + 3_600,
            [],
            JobConfig::default(),
        )
        .unwrap();
        let (id, _) = job.poll_query().unwrap();
        let dup = "Error processing request.-'bO' : cause - Duplicate ticker id";
        let c = crate::classify::classify(322, dup, &crate::classify::RequestContext::default());
        job.on_result(
            id,
            Err(CallError::Request(RequestError::Api {
                code: 322,
                message: dup.into(),
                class: c.class,
                advice: c.advice,
            })),
        );
        assert!(job.failures().is_empty());
        assert_eq!(job.poll_query().map(|(again, _)| again), Some(id));
        assert_eq!(job.progress().retries, 1);
    }

    #[test]
    fn a_lookup_that_times_out_is_asked_again_then_gives_up() {
        let mut job = job("AAPL");
        for _ in 0..=JobConfig::default().max_retries {
            let (id, _) = job.poll_query().unwrap();
            let timeout = CallError::Request(RequestError::Timeout {
                after: std::time::Duration::from_secs(1),
            });
            job.on_result(id, Err(timeout));
        }
        assert!(matches!(
            job.lookup_error(),
            Some(LookupError::Failed { .. })
        ));
        assert!(job.is_finished());
    }

    #[test]
    fn head_timestamps_parse_in_both_forms() {
        assert_eq!(parse_head_timestamp("1735689600"), Some(1_735_689_600));
        assert_eq!(
            parse_head_timestamp("20250101-00:00:00"),
            Some(1_735_689_600)
        );
        assert_eq!(parse_head_timestamp("19801212 14:30:00"), Some(345_479_400));
        assert_eq!(parse_head_timestamp("20251301-00:00:00"), None);
        assert_eq!(parse_head_timestamp("soon"), None);
    }
}
