//! The bit reader of JPEG-LS scan data (ITU-T T.87 A.1 and D.1): most
//! significant bit first; after a 0xFF byte the encoder stuffs a 0 bit, so the
//! next byte carries 7 bits; 0xFF followed by a byte with its high bit set is a
//! marker, which ends the entropy-coded segment.
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

use super::JResult;

pub struct BitReader<'a> {
    data: &'a [u8],
    /// The next byte of `data` not in the accumulator yet.
    pos: usize,
    /// The low `bits` bits are unread, the first of them the most significant.
    acc: u64,
    bits: u32,
    /// The byte before `pos` was a 0xFF of the coded data: the next byte's high bit is stuffed.
    stuffed: bool,
    /// Zero bits appended after the segment's end (a marker or the end of the data).
    padding: u32,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, acc: 0, bits: 0, stuffed: false, padding: 0 }
    }

    /// Tops the accumulator up to more than 56 bits, with zero bits past the
    /// segment's end (counted in `padding`).
    fn fill(&mut self) {
        while self.bits <= 56 {
            let next = self.data.get(self.pos).copied();
            let byte = match next {
                Some(0xFF) if self.data.get(self.pos.saturating_add(1)).is_none_or(|&b| b >= 0x80) => None,
                other => other,
            };
            match byte {
                Some(b) => {
                    self.pos = self.pos.saturating_add(1);
                    if self.stuffed {
                        self.acc = (self.acc << 7) | u64::from(b & 0x7F);
                        self.bits = self.bits.saturating_add(7);
                    } else {
                        self.acc = (self.acc << 8) | u64::from(b);
                        self.bits = self.bits.saturating_add(8);
                    }
                    self.stuffed = b == 0xFF;
                }
                None => {
                    self.acc <<= 8;
                    self.bits = self.bits.saturating_add(8);
                    self.padding = self.padding.saturating_add(8);
                }
            }
        }
    }

    /// Whether bits past the segment's end were read: the scan data is truncated.
    pub fn overrun(&self) -> bool {
        self.padding > self.bits
    }

    fn check(&self) -> JResult<()> {
        if self.overrun() {
            Err("the JPEG-LS scan data ends early (truncated or corrupt)".into())
        } else {
            Ok(())
        }
    }

    /// `n` bits (0 to 32) as an unsigned number.
    pub fn read(&mut self, n: u32) -> JResult<u32> {
        if n == 0 {
            return Ok(0);
        }
        if self.bits < n {
            self.fill();
        }
        // 1 <= n <= 32 <= bits <= 64.
        let n = n.min(32);
        self.bits = self.bits.saturating_sub(n);
        let value = (self.acc >> self.bits) & ((1u64 << n).wrapping_sub(1));
        self.check()?;
        Ok(u32::try_from(value).unwrap_or(u32::MAX))
    }

    pub fn bit(&mut self) -> JResult<bool> {
        Ok(self.read(1)? == 1)
    }

    /// The number of 0 bits before the next 1 bit, which is consumed too; an
    /// error when more than `max` zeros come first.
    pub fn zeros(&mut self, max: u32) -> JResult<u32> {
        let mut count = 0u32;
        loop {
            if self.bits == 0 {
                self.fill();
            }
            // The unread bits at the top of a 64-bit word (bits >= 1 here).
            let top = self.acc << 64u32.saturating_sub(self.bits).min(63);
            let lead = top.leading_zeros().min(self.bits);
            count = count.saturating_add(lead);
            if count > max {
                self.bits = self.bits.saturating_sub(lead);
                self.check()?;
                return Err("invalid JPEG-LS code (a unary prefix too long)".into());
            }
            if lead < self.bits {
                self.bits = self.bits.saturating_sub(lead.saturating_add(1));
                self.check()?;
                return Ok(count);
            }
            self.bits = 0;
            self.check()?;
        }
    }

    /// The offset in the data of the first byte not read into the accumulator:
    /// at or before the marker that ends the segment, and after every byte of
    /// coded data that was used.
    pub fn position(&self) -> usize {
        self.pos
    }
}
