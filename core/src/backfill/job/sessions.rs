//! The closed-session filter of a job (see the [job docs](super#closed-sessions)): chunks that
//! meet no open session of the contract are recorded covered-closed instead of asked.

use super::{BackfillJob, State};
use crate::backfill::sessions::{HoursList, NoSessions, SessionCalendar, SessionUse};
use crate::message::{Contract, ContractDetails};

impl BackfillJob {
    /// Take the contract's sessions from `found` (a contract-details answer: every match): each
    /// queued chunk that meets none of them is covered-closed and never asked. The lookup calls
    /// this when the details arrive; a caller without a lookup (e.g. a plan) may call it itself.
    /// Without usable hours — an unknown time zone, no or unreadable hours, matches that disagree
    /// — every chunk stays queued and [`BackfillJob::sessions`] says why.
    pub fn use_sessions_of(&mut self, found: &[(Contract, ContractDetails)]) {
        if matches!(
            self.sessions,
            SessionUse::Off(NoSessions::Disabled | NoSessions::DailyBars)
        ) {
            return;
        }
        let rth = self.spec.use_rth;
        let hours = |d: &ContractDetails| {
            let list = if rth {
                &d.liquid_hours
            } else {
                &d.trading_hours
            };
            (d.time_zone_id.clone(), list.clone())
        };
        let Some((_, first)) = found.first() else {
            self.sessions = SessionUse::Off(NoSessions::NoDetails);
            return;
        };
        if found.iter().any(|(_, d)| hours(d) != hours(first)) {
            self.sessions = SessionUse::Off(NoSessions::Ambiguous {
                matches: found.len(),
            });
            return;
        }
        let calendar = match SessionCalendar::from_details(first, rth) {
            Ok(c) => c,
            Err(why) => {
                tracing::info!(%why, "no session filter: every chunk is asked");
                self.sessions = SessionUse::Off(why);
                return;
            }
        };
        let bar = self.spec.bar_size;
        for entry in &mut self.entries {
            let c = &entry.chunk;
            if entry.state == State::Queued
                && !calendar.may_hold_bars(c.start_unix, c.end_unix, bar)
            {
                entry.state = State::Closed;
            }
        }
        let entries = &self.entries;
        self.queue
            .retain(|&i| entries.get(i).is_some_and(|e| e.state == State::Queued));
        self.sessions = SessionUse::Applied {
            zone: calendar.zone().name(),
            hours: HoursList::for_rth(rth),
        };
    }

    /// Whether chunks of closed sessions are skipped, and if not, why.
    pub fn sessions(&self) -> &SessionUse {
        &self.sessions
    }
}

#[cfg(test)]
mod tests {
    use crate::backfill::sessions::{HoursList, NoSessions, SessionUse};
    use crate::backfill::{spans, BackfillJob, BackfillSpec, ChunkId, JobConfig};
    use crate::bar_size::BarSize;
    use crate::civil::{utc, Date};
    use crate::connection::{Answer, Query};
    use crate::message::{Contract, ContractDetails};
    use crate::what_to_show::WhatToShow;
    use crate::zone::Zone;

    /// 2025-12-01 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_764_547_200;

    /// AAPL's details as a gateway answers on Tuesday 2026-01-06: a week of New York hours.
    fn aapl(zone: &str) -> Vec<(Contract, ContractDetails)> {
        let week = |open: &str, close: &str| {
            (6..=12)
                .map(|d| match d {
                    10 | 11 => format!("202601{d:02}:CLOSED"),
                    _ => format!("202601{d:02}:{open}-202601{d:02}:{close}"),
                })
                .collect::<Vec<_>>()
                .join(";")
        };
        let details = ContractDetails {
            time_zone_id: zone.into(),
            trading_hours: week("0400", "2000"),
            liquid_hours: week("0930", "1600"),
            ..ContractDetails::default()
        };
        vec![(Contract::stock("AAPL"), details)]
    }

    fn week_job(bar_size: BarSize, use_rth: bool, cfg: JobConfig) -> BackfillJob {
        let spec = BackfillSpec {
            contract: Contract::stock("AAPL"),
            bar_size,
            what_to_show: WhatToShow::Trades,
            use_rth,
        };
        BackfillJob::new(spec, MONDAY, MONDAY + 7 * 86_400, [], cfg).unwrap()
    }

    fn with_lookup() -> JobConfig {
        JobConfig {
            lookup: true,
            ..JobConfig::default()
        }
    }

    /// Run the lookup: `found` for the contract details, no head timestamp.
    fn look_up(job: &mut BackfillJob, found: Vec<(Contract, ContractDetails)>) {
        let (id, q) = job.poll_query().unwrap();
        assert!(matches!(q, Query::ContractDetails(_)));
        job.on_result(id, Ok(Answer::ContractDetails(found)));
        let (id, q) = job.poll_query().unwrap();
        assert!(matches!(q, Query::HeadTimestamp(_)));
        job.on_result(id, Ok(Answer::HeadTimestamp("0".into())));
    }

    /// Whether the US stock sessions (04:00–20:00 New York, weekdays; `rth`: 09:30–16:00) hold
    /// second `t` — an independent reading of the calendar, second by second.
    fn trades_at(t: i64, rth: bool) -> bool {
        let ny = Zone::from_ib_name("America/New_York").unwrap();
        let local = ny.to_local(t).unwrap();
        let day = local.div_euclid(86_400);
        let minute = local.rem_euclid(86_400) / 60;
        let (open, close) = if rth { (570, 960) } else { (240, 1200) };
        Date::from_days(day).weekday() < 5 && (open..close).contains(&minute)
    }

    fn bars_for(job: &BackfillJob, id: ChunkId, rth: bool) -> Answer {
        let c = job.chunk(id).unwrap();
        let bars = (c.start_unix..c.end_unix)
            .step_by(5)
            .filter(|&t| trades_at(t, rth))
            .map(crate::backfill::job::tests::bar)
            .collect();
        Answer::Bars {
            bars,
            start: String::new(),
            end: String::new(),
        }
    }

    /// Answer every query until the job is finished; returns the chunk requests sent.
    fn run(job: &mut BackfillJob, rth: bool) -> u64 {
        while let Some((id, _)) = job.poll_query() {
            let answer = bars_for(job, id, rth);
            job.on_result(id, Ok(answer));
        }
        assert!(job.is_complete());
        job.progress().requests
    }

    #[test]
    fn a_week_of_five_second_bars_asks_only_open_sessions_and_loses_no_bar() {
        for (rth, asked) in [(false, 80), (true, 35)] {
            let mut full = week_job(
                BarSize::Sec5,
                rth,
                JobConfig {
                    skip_closed_sessions: false,
                    ..with_lookup()
                },
            );
            look_up(&mut full, aapl("US/Eastern"));
            assert_eq!(full.sessions(), &SessionUse::Off(NoSessions::Disabled));
            assert_eq!(run(&mut full, rth), 168);

            let mut job = week_job(BarSize::Sec5, rth, with_lookup());
            assert_eq!(job.sessions(), &SessionUse::Pending);
            look_up(&mut job, aapl("US/Eastern"));
            assert_eq!(
                job.sessions(),
                &SessionUse::Applied {
                    zone: "America/New_York",
                    hours: HoursList::for_rth(rth),
                }
            );
            let p = job.progress();
            assert_eq!((p.chunks_closed, p.chunks_done), (168 - asked, 168 - asked));
            assert_eq!(job.pending_chunks().count(), asked);
            assert_eq!(run(&mut job, rth), asked as u64);
            assert!(
                job.bars().iter().eq(full.bars().iter()),
                "rth {rth}: the same bars as the full tiling"
            );
            assert_eq!(job.bars().len(), if rth { 23_400 } else { 57_600 });
            // Every chunk is covered: fetched or closed.
            assert_eq!(job.covered_spans(), vec![(MONDAY, MONDAY + 7 * 86_400)]);
            let s = job.summary();
            assert_eq!(s.progress.chunks_closed, 168 - asked);
            assert_eq!(s.progress.chunks_empty, 0);
        }
    }

    #[test]
    fn without_usable_hours_every_chunk_is_asked_and_the_summary_says_why() {
        let mut job = week_job(BarSize::Sec5, false, with_lookup());
        look_up(&mut job, aapl("Mars/Olympus"));
        assert_eq!(
            job.sessions(),
            &SessionUse::Off(NoSessions::UnknownZone {
                zone: "Mars/Olympus".into()
            })
        );
        assert_eq!(job.pending_chunks().count(), 168);
        let json = serde_json::to_value(job.summary()).unwrap();
        assert_eq!(
            json["sessions"],
            serde_json::json!({"status": "off", "reason": "unknown_zone", "zone": "Mars/Olympus"})
        );

        // Two matches with different hours: no guess either.
        let mut job = week_job(BarSize::Sec5, false, with_lookup());
        let mut two = aapl("US/Eastern");
        two.extend(aapl("US/Central"));
        look_up(&mut job, two);
        assert_eq!(
            job.sessions(),
            &SessionUse::Off(NoSessions::Ambiguous { matches: 2 })
        );
        assert_eq!(job.pending_chunks().count(), 168);

        // Daily bars are not filtered; neither is a job whose caller turned the filter off.
        let mut job = week_job(BarSize::Day1, false, with_lookup());
        look_up(&mut job, aapl("US/Eastern"));
        assert_eq!(job.sessions(), &SessionUse::Off(NoSessions::DailyBars));
        let json = serde_json::to_value(job.summary()).unwrap();
        assert_eq!(
            json["sessions"],
            serde_json::json!({"status": "off", "reason": "daily_bars"})
        );
    }

    #[test]
    fn a_resume_after_a_partial_run_keeps_the_closed_chunks_covered() {
        let mut first = week_job(BarSize::Sec5, false, with_lookup());
        look_up(&mut first, aapl("US/Eastern"));
        // Three open chunks answered, then the run stops.
        for _ in 0..3 {
            let (id, _) = first.poll_query().unwrap();
            let answer = bars_for(&first, id, false);
            first.on_result(id, Ok(answer));
        }
        let covered = first.covered_spans();
        let closed = first.progress().chunks_closed;
        assert_eq!(closed, 88);

        // The next run: exact coverage from the sidecar, and a lookup that this time yields no
        // sessions (unknown zone). The closed chunks are still not asked.
        let mut again = week_job(
            BarSize::Sec5,
            false,
            JobConfig {
                infer_coverage_from_bars: false,
                ..with_lookup()
            },
        );
        again.skip_covered(&covered);
        assert_eq!(again.progress().chunks_resumed, 88 + 3);
        look_up(&mut again, aapl("Mars/Olympus"));
        let asked: Vec<(i64, i64)> = again
            .pending_chunks()
            .map(|c| (c.start_unix, c.end_unix))
            .collect();
        assert_eq!(asked.len(), 80 - 3);
        // What was covered and what is asked tile the week exactly, with no overlap.
        let mut all = covered.clone();
        all.extend(asked.iter().copied());
        assert_eq!(spans::merge(all), vec![(MONDAY, MONDAY + 7 * 86_400)]);
        assert!(asked
            .iter()
            .all(|&(s, e)| spans::subtract(&[(s, e)], &covered) == vec![(s, e)]));
        assert_eq!(run(&mut again, false), 77);
    }

    #[test]
    fn a_holiday_listed_closed_costs_no_request() {
        // Thanksgiving 2025 (Thursday 27 November) in IB's window: that day is not asked, the
        // Thursday a week before is.
        let t = |d: u32| format!("202511{d:02}:0930-202511{d:02}:1600");
        let liquid = [t(24), t(25), t(26), "20251127:CLOSED".into(), t(28)].join(";")
            + ";20251129:CLOSED;20251130:CLOSED";
        let details = ContractDetails {
            time_zone_id: "US/Eastern".into(),
            liquid_hours: liquid,
            ..ContractDetails::default()
        };
        let spec = BackfillSpec {
            contract: Contract::stock("AAPL"),
            bar_size: BarSize::Sec5,
            what_to_show: WhatToShow::Trades,
            use_rth: true,
        };
        let from = utc(2025, 11, 20, 0, 0, 0);
        let mut job =
            BackfillJob::new(spec, from, from + 9 * 86_400, [], JobConfig::default()).unwrap();
        assert_eq!(job.sessions(), &SessionUse::Off(NoSessions::NoDetails));
        job.use_sessions_of(&[(Contract::stock("AAPL"), details)]);
        let days: Vec<u32> = job
            .pending_chunks()
            .map(|c| Date::from_days(c.start_unix.div_euclid(86_400)).day)
            .collect();
        // 7 one-hour cells (14:00–21:00 UTC) on Thu 20, Fri 21, Mon 24, Tue 25, Wed 26, Fri 28.
        for d in [20, 21, 24, 25, 26, 28] {
            assert_eq!(days.iter().filter(|&&x| x == d).count(), 7, "{d}");
        }
        assert_eq!(days.len(), 42);
    }
}
