//! A small decoder for 12-bit extended sequential JPEG (ITU-T T.81 process 4,
//! DICOM "JPEG Extended (Process 2 & 4)"), greyscale only. `jpeg-decoder` reads
//! 8-bit DCT and lossless JPEG but refuses 12-bit DCT, which CT and MR archives
//! use. Huffman decoding, dequantisation, a separable floating-point inverse DCT
//! (T.81 A.3.3), level shift and clamping; every length and index is checked.
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

use super::codec::{marker_segment, next_marker, saturating_u16};
use crate::preprocess::jpeg::markers::{read_huffman, read_quantisation, HuffmanSpec, ZIGZAG};

type DResult<T> = std::result::Result<T, String>;

#[derive(Clone)]
struct Huffman {
    /// For each code length 1 to 16 (at index length − 1): the largest code of
    /// that length (-1 when none), the smallest, and the index of its value.
    max_code: [i32; 16],
    min_code: [i32; 16],
    first_index: [usize; 16],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> DResult<Self> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != values.len() || total > 256 {
            return Err("a Huffman table is inconsistent".into());
        }
        let mut max_code = [-1i32; 16];
        let mut min_code = [0i32; 16];
        let mut first_index = [0usize; 16];
        let (mut code, mut index) = (0i32, 0usize);
        let slots = max_code.iter_mut().zip(&mut min_code).zip(&mut first_index);
        for (len, (&n, ((max, min), first))) in (1u32..).zip(counts.iter().zip(slots)) {
            if n > 0 {
                *first = index;
                *min = code;
                // code <= 2^16 (checked below at each length) and the counts sum
                // to at most 256: nothing here can overflow.
                code = code.saturating_add(i32::from(n));
                index = index.saturating_add(usize::from(n));
                *max = code.saturating_sub(1);
            }
            if code > (1 << len) {
                return Err("a Huffman table has too many codes".into());
            }
            code <<= 1;
        }
        Ok(Self { max_code, min_code, first_index, values })
    }
}

struct Bits<'a> {
    /// The entropy-coded bytes not read yet.
    rest: &'a [u8],
    acc: u32,
    count: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn bit(&mut self) -> u32 {
        if self.count == 0 {
            let mut byte = 0u8;
            if !self.at_marker {
                match self.rest {
                    [0xFF, 0x00, tail @ ..] => {
                        byte = 0xFF;
                        self.rest = tail;
                    }
                    [0xFF, ..] | [] => self.at_marker = true,
                    [b, tail @ ..] => {
                        byte = *b;
                        self.rest = tail;
                    }
                }
            }
            self.acc = u32::from(byte);
            self.count = 8;
        }
        // count is 1 to 8 here.
        self.count = self.count.saturating_sub(1);
        (self.acc >> self.count) & 1
    }

    fn bits(&mut self, n: u32) -> u32 {
        (0..n).fold(0, |v, _| (v << 1) | self.bit())
    }

    fn decode(&mut self, table: &Huffman) -> DResult<u8> {
        let mut code = 0i32;
        let lengths = table.max_code.iter().zip(&table.min_code).zip(&table.first_index);
        for ((&max, &min), &first) in lengths {
            // A bit is 0 or 1; code stays below 2^16.
            code = (code << 1) | self.bit() as i32;
            if code <= max {
                // Canonical codes: an unmatched code of this length is at least `min`.
                let index = usize::try_from(code.saturating_sub(min)).ok().and_then(|d| first.checked_add(d));
                return index
                    .and_then(|i| table.values.get(i))
                    .copied()
                    .ok_or_else(|| "a Huffman code is out of range".to_string());
            }
        }
        Err("invalid Huffman code in the scan".into())
    }

    /// A magnitude category's extra bits, sign-extended (T.81 F.2.2.1).
    fn receive_extend(&mut self, size: u8) -> DResult<i32> {
        if size == 0 {
            return Ok(0);
        }
        if size > 16 {
            return Err("a coefficient magnitude category is out of range".into());
        }
        // 1 <= size <= 16: v < 2^16, and v - 2^size + 1 > -2^16.
        let v = self.bits(u32::from(size)) as i32;
        Ok(if v < 1 << size.saturating_sub(1) { v.saturating_sub(1 << size).saturating_add(1) } else { v })
    }

    /// Skips to the next restart marker and resets the bit buffer.
    fn restart(&mut self) {
        self.count = 0;
        self.at_marker = false;
        loop {
            match self.rest {
                [0xFF, marker, tail @ ..] if (0xD0..=0xD7).contains(marker) => {
                    self.rest = tail;
                    return;
                }
                [_, tail @ ..] if !tail.is_empty() => self.rest = tail,
                _ => return,
            }
        }
    }
}

/// The frame header: precision, height, width, component id, quantisation table.
type Frame = (u8, usize, usize, u8, usize);

/// Decodes a greyscale 12-bit (or 8-bit) sequential Huffman JPEG of the given
/// size (from the DICOM header) to samples; any other size is an error.
pub fn decode(data: &[u8], expected_width: usize, expected_height: usize) -> DResult<Vec<u16>> {
    let Some(mut rest) = data.strip_prefix(&[0xFF, 0xD8]) else {
        return Err("no SOI marker".into());
    };
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<HuffmanSpec>; 4] = [None, None, None, None];
    let mut ac: [Option<HuffmanSpec>; 4] = [None, None, None, None];
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0usize;
    loop {
        let (marker, after) = next_marker(rest).ok_or("corrupt marker structure")?;
        if marker == 0xD9 {
            return Err("no scan before the end of the image".into());
        }
        let (seg, after) = marker_segment(after)?;
        rest = after;
        match marker {
            // Tables as the 8-bit decoder reads them (quantisers in natural order).
            0xDB => read_quantisation(seg, &mut quant)?,
            0xC4 => read_huffman(seg, &mut dc, &mut ac)?,
            0xDD => {
                let &[r0, r1, ..] = seg else {
                    return Err("invalid restart interval".into());
                };
                restart_interval = usize::from(u16::from_be_bytes([r0, r1]));
            }
            0xC0 | 0xC1 => {
                let &[precision, h0, h1, w0, w1, components, id, _sampling, tq, ..] = seg else {
                    return Err("truncated frame header".into());
                };
                let height = usize::from(u16::from_be_bytes([h0, h1]));
                let width = usize::from(u16::from_be_bytes([w0, w1]));
                if components != 1 {
                    return Err(format!("{components} components: only greyscale is supported"));
                }
                if !matches!(precision, 8 | 12) || height == 0 || width == 0 {
                    return Err("unsupported frame header".into());
                }
                if (width, height) != (expected_width, expected_height) {
                    return Err(format!("the frame is {width}×{height}, not {expected_width}×{expected_height}"));
                }
                frame = Some((precision, height, width, id, usize::from(tq & 3)));
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err("only sequential Huffman coding is supported".into());
            }
            0xDA => {
                let (precision, height, width, id, tq) = frame.ok_or("a scan comes before the frame header")?;
                let &[1, component, td_ta, _, _, _, ..] = seg else {
                    return Err("the scan does not code the frame's component".into());
                };
                if component != id {
                    return Err("the scan does not code the frame's component".into());
                }
                let (td, ta) = (usize::from(td_ta >> 4), usize::from(td_ta & 15));
                let table = |specs: &[Option<HuffmanSpec>; 4], id: usize, what: &str| {
                    let spec = specs.get(id).and_then(Option::as_ref).ok_or(format!("missing {what} Huffman table"))?;
                    Huffman::new(&spec.counts, spec.values.clone())
                };
                let dct = table(&dc, td, "DC")?;
                let act = table(&ac, ta, "AC")?;
                let q = quant.get(tq).copied().flatten().ok_or("missing quantisation table")?;
                let scan = Scan { precision, height, width, dc: &dct, ac: &act, q: &q, restart_interval };
                return decode_scan(rest, &scan);
            }
            _ => {}
        }
    }
}

struct Scan<'a> {
    precision: u8,
    height: usize,
    width: usize,
    dc: &'a Huffman,
    ac: &'a Huffman,
    q: &'a [u16; 64],
    restart_interval: usize,
}

fn decode_scan(data: &[u8], scan: &Scan<'_>) -> DResult<Vec<u16>> {
    let &Scan { precision, height, width, dc, ac, q, restart_interval } = scan;
    let (bw, bh) = (width.div_ceil(8), height.div_ceil(8));
    let mut out = vec![0u16; width.checked_mul(height).ok_or("the image is too large")?];
    let mut bits = Bits { rest: data, acc: 0, count: 0, at_marker: false };
    let cos = cosines();
    // precision is 8 or 12 (checked with the frame header): the shifts are in range.
    let shift = f64::from(1u32 << precision.saturating_sub(1));
    let top = f64::from((1u32 << precision).saturating_sub(1));
    let mut pred = 0i32;
    let mut coef = [0f64; 64];
    let blocks = (0..bh).flat_map(|by| (0..bw).map(move |bx| (by, bx)));
    for (block, (by, bx)) in blocks.enumerate() {
        // No restart interval: `checked_rem` by 0 is `None`.
        if block > 0 && block.checked_rem(restart_interval) == Some(0) {
            bits.restart();
            pred = 0;
        }
        coef.fill(0.0);
        let t = bits.decode(dc)?;
        pred = pred.wrapping_add(bits.receive_extend(t)?);
        coef[0] = f64::from(pred) * f64::from(q[0]);
        let mut k = 1usize;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (run, size) = (usize::from(rs >> 4), rs & 15);
            if size == 0 {
                if run == 15 {
                    // k < 64 before: no overflow.
                    k = k.saturating_add(16);
                    continue;
                }
                break;
            }
            k = k.saturating_add(run);
            let (Some(&z), Some(&qk)) = (ZIGZAG.get(k).filter(|_| k < 64), ZIGZAG.get(k).and_then(|&z| q.get(z))) else {
                return Err("a block has more than 64 coefficients".into());
            };
            let value = f64::from(bits.receive_extend(size)?) * f64::from(qk);
            if let Some(c) = coef.get_mut(z) {
                *c = value;
            }
            k = k.saturating_add(1);
        }
        let pixels = idct(&coef, &cos);
        // The block's top-left corner: at most width + 7 and height + 7.
        let (x0, y0) = (bx.saturating_mul(8), by.saturating_mul(8));
        // Rows y0.. and columns x0.. of the image, up to 8 of each, as far as the image goes.
        for (row, block_row) in out.chunks_mut(width.max(1)).skip(y0).zip(&pixels) {
            for (px, &v) in row.iter_mut().skip(x0).zip(block_row) {
                *px = saturating_u16((v + shift).round().clamp(0.0, top));
            }
        }
    }
    Ok(out)
}

/// `c[x][u] = C(u)/2 · cos((2x+1)uπ/16)`.
fn cosines() -> [[f64; 8]; 8] {
    let mut c = [[0f64; 8]; 8];
    for (x, row) in (0u32..).zip(c.iter_mut()) {
        for (u, v) in (0u32..).zip(row.iter_mut()) {
            let cu = if u == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
            *v = cu / 2.0 * ((2.0 * f64::from(x) + 1.0) * f64::from(u) * std::f64::consts::PI / 16.0).cos();
        }
    }
    c
}

fn dot(a: &[f64; 8], b: &[f64; 8]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The separable inverse DCT of coefficients in natural order (row v, column u).
fn idct(coef: &[f64; 64], c: &[[f64; 8]; 8]) -> [[f64; 8]; 8] {
    let (rows, _) = coef.as_chunks::<8>();
    // Rows, kept transposed: tmp[x][v] = Σu c[x][u] F[v][u].
    let mut tmp = [[0f64; 8]; 8];
    for (tmp_row, c_row) in tmp.iter_mut().zip(c) {
        for (t, f_row) in tmp_row.iter_mut().zip(rows) {
            *t = dot(c_row, f_row);
        }
    }
    // Columns: out[y][x] = Σv c[y][v] tmp[x][v].
    let mut out = [[0f64; 8]; 8];
    for (out_row, c_row) in out.iter_mut().zip(c) {
        for (o, tmp_row) in out_row.iter_mut().zip(&tmp) {
            *o = dot(c_row, tmp_row);
        }
    }
    out
}
