//! A small decoder for 12-bit extended sequential JPEG (ITU-T T.81 process 4,
//! DICOM "JPEG Extended (Process 2 & 4)"), greyscale only. `jpeg-decoder` reads
//! 8-bit DCT and lossless JPEG but refuses 12-bit DCT, which CT and MR archives
//! use. Huffman decoding, dequantisation, a separable floating-point inverse DCT
//! (T.81 A.3.3), level shift and clamping; every length and index is checked.

type DResult<T> = std::result::Result<T, String>;

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

#[derive(Clone)]
struct Huffman {
    /// Largest code of each length (-1 when none), smallest code, index of its value.
    max_code: [i32; 17],
    min_code: [i32; 17],
    first_index: [usize; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> DResult<Self> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != values.len() || total > 256 {
            return Err("a Huffman table is inconsistent".into());
        }
        let mut max_code = [-1i32; 17];
        let mut min_code = [0i32; 17];
        let mut first_index = [0usize; 17];
        let (mut code, mut index) = (0i32, 0usize);
        for len in 1..=16 {
            let n = i32::from(counts[len - 1]);
            if n > 0 {
                first_index[len] = index;
                min_code[len] = code;
                code += n;
                index += n as usize;
                max_code[len] = code - 1;
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
    data: &'a [u8],
    pos: usize,
    acc: u32,
    count: u32,
    at_marker: bool,
}

impl<'a> Bits<'a> {
    fn bit(&mut self) -> u32 {
        if self.count == 0 {
            let mut byte = 0u8;
            if !self.at_marker {
                match self.data.get(self.pos) {
                    Some(&0xFF) => match self.data.get(self.pos + 1) {
                        Some(&0x00) => {
                            byte = 0xFF;
                            self.pos += 2;
                        }
                        _ => self.at_marker = true,
                    },
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                    None => self.at_marker = true,
                }
            }
            self.acc = u32::from(byte);
            self.count = 8;
        }
        self.count -= 1;
        (self.acc >> self.count) & 1
    }

    fn bits(&mut self, n: u32) -> u32 {
        (0..n).fold(0, |v, _| (v << 1) | self.bit())
    }

    fn decode(&mut self, table: &Huffman) -> DResult<u8> {
        let mut code = 0i32;
        for len in 1..=16 {
            code = (code << 1) | self.bit() as i32;
            if code <= table.max_code[len] {
                let i = table.first_index[len] + (code - table.min_code[len]) as usize;
                return table.values.get(i).copied().ok_or_else(|| "a Huffman code is out of range".to_string());
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
        let v = self.bits(u32::from(size)) as i32;
        Ok(if v < 1 << (size - 1) { v - (1 << size) + 1 } else { v })
    }

    /// Skips to the next restart marker and resets the bit buffer.
    fn restart(&mut self) {
        self.count = 0;
        self.at_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
    }
}

/// Decodes a greyscale 12-bit (or 8-bit) sequential Huffman JPEG of the given
/// size (from the DICOM header) to samples; any other size is an error.
pub fn decode(data: &[u8], expected_width: usize, expected_height: usize) -> DResult<Vec<u16>> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err("no SOI marker".into());
    }
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac: [Option<Huffman>; 4] = [None, None, None, None];
    let mut frame: Option<(u8, usize, usize, u8, usize)> = None; // precision, height, width, component id, quant table
    let mut restart_interval = 0usize;
    let mut pos = 2usize;
    loop {
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (data.get(pos), data.get(pos + 1)) else {
            return Err("corrupt marker structure".into());
        };
        pos += 2;
        if marker == 0xD9 {
            return Err("no scan before the end of the image".into());
        }
        let len = data.get(pos..pos + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))).ok_or("truncated")?;
        let seg = data.get(pos + 2..pos + len).filter(|_| len >= 2).ok_or("a marker segment is truncated")?;
        pos += len;
        match marker {
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (pq, tq) = (s[0] >> 4, usize::from(s[0] & 15));
                    if tq > 3 || pq > 1 {
                        return Err("invalid quantisation table".into());
                    }
                    let size = if pq == 0 { 64 } else { 128 };
                    let body = s.get(1..1 + size).ok_or("a quantisation table is truncated")?;
                    let mut table = [0u16; 64];
                    for (k, q) in table.iter_mut().enumerate() {
                        *q = if pq == 0 { u16::from(body[k]) } else { u16::from_be_bytes([body[2 * k], body[2 * k + 1]]) };
                    }
                    quant[tq] = Some(table);
                    s = &s[1 + size..];
                }
            }
            0xC4 => {
                let mut s = seg;
                while !s.is_empty() {
                    let (class, id) = (s[0] >> 4, usize::from(s[0] & 15));
                    if class > 1 || id > 3 || s.len() < 17 {
                        return Err("invalid Huffman table".into());
                    }
                    let mut counts = [0u8; 16];
                    counts.copy_from_slice(&s[1..17]);
                    let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let values = s.get(17..17 + total).ok_or("a Huffman table is truncated")?.to_vec();
                    let table = Huffman::new(&counts, values)?;
                    if class == 0 { dc[id] = Some(table) } else { ac[id] = Some(table) }
                    s = &s[17 + total..];
                }
            }
            0xDD => {
                if seg.len() < 2 {
                    return Err("invalid restart interval".into());
                }
                restart_interval = usize::from(u16::from_be_bytes([seg[0], seg[1]]));
            }
            0xC0 | 0xC1 => {
                if seg.len() < 9 {
                    return Err("truncated frame header".into());
                }
                let precision = seg[0];
                let height = usize::from(u16::from_be_bytes([seg[1], seg[2]]));
                let width = usize::from(u16::from_be_bytes([seg[3], seg[4]]));
                if seg[5] != 1 {
                    return Err(format!("{} components: only greyscale is supported", seg[5]));
                }
                if !matches!(precision, 8 | 12) || height == 0 || width == 0 {
                    return Err("unsupported frame header".into());
                }
                if (width, height) != (expected_width, expected_height) {
                    return Err(format!("the frame is {width}×{height}, not {expected_width}×{expected_height}"));
                }
                frame = Some((precision, height, width, seg[6], usize::from(seg[8] & 3)));
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err("only sequential Huffman coding is supported".into());
            }
            0xDA => {
                let (precision, height, width, id, tq) = frame.ok_or("a scan comes before the frame header")?;
                if seg.len() < 6 || seg[0] != 1 || seg[1] != id {
                    return Err("the scan does not code the frame's component".into());
                }
                let (td, ta) = (usize::from(seg[2] >> 4), usize::from(seg[2] & 15));
                let dct = dc.get(td).and_then(|t| t.clone()).ok_or("missing DC Huffman table")?;
                let act = ac.get(ta).and_then(|t| t.clone()).ok_or("missing AC Huffman table")?;
                let q = quant[tq].ok_or("missing quantisation table")?;
                return decode_scan(&data[pos..], precision, height, width, &dct, &act, &q, restart_interval);
            }
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    precision: u8,
    height: usize,
    width: usize,
    dc: &Huffman,
    ac: &Huffman,
    q: &[u16; 64],
    restart_interval: usize,
) -> DResult<Vec<u16>> {
    let (bw, bh) = (width.div_ceil(8), height.div_ceil(8));
    let mut out = vec![0u16; width * height];
    let mut bits = Bits { data, pos: 0, acc: 0, count: 0, at_marker: false };
    let cos = cosines();
    let shift = f64::from(1u32 << (precision - 1));
    let top = f64::from((1u32 << precision) - 1);
    let mut pred = 0i32;
    let mut coef = [0f64; 64];
    for block in 0..bw * bh {
        if restart_interval > 0 && block > 0 && block % restart_interval == 0 {
            bits.restart();
            pred = 0;
        }
        coef.fill(0.0);
        let t = bits.decode(dc)?;
        pred = pred.wrapping_add(bits.receive_extend(t)?);
        coef[0] = f64::from(pred) * f64::from(q[0]);
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (run, size) = (usize::from(rs >> 4), rs & 15);
            if size == 0 {
                if run == 15 {
                    k += 16;
                    continue;
                }
                break;
            }
            k += run;
            if k > 63 {
                return Err("a block has more than 64 coefficients".into());
            }
            coef[ZIGZAG[k]] = f64::from(bits.receive_extend(size)?) * f64::from(q[k]);
            k += 1;
        }
        let pixels = idct(&coef, &cos);
        let (bx, by) = (block % bw, block / bw);
        for y in 0..8 {
            let row = by * 8 + y;
            if row >= height {
                break;
            }
            for x in 0..8 {
                let col = bx * 8 + x;
                if col >= width {
                    break;
                }
                out[row * width + col] = (pixels[y * 8 + x] + shift).round().clamp(0.0, top) as u16;
            }
        }
    }
    Ok(out)
}

/// `c[x][u] = C(u)/2 · cos((2x+1)uπ/16)`.
fn cosines() -> [[f64; 8]; 8] {
    let mut c = [[0f64; 8]; 8];
    for (x, row) in c.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let cu = if u == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
            *v = cu / 2.0 * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
        }
    }
    c
}

fn idct(coef: &[f64; 64], c: &[[f64; 8]; 8]) -> [f64; 64] {
    let mut tmp = [0f64; 64];
    // Rows: tmp[v][x] = Σu c[x][u] F[v][u].
    for v in 0..8 {
        for x in 0..8 {
            tmp[v * 8 + x] = (0..8).map(|u| c[x][u] * coef[v * 8 + u]).sum();
        }
    }
    let mut out = [0f64; 64];
    for y in 0..8 {
        for x in 0..8 {
            out[y * 8 + x] = (0..8).map(|v| c[y][v] * tmp[v * 8 + x]).sum();
        }
    }
    out
}
