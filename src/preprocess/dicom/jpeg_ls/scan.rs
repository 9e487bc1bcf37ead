//! The decoding of one JPEG-LS scan (ITU-T T.87 Annex A, and Annex B for
//! interleaved components): context modelling, the regular mode (MED
//! prediction, bias correction, limited-length Golomb codes) and the run mode,
//! line by line, with restart intervals. The behaviour where T.87 leaves room
//! (sample-interleaved run interruptions, restart boundaries) is CharLS's, the
//! reference implementation that pydicom uses.
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

use super::bits::BitReader;
use super::params::Params;
use super::JResult;

/// The run-length order J[RUNindex] of T.87 A.7.1.1.
const J: [u32; 32] =
    [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The largest prediction error magnitude a valid stream can code (CharLS's bound).
const MAX_ERROR: i64 = 65535;

/// A[Q], B[Q], C[Q], N[Q] of one regular-mode context (T.87 A.2.2). A and B
/// are i64: with RESET up to 65535 they can pass 2^31.
#[derive(Clone, Copy)]
struct Regular {
    a: i64,
    b: i64,
    c: i32,
    n: i64,
}

/// A, N and Nn of a run-interruption context (T.87 A.7.2).
#[derive(Clone, Copy)]
struct Interruption {
    a: i64,
    n: i64,
    nn: i64,
}

/// The smallest k with N · 2^k >= A (T.87 A.5.1); at most 40, beyond anything valid.
fn golomb_k(n: i64, a: i64) -> u32 {
    let mut k = 0u32;
    while k < 40 && n.checked_shl(k).is_some_and(|v| v < a) {
        k = k.saturating_add(1);
    }
    k
}

/// The decoder's state for one scan.
pub struct Scan<'p> {
    p: &'p Params,
    regular: Vec<Regular>,
    interruption: [Interruption; 2],
    /// RUNindex per component (line interleaving keeps one per component).
    run_index: [usize; 4],
    neg_t1: i32,
    neg_t2: i32,
    neg_t3: i32,
    neg_near: i32,
}

/// MED, the median edge detector of T.87 A.4.1.
fn predict(ra: i32, rb: i32, rc: i32) -> i32 {
    if rc >= ra.max(rb) {
        ra.min(rb)
    } else if rc <= ra.min(rb) {
        ra.max(rb)
    } else {
        // All three lie in 0..=65535.
        ra.saturating_add(rb).saturating_sub(rc)
    }
}

impl<'p> Scan<'p> {
    pub fn new(p: &'p Params) -> Self {
        let mut scan = Self {
            p,
            regular: Vec::new(),
            interruption: [Interruption { a: 0, n: 1, nn: 0 }; 2],
            run_index: [0; 4],
            neg_t1: p.t1.saturating_neg(),
            neg_t2: p.t2.saturating_neg(),
            neg_t3: p.t3.saturating_neg(),
            neg_near: p.near.saturating_neg(),
        };
        scan.reset();
        scan
    }

    /// T.87 A.2.2: the initial context variables (at the start of a scan and
    /// after each restart marker).
    pub fn reset(&mut self) {
        let a = i64::from(((self.p.range.saturating_add(32)) / 64).max(2));
        self.regular = vec![Regular { a, b: 0, c: 0, n: 1 }; 365];
        self.interruption = [Interruption { a, n: 1, nn: 0 }; 2];
        self.run_index = [0; 4];
    }

    /// T.87 A.3.3: a local gradient quantised to -4..=4.
    fn quantize(&self, d: i32) -> i32 {
        if d <= self.neg_t3 {
            -4
        } else if d <= self.neg_t2 {
            -3
        } else if d <= self.neg_t1 {
            -2
        } else if d < self.neg_near {
            -1
        } else if d <= self.p.near {
            0
        } else if d < self.p.t1 {
            1
        } else if d < self.p.t2 {
            2
        } else if d < self.p.t3 {
            3
        } else {
            4
        }
    }

    /// The signed context number (Q1 · 81 + Q2 · 9 + Q3, -364..=364) of a sample.
    fn context(&self, ra: i32, rb: i32, rc: i32, rd: i32) -> i32 {
        // Samples lie in 0..=65535: differences and products fit easily.
        let q1 = self.quantize(rd.saturating_sub(rb));
        let q2 = self.quantize(rb.saturating_sub(rc));
        let q3 = self.quantize(rc.saturating_sub(ra));
        q1.saturating_mul(81).saturating_add(q2.saturating_mul(9)).saturating_add(q3)
    }

    /// T.87 A.4.4 and the decoder's modular reconstruction: the sample from a
    /// prediction and a (signed, quantised) error, within 0..=MAXVAL.
    fn reconstruct(&self, px: i32, error: i64) -> i32 {
        let p = self.p;
        let step = i64::from(p.near.saturating_mul(2).saturating_add(1));
        let mut x = i64::from(px).saturating_add(error.saturating_mul(step));
        if x < i64::from(self.neg_near) {
            x = x.saturating_add(i64::from(p.range).saturating_mul(step));
        } else if x > i64::from(p.maxval.saturating_add(p.near)) {
            x = x.saturating_sub(i64::from(p.range).saturating_mul(step));
        }
        i32::try_from(x.clamp(0, i64::from(p.maxval))).unwrap_or(0)
    }

    /// A mapped error value: the limited-length Golomb code of T.87 A.5.3.
    fn golomb(&self, bits: &mut BitReader<'_>, k: u32, limit: u32) -> JResult<i64> {
        let qbpp = self.p.qbpp;
        let escape = limit.saturating_sub(qbpp).saturating_sub(1);
        if escape == 0 {
            return Err("invalid JPEG-LS code length limit".into());
        }
        let q = bits.zeros(escape)?;
        if q == escape {
            return Ok(i64::from(bits.read(qbpp)?).saturating_add(1));
        }
        let low = bits.read(k.min(32))?;
        i64::from(q)
            .checked_shl(k)
            .filter(|v| *v >> k == i64::from(q) && *v <= MAX_ERROR.saturating_mul(2))
            .map(|v| v | i64::from(low))
            .ok_or_else(|| "invalid JPEG-LS code (an error value out of range)".to_string())
    }

    /// One sample in the regular mode (T.87 A.4 to A.6), for the signed context `q`.
    fn regular(&mut self, bits: &mut BitReader<'_>, q: i32, ra: i32, rb: i32, rc: i32) -> JResult<i32> {
        let (sign, index) = if q < 0 { (-1i64, q.saturating_neg()) } else { (1, q) };
        let p = self.p;
        let ctx = usize::try_from(index)
            .ok()
            .and_then(|i| self.regular.get(i))
            .copied()
            .ok_or("a JPEG-LS context out of range")?;
        let correction = if sign < 0 { ctx.c.saturating_neg() } else { ctx.c };
        let px = predict(ra, rb, rc).saturating_add(correction).clamp(0, p.maxval);
        let k = golomb_k(ctx.n, ctx.a);
        let mapped = self.golomb(bits, k, p.limit)?;
        // The inverse of T.87 A.5.2's mapping: even values are >= 0, odd ones < 0.
        let mut error = if mapped & 1 == 0 { mapped >> 1 } else { (mapped.saturating_add(1) >> 1).saturating_neg() };
        if p.near == 0 && k == 0 && ctx.b.saturating_mul(2).saturating_add(ctx.n) <= 0 {
            // The special mapping: -error - 1.
            error = !error;
        }
        if error.abs() > MAX_ERROR {
            return Err("invalid JPEG-LS data (an error value out of range)".into());
        }
        self.update(index, error);
        Ok(self.reconstruct(px, error.saturating_mul(sign)))
    }

    /// T.87 A.6: the context variables after an error, then the bias correction.
    fn update(&mut self, index: i32, error: i64) {
        let step = i64::from(self.p.near.saturating_mul(2).saturating_add(1));
        let reset = self.p.reset;
        let Some(ctx) = usize::try_from(index).ok().and_then(|i| self.regular.get_mut(i)) else {
            return;
        };
        ctx.b = ctx.b.saturating_add(error.saturating_mul(step));
        ctx.a = ctx.a.saturating_add(error.abs());
        if ctx.n == reset {
            ctx.a >>= 1;
            ctx.b >>= 1;
            ctx.n >>= 1;
        }
        ctx.n = ctx.n.saturating_add(1);
        if ctx.b.saturating_add(ctx.n) <= 0 {
            ctx.b = ctx.b.saturating_add(ctx.n);
            if ctx.b <= ctx.n.saturating_neg() {
                ctx.b = ctx.n.saturating_neg().saturating_add(1);
            }
            if ctx.c > -128 {
                ctx.c = ctx.c.saturating_sub(1);
            }
        } else if ctx.b > 0 {
            ctx.b = ctx.b.saturating_sub(ctx.n);
            if ctx.b > 0 {
                ctx.b = 0;
            }
            if ctx.c < 127 {
                ctx.c = ctx.c.saturating_add(1);
            }
        }
    }

    /// The length of a run (T.87 A.7.1.2) starting with `remaining` samples
    /// left in the line, for RUNindex slot `slot`.
    fn run_length(&mut self, bits: &mut BitReader<'_>, slot: usize, remaining: usize) -> JResult<usize> {
        let mut index = self.run_index.get(slot).copied().unwrap_or(0);
        let mut length = 0usize;
        while length < remaining && bits.bit()? {
            let order = J.get(index).copied().unwrap_or(15);
            let full = 1usize << order;
            let count = full.min(remaining.saturating_sub(length));
            length = length.saturating_add(count);
            if count == full && index < 31 {
                index = index.saturating_add(1);
            }
        }
        if length < remaining {
            // An interrupted run: J[RUNindex] more bits of length, then the interruption sample.
            let order = J.get(index).copied().unwrap_or(15);
            length = length.saturating_add(usize::try_from(bits.read(order)?).unwrap_or(usize::MAX));
            if length >= remaining {
                return Err("invalid JPEG-LS data (a run goes past the end of the line)".into());
            }
        }
        if let Some(slot) = self.run_index.get_mut(slot) {
            *slot = index;
        }
        Ok(length)
    }

    /// The error of a run-interruption sample (T.87 A.7.2), context 365 + `ri_type`.
    fn interruption_error(&mut self, bits: &mut BitReader<'_>, slot: usize, ri_type: bool) -> JResult<i64> {
        let ctx = self.interruption.get(usize::from(ri_type)).copied().ok_or("a JPEG-LS run context out of range")?;
        let ri = i64::from(ri_type);
        let temp = if ri_type { ctx.a.saturating_add(ctx.n >> 1) } else { ctx.a };
        let k = golomb_k(ctx.n, temp);
        let order = self.run_index.get(slot).and_then(|&i| J.get(i)).copied().unwrap_or(0);
        let limit = self.p.limit.saturating_sub(order).saturating_sub(1);
        let mapped = self.golomb(bits, k, limit)?;
        let t = mapped.saturating_add(ri);
        let map = t & 1 == 1;
        let magnitude = t.saturating_add(i64::from(map)) >> 1;
        let negative = (k != 0 || ctx.nn.saturating_mul(2) >= ctx.n) == map;
        let error = if negative { magnitude.saturating_neg() } else { magnitude };
        if error.abs() > MAX_ERROR {
            return Err("invalid JPEG-LS data (an error value out of range)".into());
        }
        let reset = self.p.reset;
        if let Some(ctx) = self.interruption.get_mut(usize::from(ri_type)) {
            if error < 0 {
                ctx.nn = ctx.nn.saturating_add(1);
            }
            ctx.a = ctx.a.saturating_add(mapped.saturating_add(1).saturating_sub(ri) >> 1);
            if ctx.n == reset {
                ctx.a >>= 1;
                ctx.n >>= 1;
                ctx.nn >>= 1;
            }
            ctx.n = ctx.n.saturating_add(1);
        }
        Ok(error)
    }

    fn decrement_run_index(&mut self, slot: usize) {
        if let Some(i) = self.run_index.get_mut(slot) {
            *i = i.saturating_sub(1);
        }
    }

    /// Decodes one line of one component. `prev` and `cur` hold the line above
    /// and this one at indices 1..=width, with the edge samples of T.87 A.2.1
    /// around them: `prev[0]` (Rc of the first sample), `prev[width + 1]`, and
    /// `cur[0]`, which this sets.
    pub fn line(&mut self, bits: &mut BitReader<'_>, slot: usize, prev: &mut [i32], cur: &mut [i32]) -> JResult<()> {
        let width = cur.len().saturating_sub(2);
        edges(prev, cur, width);
        let mut x = 0usize;
        while x < width {
            let at = |line: &[i32], i: usize| line.get(i).copied().unwrap_or(0);
            // Sample x is at index x + 1.
            let (ra, rb) = (at(cur, x), at(prev, x.saturating_add(1)));
            let (rc, rd) = (at(prev, x), at(prev, x.saturating_add(2)));
            let q = self.context(ra, rb, rc, rd);
            if q != 0 {
                let value = self.regular(bits, q, ra, rb, rc)?;
                set(cur, x.saturating_add(1), value);
                x = x.saturating_add(1);
                continue;
            }
            let length = self.run_length(bits, slot, width.saturating_sub(x))?;
            for i in 0..length {
                set(cur, x.saturating_add(i).saturating_add(1), ra);
            }
            x = x.saturating_add(length);
            if x < width {
                let rb = at(prev, x.saturating_add(1));
                // |Ra - Rb| <= NEAR: the interruption sample is predicted by Ra.
                let ri_type = ra.abs_diff(rb) <= self.p.near.unsigned_abs();
                let error = self.interruption_error(bits, slot, ri_type)?;
                let value = if ri_type {
                    self.reconstruct(ra, error)
                } else {
                    self.reconstruct(rb, if rb < ra { error.saturating_neg() } else { error })
                };
                set(cur, x.saturating_add(1), value);
                self.decrement_run_index(slot);
                x = x.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Decodes one line of every component of a sample-interleaved scan
    /// (T.87 B.3): a pixel is in the run mode when every component's gradients
    /// are; a run interruption codes each component against Rb, in context 365.
    pub fn pixel_line(&mut self, bits: &mut BitReader<'_>, prev: &mut [Vec<i32>], cur: &mut [Vec<i32>]) -> JResult<()> {
        let width = cur.first().map_or(0, |c| c.len().saturating_sub(2));
        for (p, c) in prev.iter_mut().zip(cur.iter_mut()) {
            edges(p, c, width);
        }
        let count = cur.len().min(4);
        let at = |line: &[i32], i: usize| line.get(i).copied().unwrap_or(0);
        let mut x = 0usize;
        while x < width {
            let mut qs = [0i32; 4];
            for ((q, p), c) in qs.iter_mut().zip(prev.iter()).zip(cur.iter()) {
                *q = self.context(at(c, x), at(p, x.saturating_add(1)), at(p, x), at(p, x.saturating_add(2)));
            }
            if qs.iter().take(count).any(|&q| q != 0) {
                for ((&q, p), c) in qs.iter().zip(prev.iter()).zip(cur.iter_mut()) {
                    let (ra, rb, rc) = (at(c, x), at(p, x.saturating_add(1)), at(p, x));
                    let value = self.regular(bits, q, ra, rb, rc)?;
                    set(c, x.saturating_add(1), value);
                }
                x = x.saturating_add(1);
                continue;
            }
            let length = self.run_length(bits, 0, width.saturating_sub(x))?;
            for c in cur.iter_mut() {
                let ra = at(c, x);
                for i in 0..length {
                    set(c, x.saturating_add(i).saturating_add(1), ra);
                }
            }
            x = x.saturating_add(length);
            if x < width {
                for (p, c) in prev.iter().zip(cur.iter_mut()) {
                    let (ra, rb) = (at(c, x), at(p, x.saturating_add(1)));
                    let error = self.interruption_error(bits, 0, false)?;
                    let value = self.reconstruct(rb, if rb < ra { error.saturating_neg() } else { error });
                    set(c, x.saturating_add(1), value);
                }
                self.decrement_run_index(0);
                x = x.saturating_add(1);
            }
        }
        Ok(())
    }
}

/// The edge samples of T.87 A.2.1 around a line: Rd of the last sample is Rb
/// (`prev[width + 1] = prev[width]`), and Ra of the first is Rb (`cur[0] =
/// prev[1]`); `prev[0]` keeps the previous line's `cur[0]`, Rc of the first sample.
fn edges(prev: &mut [i32], cur: &mut [i32], width: usize) {
    let last = prev.get(width).copied().unwrap_or(0);
    set(prev, width.saturating_add(1), last);
    let first = prev.get(1).copied().unwrap_or(0);
    set(cur, 0, first);
}

fn set(line: &mut [i32], i: usize, value: i32) {
    if let Some(slot) = line.get_mut(i) {
        *slot = value;
    }
}
