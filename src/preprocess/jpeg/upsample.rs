//! Chroma upsampling to the full image size as libjpeg-turbo does by default
//! (`do_fancy_upsampling`; jdsample.c `jinit_upsampler` picks the method):
//! - factor 2 across (`h2v1_fancy_upsample`): ¾ nearer + ¼ further sample,
//!   rounding biases 1 and 2 alternately;
//! - factor 2 down (`h1v2_fancy_upsample`): the same between rows;
//! - factor 2 both ways (`h2v2_fancy_upsample`): 9/16, 3/16, 3/16, 1/16 with
//!   biases 8 and 7;
//! - the two factor-2-across cases replicate samples instead when the component
//!   is at most 2 samples wide (`h2v1_upsample`, `h2v2_upsample`), as does any
//!   other integral factor (`int_upsample`).
//!
//! Edge samples use themselves as the missing neighbour: libjpeg's special
//! first/last columns, and its context rows (jdmainct.c `set_wraparound_pointers`,
//! `set_bottom_pointers`), which repeat the first and last real rows.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation
)]

use std::num::Wrapping;

/// One component's decoded samples: `width × height` real samples in rows of
/// `stride` (the block-padded width).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plane {
    pub data: Vec<u8>,
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Plane {
    /// Row `y` clamped to the real rows, its real samples only.
    fn row(&self, y: usize) -> &[u8] {
        let y = y.min(self.height.saturating_sub(1));
        let start = y.saturating_mul(self.stride);
        self.data.get(start..start.saturating_add(self.width)).unwrap_or_default()
    }
}

type W = Wrapping<u16>;

fn w(v: u8) -> W {
    Wrapping(u16::from(v))
}

fn byte(v: W) -> u8 {
    u8::try_from(v.0).unwrap_or(u8::MAX)
}

/// Writes `out_width` samples of the horizontal factor-2 triangle filter of
/// `sums` (samples for h2v1, 3·near + far row sums for h2v2) into `out`.
fn fancy_across(sums: &[W], out: &mut [u8], biases: (u16, u16), shift: usize) {
    let last = sums.len().saturating_sub(1);
    for (c, pair) in out.chunks_mut(2).enumerate() {
        let this = sums.get(c).copied().unwrap_or_default() * Wrapping(3);
        let left = sums.get(c.saturating_sub(1)).copied().unwrap_or_default();
        let right = sums.get(c.saturating_add(1).min(last)).copied().unwrap_or_default();
        if let Some(o) = pair.get_mut(0) {
            *o = byte((this + left + Wrapping(biases.0)) >> shift);
        }
        if let Some(o) = pair.get_mut(1) {
            *o = byte((this + right + Wrapping(biases.1)) >> shift);
        }
    }
}

/// Upsamples `plane` by the integral factors `(hr, vr)` to `out_width ×
/// out_height` samples (row-major, no padding).
pub fn upsample(plane: &Plane, hr: usize, vr: usize, out_width: usize, out_height: usize) -> Vec<u8> {
    let mut out = vec![0u8; out_width.saturating_mul(out_height)];
    let fancy_across_ok = plane.width > 2;
    let mut sums: Vec<W> = vec![Wrapping(0); plane.width];
    for (y, out_row) in out.chunks_mut(out_width.max(1)).enumerate() {
        match (hr, vr) {
            (1, 1) => out_row.iter_mut().zip(plane.row(y)).for_each(|(o, &s)| *o = s),
            (2, 1) if fancy_across_ok => {
                sums.iter_mut().zip(plane.row(y)).for_each(|(s, &v)| *s = w(v));
                fancy_across(&sums, out_row, (1, 2), 2);
            }
            (1, 2) | (2, 2) if hr == 1 || fancy_across_ok => {
                let r = y / 2;
                // Even output rows lean on the row above, odd ones on the row below.
                let (near, far, bias) =
                    if y % 2 == 0 { (plane.row(r), plane.row(r.saturating_sub(1)), 1) } else { (plane.row(r), plane.row(r.saturating_add(1)), 2) };
                if hr == 1 {
                    for ((o, &n), &f) in out_row.iter_mut().zip(near).zip(far) {
                        *o = byte((w(n) * Wrapping(3) + w(f) + Wrapping(bias)) >> 2);
                    }
                } else {
                    sums.iter_mut().zip(near.iter().zip(far)).for_each(|(s, (&n, &f))| *s = w(n) * Wrapping(3) + w(f));
                    fancy_across(&sums, out_row, (8, 7), 4);
                }
            }
            _ => {
                let src = plane.row(y.checked_div(vr).unwrap_or(0));
                for (x, o) in out_row.iter_mut().enumerate() {
                    *o = src.get(x.checked_div(hr).unwrap_or(0)).copied().unwrap_or(0);
                }
            }
        }
    }
    out
}
