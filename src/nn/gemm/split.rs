//! How the GEMMs split their work across threads: by contiguous ranges of
//! column panels, one range per thread of the current rayon pool. Every output
//! value is computed by one thread over all of k, so the result is the same
//! bits at any thread count (tests/threads.rs).

use std::ops::Range;

use rayon::prelude::*;

/// `y` `[m, n]` row-major, filled by `fill(panels, block)`: `block` is the
/// `[m, columns of those panels]` part of `y` (row-major, panels of `nr`
/// columns, the last one cut at `n`), zero on entry. One range per thread of
/// the current rayon pool (`rayon::current_num_threads`; one in a
/// single-threaded wasm build).
pub(crate) fn by_panels(m: usize, n: usize, nr: usize, fill: impl Fn(Range<usize>, &mut [f32]) + Sync) -> Vec<f32> {
    let panels = n.div_ceil(nr);
    let groups = rayon::current_num_threads().clamp(1, panels.max(1));
    let mut y = vec![0f32; m * n];
    if groups == 1 || m == 0 {
        fill(0..panels, &mut y);
        return y;
    }
    // One block per range, then copied into y's rows: the ranges' columns are
    // interleaved in y, so they cannot be written in place without sharing y
    // between threads.
    let per = panels.div_ceil(groups);
    let ranges: Vec<_> = (0..panels).step_by(per).map(|p| p..(p + per).min(panels)).collect();
    let blocks: Vec<Vec<f32>> = ranges
        .par_iter()
        .map(|r| {
            let cols = (r.end * nr).min(n) - r.start * nr;
            let mut block = vec![0f32; m * cols];
            fill(r.clone(), &mut block);
            block
        })
        .collect();
    for (r, block) in ranges.iter().zip(&blocks) {
        let (c0, cols) = (r.start * nr, block.len() / m);
        for (i, row) in block.chunks_exact(cols).enumerate() {
            y[i * n + c0..i * n + c0 + cols].copy_from_slice(row);
        }
    }
    y
}
