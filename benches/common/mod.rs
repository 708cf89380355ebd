//! What every benchmark shares: how a time is taken.

use std::time::Instant;

/// Median wall time of `runs` calls of `f`, in milliseconds, after one warm-up call (the
/// median, not the mean, so one call slowed by the shared machine does not move it).
pub fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}
