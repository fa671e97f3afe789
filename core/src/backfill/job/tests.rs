//! Tests of the job against scripted outcomes: merging, every row of the outcome policy, the
//! head-timestamp clamp, resumes and tentative empties.

use std::time::Duration;

use super::*;
use crate::bar_size::BarSize;
use crate::classify::{classify, ErrorClass, RequestContext};
use crate::connection::{Answer, ConnectionError, RequestError};
use crate::message::{BarTime, Contract};
use crate::pool::CallError;
use crate::query::EndTime;
use crate::what_to_show::WhatToShow;

const T0: i64 = 1_767_225_600; // 2026-01-01 00:00 UTC

fn spec(bar_size: BarSize) -> BackfillSpec {
    BackfillSpec {
        contract: Contract::stock("AAPL"),
        bar_size,
        what_to_show: WhatToShow::Trades,
        use_rth: false,
    }
}

/// A flat bar at `t` (epoch seconds).
pub(super) fn bar(t: i64) -> Bar {
    Bar {
        date: BarTime::Epoch(t),
        open: 1.0,
        high: 1.0,
        low: 1.0,
        close: 1.0,
        volume: 1.0,
        wap: 1.0,
        count: 1,
    }
}

/// Every bar of a chunk, one per `step` seconds.
fn bars_of(chunk: &Chunk, step: i64) -> Answer {
    Answer::Bars {
        bars: (chunk.start_unix..chunk.end_unix)
            .step_by(usize::try_from(step).unwrap())
            .map(bar)
            .collect(),
        start: String::new(),
        end: String::new(),
    }
}

fn ib(code: i32, message: &str) -> CallError {
    let c = classify(code, message, &RequestContext::default());
    CallError::Request(RequestError::Api {
        code,
        message: message.into(),
        class: c.class,
        advice: c.advice,
    })
}

fn no_data_error() -> CallError {
    ib(
        162,
        "Historical Market Data Service error message:HMDS query returned no data: AAPL",
    )
}

/// `[from, to)` hours after `T0` of 1-minute bars (one per minute).
fn held(from_h: i64, to_h: i64) -> Vec<Bar> {
    (T0 + from_h * 3_600..T0 + to_h * 3_600)
        .step_by(60)
        .map(bar)
        .collect()
}

fn pending(j: &BackfillJob) -> Vec<usize> {
    j.pending_chunks().map(|c| c.index).collect()
}

fn job(hours: i64, held: Vec<Bar>) -> BackfillJob {
    BackfillJob::new(
        spec(BarSize::Min1),
        T0,
        T0 + hours * 3_600,
        held,
        JobConfig::default(),
    )
    .unwrap()
}

/// Answer every query with all its bars.
fn run_all(job: &mut BackfillJob) {
    while let Some((id, _)) = job.poll_query() {
        let answer = bars_of(job.chunk(id).unwrap(), 60);
        job.on_result(id, Ok(answer));
    }
}

#[test]
fn a_clean_backfill_merges_every_chunk() {
    let mut j = job(72, Vec::new());
    assert_eq!(j.progress().chunks_total, 3);
    run_all(&mut j);
    assert!(j.is_complete());
    let p = j.progress();
    assert_eq!((p.bars, p.requests, p.chunks_done), (72 * 60, 3, 3));
    let s = j.summary();
    assert!(s.complete);
    assert_eq!(s.bar_size, BarSize::Min1);
}

#[test]
fn queries_carry_the_chunk_window_and_concurrency_is_the_callers() {
    let mut j = job(72, Vec::new());
    let a = j.poll_query().unwrap();
    let b = j.poll_query().unwrap();
    assert_eq!((a.0, b.0), (ChunkId(0), ChunkId(1)));
    let Query::HistoricalData(r) = &a.1 else {
        panic!("not historical")
    };
    assert_eq!(r.end, EndTime::At(T0 + 86_400));
    assert_eq!(r.to_wire(0).end_date_time, "20260102-00:00:00");
    assert_eq!(j.progress().in_flight, 2);
    assert!(!j.is_finished());
}

#[test]
fn no_data_is_an_empty_chunk_not_an_error() {
    let mut j = job(48, Vec::new());
    let (a, _) = j.poll_query().unwrap();
    j.on_result(
        a,
        Err(ib(
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
        )),
    );
    run_all(&mut j);
    assert!(j.is_complete());
    let p = j.progress();
    assert_eq!((p.chunks_empty, p.chunks_failed, p.bars), (1, 0, 24 * 60));
}

#[test]
fn pacing_requeues_the_chunk() {
    let mut j = job(24, Vec::new());
    let (a, _) = j.poll_query().unwrap();
    j.on_result(
        a,
        Err(ib(
            162,
            "Historical Market Data Service error message:Historical data request pacing violation",
        )),
    );
    assert!(!j.is_finished());
    run_all(&mut j);
    let p = j.progress();
    assert!(j.is_complete());
    assert_eq!((p.pacing_requeues, p.requests, p.bars), (1, 2, 1440));
}

#[test]
fn a_localized_162_fails_the_chunk_and_keeps_the_rest() {
    let mut j = job(48, Vec::new());
    let (a, _) = j.poll_query().unwrap();
    let (b, _) = j.poll_query().unwrap();
    j.on_result(a, Ok(bars_of(j.chunk(a).unwrap(), 60)));
    j.on_result(
        b,
        Err(ib(
            162,
            "Error del servicio de datos históricos:violación del ritmo",
        )),
    );
    assert!(j.is_finished() && !j.is_complete());
    assert_eq!(j.progress().bars, 1440);
    assert!(matches!(
        j.failures()[0].error,
        ChunkError::Rejected {
            class: ErrorClass::Unknown,
            ..
        }
    ));
    assert_eq!(j.summary().failures.len(), 1);
}

#[test]
fn timeouts_and_closed_connections_are_retried_then_fail() {
    let mut j = job(24, Vec::new());
    let closed = CallError::Request(RequestError::ConnectionClosed(ConnectionError::Transport(
        "reset".into(),
    )));
    let timeout = CallError::Request(RequestError::Timeout {
        after: Duration::from_secs(60),
    });
    for n in 0..3 {
        let (a, _) = j.poll_query().unwrap();
        j.on_result(
            a,
            Err(if n % 2 == 0 {
                closed.clone()
            } else {
                timeout.clone()
            }),
        );
    }
    assert_eq!(j.progress().retries, 3);
    assert!(!j.is_finished());
    let (a, _) = j.poll_query().unwrap();
    j.on_result(a, Err(timeout));
    assert!(j.is_finished() && !j.is_complete());
    assert!(matches!(
        j.failures()[0].error,
        ChunkError::RetriesExhausted { attempts: 4, .. }
    ));
}

#[test]
fn pool_errors_and_odd_answers_fail_typed() {
    let mut j = job(48, Vec::new());
    let (a, _) = j.poll_query().unwrap();
    let (b, _) = j.poll_query().unwrap();
    j.on_result(a, Err(CallError::Released));
    j.on_result(b, Ok(Answer::CurrentTime(1)));
    assert!(matches!(j.failures()[0].error, ChunkError::Pool(_)));
    assert!(matches!(
        j.failures()[1].error,
        ChunkError::UnexpectedAnswer
    ));
    // A late or repeated outcome changes nothing.
    j.on_result(a, Ok(bars_of(&j.chunk(a).unwrap().clone(), 60)));
    assert_eq!(j.progress().bars, 0);
}

#[test]
fn the_head_timestamp_clamps_once() {
    let mut j = job(72, Vec::new());
    let head = T0 + 30 * 3_600;
    j.clamp_to_head_timestamp(head);
    j.clamp_to_head_timestamp(T0 + 60 * 3_600); // ignored
    let (a, q) = j.poll_query().unwrap();
    assert_eq!(a, ChunkId(1));
    let Query::HistoricalData(r) = q else {
        panic!("not historical")
    };
    assert_eq!(r.duration.to_string(), "64800 S");
    j.on_result(a, Ok(bars_of(j.chunk(a).unwrap(), 60)));
    run_all(&mut j);
    let s = j.summary();
    assert_eq!(s.clamped_to_unix, Some(head));
    assert_eq!(s.progress.chunks_empty, 1);
    assert_eq!(s.progress.bars, 42 * 60);
}

#[test]
fn a_before_head_verdict_clamps_and_retries_the_chunk() {
    let mut j = job(48, Vec::new());
    let head = T0 + 6 * 3_600;
    let context = RequestContext {
        start_unix: Some(T0),
        head_timestamp_unix: Some(head),
        ..RequestContext::default()
    };
    let text = "Historical Market Data Service error message:HMDS query returned no data: AAPL";
    let c = classify(162, text, &context);
    let (a, _) = j.poll_query().unwrap();
    let err = CallError::Request(RequestError::Api {
        code: 162,
        message: text.into(),
        class: c.class,
        advice: c.advice,
    });
    j.on_result(a, Err(err.clone()));
    assert_eq!(j.chunk(a).unwrap().start_unix, head);
    run_all(&mut j);
    assert!(j.is_complete());
    assert_eq!(j.progress().bars, 42 * 60);
}

#[test]
fn a_gap_left_by_a_failed_chunk_is_fetched_on_resume() {
    let mut first = job(72, Vec::new());
    let ids: Vec<ChunkId> = std::iter::from_fn(|| first.poll_query().map(|q| q.0)).collect();
    let no_data = ib(
        162,
        "Historical Market Data Service error message:HMDS query returned no data: AAPL",
    );
    first.on_result(ids[0], Err(no_data));
    first.on_result(ids[1], Err(CallError::Released));
    first.on_result(ids[2], Ok(bars_of(first.chunk(ids[2]).unwrap(), 60)));
    // The empty day is tentative (asked again), the failed day is neither.
    assert_eq!(
        first.covered_spans(),
        vec![(T0 + 2 * 86_400, T0 + 3 * 86_400)]
    );
    assert_eq!(first.tentative_empty_spans(), vec![(T0, T0 + 86_400)]);
    let held: Vec<Bar> = first.bars().iter().map(|(_, b)| b.clone()).collect();

    // From the bars alone: the empty day and the failed day are both asked again.
    let mut resumed = job(72, held.clone());
    assert_eq!(resumed.pending_chunks().count(), 3);
    // With the first run's coverage: the failed day, and the empty day once more.
    resumed.skip_covered(&first.covered_spans());
    resumed.note_empty_before(&first.tentative_empty_spans());
    let pending: Vec<usize> = resumed.pending_chunks().map(|c| c.index).collect();
    assert_eq!(pending, vec![0, 1]);
    let (a, _) = resumed.poll_query().unwrap();
    resumed.on_result(a, Err(no_data_error()));
    run_all(&mut resumed);
    assert!(resumed.is_complete());
    assert_eq!(resumed.progress().bars, 2 * 24 * 60);
    assert_eq!(resumed.covered_spans(), vec![(T0, T0 + 3 * 86_400)]);
    assert!(resumed.tentative_empty_spans().is_empty());
}

#[test]
fn a_resume_skips_covered_chunks_and_adds_no_duplicates() {
    let mut first = job(72, Vec::new());
    // Fetch only the first chunk and a half, as an interrupted run would have.
    let (a, _) = first.poll_query().unwrap();
    first.on_result(a, Ok(bars_of(first.chunk(a).unwrap(), 60)));
    let held: Vec<Bar> = first
        .bars()
        .iter()
        .map(|(_, b)| b.clone())
        .take(200)
        .collect();
    let mut resumed = job(72, held);
    let p = resumed.progress();
    assert_eq!((p.chunks_resumed, p.bars), (0, 200));
    run_all(&mut resumed);
    let p = resumed.progress();
    assert_eq!((p.bars, p.duplicates, p.requests), (72 * 60, 200, 3));

    let all: Vec<Bar> = resumed.bars().iter().map(|(_, b)| b.clone()).collect();
    let mut again = job(72, all);
    // Only the middle day: the ones holding the oldest and the newest bar are asked again.
    assert_eq!(again.progress().chunks_resumed, 1);
    run_all(&mut again);
    assert_eq!(again.progress().bars, 72 * 60);
    assert_eq!(again.progress().bars_added, 0);
}

#[test]
fn an_earlier_run_with_another_from_leaves_no_hole() {
    // An earlier run from T0+12h: its chunks are [12h, 24h), then whole days; day 2 failed.
    let mut first = BackfillJob::new(
        spec(BarSize::Min1),
        T0 + 12 * 3_600,
        T0 + 96 * 3_600,
        Vec::new(),
        JobConfig::default(),
    )
    .unwrap();
    let spans: Vec<(i64, i64)> = (0..4)
        .map(|i| {
            let c = first.chunk(ChunkId(i)).unwrap();
            (c.start_unix, c.end_unix)
        })
        .collect();
    assert_eq!(spans[0], (T0 + 12 * 3_600, T0 + 86_400));
    assert_eq!(spans[1], (T0 + 86_400, T0 + 2 * 86_400));
    while let Some((id, _)) = first.poll_query() {
        let result = if id == ChunkId(2) {
            Err(CallError::Released)
        } else {
            Ok(bars_of(first.chunk(id).unwrap(), 60))
        };
        first.on_result(id, result);
    }
    let held: Vec<Bar> = first.bars().iter().map(|(_, b)| b.clone()).collect();

    // From T0, bars only: day 0 (cut by the earlier range) and day 2 (failed) are asked;
    // day 1 was fetched whole; day 3 holds the newest bar.
    let mut resumed = job(96, held);
    assert_eq!(pending(&resumed), vec![0, 2, 3]);
    assert_eq!(resumed.progress().chunks_resumed, 1);
    run_all(&mut resumed);
    assert!(resumed.is_complete());
    assert_eq!(resumed.progress().bars, 96 * 60, "no hole left");
}

#[test]
fn one_empty_answer_is_tentative_and_a_second_makes_it_final() {
    let mut first = job(72, Vec::new());
    let (a, _) = first.poll_query().unwrap();
    let (b, _) = first.poll_query().unwrap();
    first.on_result(a, Err(no_data_error()));
    first.on_result(
        b,
        Ok(Answer::Bars {
            bars: Vec::new(),
            start: String::new(),
            end: String::new(),
        }),
    );
    run_all(&mut first);
    assert!(first.is_complete());
    let p = first.progress();
    assert_eq!((p.chunks_empty, p.chunks_empty_tentative), (2, 2));
    assert_eq!(
        first.covered_spans(),
        vec![(T0 + 2 * 86_400, T0 + 3 * 86_400)]
    );
    assert_eq!(first.tentative_empty_spans(), vec![(T0, T0 + 2 * 86_400)]);

    // Next run: both days are asked again; day 0 is empty again (final), day 1 had bars
    // after all (the first answer was spurious).
    let mut second = job(72, Vec::new());
    second.skip_covered(&first.covered_spans());
    second.note_empty_before(&first.tentative_empty_spans());
    assert_eq!(pending(&second), vec![0, 1]);
    let (a, _) = second.poll_query().unwrap();
    second.on_result(a, Err(no_data_error()));
    run_all(&mut second);
    let p = second.progress();
    assert_eq!((p.chunks_empty, p.chunks_empty_tentative), (1, 0));
    assert_eq!((p.chunks_resumed, p.bars), (1, 24 * 60));
    assert_eq!(second.covered_spans(), vec![(T0, T0 + 3 * 86_400)]);
    assert!(second.tentative_empty_spans().is_empty());

    // A third run skips everything.
    let mut third = job(72, Vec::new());
    third.skip_covered(&second.covered_spans());
    assert!(third.is_finished());
}

#[test]
fn empties_noted_after_the_answer_are_final_too() {
    let mut j = job(24, Vec::new());
    let (a, _) = j.poll_query().unwrap();
    j.on_result(a, Err(no_data_error()));
    assert!(j.covered_spans().is_empty());
    j.note_empty_before(&[(T0 - 86_400, T0 + 86_400)]);
    assert_eq!(j.covered_spans(), vec![(T0, T0 + 86_400)]);
    assert_eq!(j.progress().chunks_empty_tentative, 0);
}

#[test]
fn a_wider_chunk_than_the_earlier_empty_one_stays_tentative() {
    // The earlier run's empty answer covered only the afternoon of day 0.
    let mut j = job(24, Vec::new());
    j.note_empty_before(&[(T0 + 12 * 3_600, T0 + 86_400)]);
    let (a, _) = j.poll_query().unwrap();
    j.on_result(a, Err(no_data_error()));
    assert!(j.covered_spans().is_empty());
    assert_eq!(j.tentative_empty_spans(), vec![(T0, T0 + 86_400)]);
}

#[test]
fn head_timestamp_empties_are_final_at_once() {
    let mut j = job(96, Vec::new());
    j.clamp_to_head_timestamp(T0 + 30 * 3_600);
    assert_eq!(j.covered_spans(), vec![(T0, T0 + 86_400)]);
    // A later verdict naming a head at T0+50h: final for the chunk that ends before it,
    // tentative for the one reaching past it (its tail may have data).
    let later_head = |start: i64| {
        let context = RequestContext {
            start_unix: Some(start),
            head_timestamp_unix: Some(T0 + 50 * 3_600),
            ..RequestContext::default()
        };
        let text = "Historical Market Data Service error message:HMDS query returned no data";
        let c = classify(162, text, &context);
        assert_eq!(c.class, ErrorClass::BeforeHeadTimestamp);
        CallError::Request(RequestError::Api {
            code: 162,
            message: text.into(),
            class: c.class,
            advice: c.advice,
        })
    };
    let (a, _) = j.poll_query().unwrap();
    let (b, _) = j.poll_query().unwrap();
    let (c, _) = j.poll_query().unwrap();
    assert_eq!((a, b, c), (ChunkId(1), ChunkId(2), ChunkId(3)));
    j.on_result(a, Err(later_head(T0 + 30 * 3_600)));
    j.on_result(b, Err(later_head(T0 + 48 * 3_600)));
    j.on_result(c, Ok(bars_of(j.chunk(c).unwrap(), 60)));
    assert!(j.is_complete());
    assert_eq!(
        j.covered_spans(),
        vec![(T0, T0 + 2 * 86_400), (T0 + 3 * 86_400, T0 + 4 * 86_400)]
    );
    assert_eq!(
        j.tentative_empty_spans(),
        vec![(T0 + 2 * 86_400, T0 + 3 * 86_400)]
    );
    let p = j.progress();
    assert_eq!((p.chunks_empty, p.chunks_empty_tentative), (3, 1));
}

#[test]
fn no_data_for_a_chunk_in_flight_before_the_clamp_is_final() {
    let mut j = job(48, Vec::new());
    let (a, _) = j.poll_query().unwrap();
    j.clamp_to_head_timestamp(T0 + 30 * 3_600);
    j.on_result(a, Err(no_data_error()));
    assert_eq!(j.covered_spans(), vec![(T0, T0 + 86_400)]);
    assert!(j.tentative_empty_spans().is_empty());
}

#[test]
fn exact_coverage_overrides_the_bar_heuristic() {
    // Three earlier runs left [0, 12h), [24h, 36h) and [60h, 72h): day 1 is half covered.
    let spans = [
        (T0, T0 + 12 * 3_600),
        (T0 + 24 * 3_600, T0 + 36 * 3_600),
        (T0 + 60 * 3_600, T0 + 72 * 3_600),
    ];
    let bars: Vec<Bar> = spans
        .iter()
        .flat_map(|&(s, e)| held((s - T0) / 3_600, (e - T0) / 3_600))
        .collect();
    // The heuristic takes day 1 (holding bars, neither oldest nor newest) as fetched.
    assert_eq!(pending(&job(72, bars.clone())), vec![0, 2]);

    let exact = JobConfig {
        infer_coverage_from_bars: false,
        ..JobConfig::default()
    };
    let mut j = BackfillJob::new(
        spec(BarSize::Min1),
        T0,
        T0 + 72 * 3_600,
        bars.clone(),
        exact,
    )
    .unwrap();
    assert_eq!(j.progress().bars, 36 * 60, "held bars are kept");
    j.skip_covered(&spans);
    assert_eq!(pending(&j), vec![0, 1, 2], "no chunk is wholly covered");
    run_all(&mut j);
    let p = j.progress();
    assert_eq!(
        (p.bars, p.bars_added, p.duplicates),
        (72 * 60, 36 * 60, 36 * 60)
    );

    // Chunks wholly inside the exact coverage are skipped.
    let mut k = BackfillJob::new(spec(BarSize::Min1), T0, T0 + 72 * 3_600, bars, exact).unwrap();
    k.skip_covered(&[(T0, T0 + 48 * 3_600)]);
    assert_eq!(pending(&k), vec![2]);
    assert_eq!(k.progress().chunks_resumed, 2);
}
