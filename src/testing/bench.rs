//! Timing helpers of the native benchmarks (`examples/bench_*.rs`, `make bench`).

use std::time::Instant;

/// CPU time of this thread so far, in seconds (Linux: `/proc/thread-self/schedstat`;
/// `None` elsewhere): on a shared machine the wall clock also counts time spent
/// waiting for a core, this does not.
pub fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[m],
        _ => (sorted[m - 1] + sorted[m]) / 2.0,
    }
}

/// Wall-clock and thread-CPU seconds of each of `runs` calls of `f`, after one
/// untimed warm-up call (CPU times empty where the platform gives none).
pub fn time_runs<E>(runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<(Vec<f64>, Vec<f64>), E> {
    f()?;
    let (mut wall, mut cpu) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let before = thread_cpu_s();
        let t = Instant::now();
        f()?;
        wall.push(t.elapsed().as_secs_f64());
        if let (Some(b), Some(a)) = (before, thread_cpu_s()) {
            cpu.push(a - b);
        }
    }
    Ok((wall, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn time_runs_calls_once_more_than_timed_and_stops_at_an_error() {
        let mut calls = 0;
        let (wall, _) = time_runs(3, || {
            calls += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!((calls, wall.len()), (4, 3));
        let mut calls = 0;
        let failed = time_runs(3, || {
            calls += 1;
            if calls == 2 { Err("second") } else { Ok(()) }
        });
        assert_eq!(failed, Err("second"));
    }
}
