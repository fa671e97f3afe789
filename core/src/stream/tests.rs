#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;
use crate::message::BarTime;

fn tick(field: i32, price: f64) -> StreamItem {
    StreamItem::Data(StreamData::Tick(Tick::Price {
        field: TickType(field),
        price,
        size: None,
        attributes: 0,
    }))
}

fn bar(t: i64) -> StreamItem {
    StreamItem::Data(StreamData::Bar(Bar {
        date: BarTime::Epoch(t),
        ..Bar::default()
    }))
}

fn tbt(t: i64) -> StreamItem {
    StreamItem::Data(StreamData::TickByTick(TickByTick::MidPoint {
        time: t,
        mid: 1.0,
    }))
}

fn drain(b: &mut StreamBuffer) -> Vec<StreamItem> {
    std::iter::from_fn(|| b.pop()).collect()
}

#[test]
fn a_full_buffer_conflates_a_tick_into_the_queued_tick_of_its_field_and_says_so() {
    let mut b = StreamBuffer::new(3);
    for (field, price) in [(1, 10.0), (2, 11.0), (4, 10.5)] {
        assert_eq!(b.push(tick(field, price)), Push::Queued);
    }
    assert_eq!(b.push(tick(1, 10.1)), Push::Conflated);
    assert_eq!(b.push(tick(1, 10.2)), Push::Conflated);
    assert_eq!(
        drain(&mut b),
        vec![
            StreamItem::Lagged { dropped: 2 },
            tick(1, 10.2),
            tick(2, 11.0),
            tick(4, 10.5)
        ]
    );
}

#[test]
fn a_tick_of_a_new_field_drops_the_oldest_tick_and_bars_are_never_dropped() {
    let mut b = StreamBuffer::new(3);
    assert_eq!(b.push(bar(0)), Push::Queued);
    assert_eq!(b.push(tick(1, 10.0)), Push::Queued);
    assert_eq!(b.push(bar(5)), Push::Queued);
    assert_eq!(b.push(tick(2, 11.0)), Push::Dropped);
    assert_eq!(b.push(bar(10)), Push::Queued, "bars pass the capacity");
    assert_eq!(
        drain(&mut b),
        vec![
            StreamItem::Lagged { dropped: 1 },
            bar(0),
            bar(5),
            tick(2, 11.0),
            bar(10)
        ]
    );
}

#[test]
fn bars_past_four_times_the_capacity_overflow_instead_of_growing() {
    let mut b = StreamBuffer::new(2);
    for t in 0..8 {
        assert_eq!(b.push(bar(t)), Push::Queued, "bar {t}");
    }
    assert_eq!(b.push(bar(8)), Push::Overflow);
    assert_eq!(b.len(), 8);
    // With only bars queued a tick has nothing to make room with: it is dropped, and counted.
    assert_eq!(b.push(tick(1, 1.0)), Push::Dropped);
    assert_eq!(b.len(), 8);
    assert_eq!(b.pop(), Some(StreamItem::Lagged { dropped: 1 }));
    assert_eq!(b.pop(), Some(bar(0)));
}

proptest! {
    /// Whatever arrives: the queue never exceeds four times its capacity, every bar pushed is
    /// popped in order, and items conflated or dropped are exactly what `Lagged` reports.
    #[test]
    fn bars_survive_in_order_and_lag_is_accounted(
        cap in 1usize..8,
        ops in prop::collection::vec((0u8..4, 0i32..4), 0..200),
        pops in prop::collection::vec(any::<bool>(), 0..200),
    ) {
        let mut b = StreamBuffer::new(cap);
        let (mut pushed_bars, mut popped_bars) = (Vec::new(), Vec::new());
        let (mut pushed, mut popped, mut lagged) = (0u64, 0u64, 0u64);
        let mut overflowed = 0u64;
        let mut pop = |b: &mut StreamBuffer, popped_bars: &mut Vec<i64>| match b.pop() {
            Some(StreamItem::Lagged { dropped }) => lagged += dropped,
            Some(StreamItem::Data(StreamData::Bar(bar))) => {
                popped += 1;
                if let BarTime::Epoch(t) = bar.date { popped_bars.push(t) }
            }
            Some(_) => popped += 1,
            None => {}
        };
        for (i, ((kind, field), do_pop)) in ops.iter().zip(pops.iter().chain(std::iter::repeat(&false))).enumerate() {
            let t = i as i64;
            let item = match kind {
                0 => tick(*field, t as f64),
                1 => tbt(t),
                _ => bar(t),
            };
            pushed += 1;
            match b.push(item) {
                Push::Overflow => overflowed += 1,
                _ if *kind >= 2 => pushed_bars.push(t),
                _ => {}
            }
            prop_assert!(b.len() <= 4 * cap);
            if *do_pop { pop(&mut b, &mut popped_bars) }
        }
        while !b.is_empty() { pop(&mut b, &mut popped_bars) }
        prop_assert_eq!(popped_bars, pushed_bars);
        prop_assert_eq!(pushed, popped + lagged + overflowed);
    }
}
