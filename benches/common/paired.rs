//! Side-by-side timing of two plans on this shared, noisy machine: runs alternate (a, then
//! b, per round), so a load change hits both; the ratio is the median of per-round ratios.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use kestrel_runtime::tract_core::internal::*;
use kestrel_runtime::{Model, Session};

/// Medians of `rounds` interleaved runs of `a` and `b`, and the median of per-round b/a.
pub fn paired(
    a: &(Model, TVec<TValue>),
    b: &(Model, TVec<TValue>),
    rounds: usize,
) -> (Duration, Duration, f64) {
    let (mut sa, mut sb) = (a.0.session().unwrap(), b.0.session().unwrap());
    for _ in 0..3 {
        sa.run(a.1.clone()).unwrap();
        sb.run(b.1.clone()).unwrap();
    }
    let time = |s: &mut Session, i: &TVec<TValue>| {
        let start = Instant::now();
        s.run(i.clone()).unwrap();
        start.elapsed()
    };
    let mut ta = vec![];
    let mut tb = vec![];
    let mut ratio = vec![];
    for _ in 0..rounds {
        let x = time(&mut sa, &a.1);
        let y = time(&mut sb, &b.1);
        ratio.push(y.as_secs_f64() / x.as_secs_f64());
        ta.push(x);
        tb.push(y);
    }
    ta.sort();
    tb.sort();
    ratio.sort_by(f64::total_cmp);
    (ta[rounds / 2], tb[rounds / 2], ratio[rounds / 2])
}
