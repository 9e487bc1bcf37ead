//! The entropy-coded segment: byte unstuffing and markers (T.81 B.1.1.5, F.1.2.3),
//! Huffman decoding (T.81 F.2.2.3, Annex C) and the extra bits of a magnitude
//! category (F.2.2.1 `EXTEND`), as libjpeg-turbo's jdhuff.c does them
//! (`jpeg_fill_bit_buffer`, `jpeg_make_d_derived_tbl`, `jpeg_huff_decode`,
//! `HUFF_EXTEND`), including what it does with bad data: a marker met inside a
//! scan feeds zero bits (JWRN_HIT_MARKER), an unknown code decodes as 0
//! (JWRN_HUFF_BAD_CODE). Running out of data inside a scan is an error (Pillow
//! reports a truncated file).
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

use super::markers::{HuffmanSpec, JResult};

/// Codes up to this length are found in one table lookup (jdhuff.h HUFF_LOOKAHEAD
/// is 8; 9 is as exact and a little faster).
const LOOKAHEAD: u32 = 9;

/// A decoding table built from a [`HuffmanSpec`] (jdhuff.c `jpeg_make_d_derived_tbl`).
#[derive(Debug, Clone)]
pub struct Huffman {
    /// For each `LOOKAHEAD`-bit prefix: `length << 8 | symbol`, or 0 when the
    /// code is longer.
    lookup: Vec<u16>,
    /// `max_code[l]`: the largest code of length `l` (1 to 16), −1 when none;
    /// `max_code[17]` ends the search.
    max_code: [i32; 18],
    /// `offset[l]`: the index of the first symbol of length `l` minus its code.
    offset: [i32; 17],
    values: [u8; 256],
}

impl Huffman {
    /// Builds the table; `dc` checks that every symbol is a magnitude category
    /// of at most 15 bits, as libjpeg-turbo does (JERR_BAD_HUFF_TABLE).
    pub fn new(spec: &HuffmanSpec, dc: bool) -> JResult<Self> {
        let mut values = [0u8; 256];
        if spec.values.len() > values.len() {
            return Err("a JPEG Huffman table has more than 256 codes".into());
        }
        values.iter_mut().zip(&spec.values).for_each(|(v, &s)| *v = s);
        if dc && spec.values.iter().any(|&s| s > 15) {
            return Err("a JPEG DC Huffman table has a category above 15".into());
        }
        let mut max_code = [-1i32; 18];
        let mut offset = [0i32; 17];
        let mut lookup = vec![0u16; 1 << LOOKAHEAD];
        // Canonical codes (T.81 C.2): consecutive within a length, doubled at
        // each longer length. `code` stays below 2^17 (checked at each length).
        let (mut code, mut index) = (0i32, 0i32);
        for (len, &count) in (1u32..=16).zip(&spec.counts) {
            let count = i32::from(count);
            let first = code;
            if count > 0 {
                if let Some(o) = offset.get_mut(len as usize) {
                    *o = index.wrapping_sub(first);
                }
                if let Some(m) = max_code.get_mut(len as usize) {
                    *m = first.wrapping_add(count).wrapping_sub(1);
                }
            }
            if len <= LOOKAHEAD {
                for (c, i) in (first..first.wrapping_add(count)).zip(index..) {
                    let symbol = usize::try_from(i).ok().and_then(|i| values.get(i)).copied().unwrap_or(0);
                    // Every LOOKAHEAD-bit prefix that starts with this code.
                    let shift = LOOKAHEAD.wrapping_sub(len);
                    let start = usize::try_from(c).unwrap_or(usize::MAX) << shift;
                    let entry = (u16::try_from(len).unwrap_or(0) << 8) | u16::from(symbol);
                    if let Some(slots) = lookup.get_mut(start..start.saturating_add(1 << shift)) {
                        slots.fill(entry);
                    }
                }
            }
            code = code.wrapping_add(count);
            index = index.wrapping_add(count);
            if code > (1 << len) {
                return Err("a JPEG Huffman table has more codes than its lengths allow".into());
            }
            code <<= 1;
        }
        if let Some(last) = max_code.get_mut(17) {
            *last = i32::MAX;
        }
        Ok(Self { lookup, max_code, offset, values })
    }
}

/// Reads bits from an entropy-coded segment.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// The next byte to read; at a marker it stays on the marker's 0xFF.
    pos: usize,
    /// The low `count` bits are unread, the oldest highest.
    acc: u64,
    count: u32,
    /// Zero bits fed after a marker or the end of the data; the last ones in `acc`.
    fake: u32,
    /// A marker or the end of the data has been reached.
    stopped: bool,
    /// It was the end of the data.
    at_end: bool,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, acc: 0, count: 0, fake: 0, stopped: false, at_end: false }
    }

    /// The bytes after the scan data read so far (from the marker that ended it,
    /// when one did).
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// Whether bits past the end of the data were used: the file is truncated.
    pub fn overran_end(&self) -> bool {
        self.at_end && self.fake > self.count
    }

    fn next_byte(&mut self) -> Option<u8> {
        let &b = self.data.get(self.pos)?;
        if b != 0xFF {
            self.pos = self.pos.saturating_add(1);
            return Some(b);
        }
        // 0xFF, fill bytes, then 0x00 is a stuffed 0xFF; anything else a marker.
        let after = self.data.get(self.pos..).unwrap_or_default();
        let fill = after.iter().take_while(|&&b| b == 0xFF).count();
        match after.get(fill) {
            Some(0) => {
                self.pos = self.pos.saturating_add(fill).saturating_add(1);
                Some(0xFF)
            }
            _ => None,
        }
    }

    fn fill(&mut self) {
        while self.count <= 56 {
            let byte = if self.stopped {
                None
            } else {
                let b = self.next_byte();
                if b.is_none() {
                    self.stopped = true;
                    self.at_end = self.data.get(self.pos..).is_none_or(|r| r.iter().all(|&b| b == 0xFF));
                }
                b
            };
            let byte = byte.unwrap_or_else(|| {
                self.fake = self.fake.saturating_add(8);
                0
            });
            self.acc = (self.acc << 8) | u64::from(byte);
            self.count = self.count.wrapping_add(8);
        }
    }

    /// The next `n` (0 to 16) bits without consuming them; `count` >= 16 after `fill`.
    fn peek(&mut self, n: u32) -> u32 {
        if self.count < n {
            self.fill();
        }
        let shifted = self.acc >> self.count.wrapping_sub(n);
        u32::try_from(shifted & ((1u64 << n).wrapping_sub(1))).unwrap_or(0)
    }

    fn consume(&mut self, n: u32) {
        self.count = self.count.saturating_sub(n);
    }

    /// `n` (0 to 16) bits as an unsigned number.
    pub fn bits(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    pub fn bit(&mut self) -> bool {
        self.bits(1) != 0
    }

    /// A Huffman-coded symbol (jdhuff.c `HUFF_DECODE`, `jpeg_huff_decode`).
    pub fn decode(&mut self, table: &Huffman) -> u8 {
        let look = self.peek(LOOKAHEAD);
        let entry = table.lookup.get(look as usize).copied().unwrap_or(0);
        if entry != 0 {
            let [symbol, len] = entry.to_le_bytes();
            self.consume(u32::from(len));
            return symbol;
        }
        let wide = self.peek(16);
        for len in (LOOKAHEAD + 1)..=16 {
            let code = i32::try_from(wide >> 16u32.wrapping_sub(len)).unwrap_or(i32::MAX);
            if code <= table.max_code.get(len as usize).copied().unwrap_or(-1) {
                self.consume(len);
                let at = code.wrapping_add(table.offset.get(len as usize).copied().unwrap_or(0));
                return usize::try_from(at).ok().and_then(|i| table.values.get(i)).copied().unwrap_or(0);
            }
        }
        // JWRN_HUFF_BAD_CODE: libjpeg fakes a zero.
        self.consume(16);
        0
    }

    /// `s` (0 to 15) extra bits, sign-extended (T.81 F.2.2.1 `EXTEND`).
    pub fn receive_extend(&mut self, s: u8) -> i32 {
        if s == 0 {
            return 0;
        }
        let s = u32::from(s.min(16));
        // Below 2^16: fits.
        let v = i32::try_from(self.bits(s)).unwrap_or(0);
        if v < (1 << s.wrapping_sub(1)) {
            v.wrapping_sub(1 << s).wrapping_add(1)
        } else {
            v
        }
    }

    /// At a restart interval's end: drops the bits still buffered (libjpeg-turbo
    /// jdhuff.c `process_restart` discards them too), skips to the next marker
    /// and, when it is RSTn, starts again after it. Returns false when another
    /// marker (or none) is there; the data then reads as zeros, as libjpeg's
    /// `resync_to_restart` leaves it.
    pub fn restart(&mut self) -> bool {
        self.acc = 0;
        self.count = 0;
        self.fake = 0;
        self.stopped = false;
        self.at_end = false;
        match super::markers::seek_marker(self.rest()) {
            Some((0xD0..=0xD7, tail)) => {
                self.pos = self.data.len().saturating_sub(tail.len());
                true
            }
            Some((_, tail)) => {
                // On the marker's 0xFF (marker byte and 0xFF before the tail).
                self.pos = self.data.len().saturating_sub(tail.len()).saturating_sub(2);
                self.stopped = true;
                false
            }
            None => {
                self.pos = self.data.len();
                self.stopped = true;
                self.at_end = true;
                false
            }
        }
    }
}
