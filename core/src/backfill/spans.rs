//! Half-open time spans `[start, end)` in unix seconds, as coverage is recorded: merged into the
//! fewest disjoint spans, and subtracted. The job's coverage and the CLI's sidecar use these.

/// `spans` sorted and merged: touching or overlapping spans become one; empty ones are dropped.
pub fn merge(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.retain(|(s, e)| s < e);
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts of `spans` outside every span of `minus` (which must be merged).
pub fn subtract(spans: &[(i64, i64)], minus: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for &(mut s, e) in spans {
        for &(ms, me) in minus {
            if me <= s || ms >= e {
                continue;
            }
            if ms > s {
                out.push((s, ms));
            }
            s = s.max(me);
            if s >= e {
                break;
            }
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_joins_touching_and_overlapping_spans() {
        assert_eq!(
            merge(vec![(5, 6), (0, 2), (2, 3), (1, 2), (9, 9)]),
            vec![(0, 3), (5, 6)]
        );
    }

    #[test]
    fn subtract_keeps_only_what_is_outside() {
        let minus = merge(vec![(2, 4), (6, 7)]);
        assert_eq!(subtract(&[(0, 10)], &minus), vec![(0, 2), (4, 6), (7, 10)]);
        assert_eq!(subtract(&[(2, 4)], &minus), vec![]);
        assert_eq!(subtract(&[(3, 5)], &minus), vec![(4, 5)]);
    }
}
