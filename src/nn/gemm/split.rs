//! How the GEMMs split their work across threads, one contiguous range per
//! thread of the current rayon pool: of column panels ([`by_panels`], the f32,
//! q8 and q4 GEMMs) or of rows ([`by_rows`], the q8_0 × q8_0 GEMM, whose
//! activations each thread then quantises for its own rows). Every output
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

/// `outputs[j]` (`[m, ns[j]]` row-major, zero on entry) filled by `fill(rows,
/// parts)`: `parts[j]` is the `[rows, ns[j]]` part of `outputs[j]`. The rows
/// go in contiguous ranges, one per thread of the current rayon pool, each
/// starting at a multiple of `unit` (a micro-kernel's rows: a range of whole
/// tiles wastes no padded row but its last). Each thread reads only its own
/// rows of the input and writes only its own rows of the outputs: what a
/// thread prepares from its rows (quantised activations) is not shared, and
/// the outputs need no copy. Every output value is still computed over all
/// of k by one thread, from its own row only, so the result is the same bits
/// at any thread count (tests/threads.rs).
pub(crate) fn by_rows(m: usize, ns: &[usize], unit: usize, fill: impl Fn(Range<usize>, &mut [&mut [f32]]) + Sync) -> Vec<Vec<f32>> {
    let mut outputs: Vec<Vec<f32>> = ns.iter().map(|&n| vec![0f32; m * n]).collect();
    let units = m.div_ceil(unit.max(1));
    let groups = rayon::current_num_threads().clamp(1, units.max(1));
    if groups == 1 {
        let mut parts: Vec<&mut [f32]> = outputs.iter_mut().map(|y| y.as_mut_slice()).collect();
        fill(0..m, &mut parts);
        return outputs;
    }
    // As even as whole units allow: the first `units % groups` ranges one unit longer.
    let (per, extra) = (units / groups, units % groups);
    let mut bounds = vec![0];
    for g in 0..groups {
        bounds.push(((bounds[g] / unit + per + usize::from(g < extra)) * unit).min(m));
    }
    let mut jobs: Vec<(Range<usize>, Vec<&mut [f32]>)> = bounds.windows(2).map(|b| (b[0]..b[1], Vec::with_capacity(ns.len()))).collect();
    for (y, &n) in outputs.iter_mut().zip(ns) {
        let mut rest = y.as_mut_slice();
        for (rows, parts) in &mut jobs {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(rows.len() * n);
            parts.push(part);
            rest = tail;
        }
    }
    jobs.into_par_iter().for_each(|(rows, mut parts)| fill(rows, &mut parts));
    outputs
}
