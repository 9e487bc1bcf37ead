//! A bounds check of a GGUF header before candle reads it.
//!
//! candle 0.11's `gguf_file::Content::read` checks string and array lengths
//! against the file, but three crafted headers still panic inside it or in
//! `Content::tensor` (found by `fuzz/`, target `gguf_bundle`; inputs in
//! `tests/fuzz_regressions/gguf_bundle/`):
//!
//! - `general.alignment` = 0: a division by zero;
//! - tensor dimensions whose product overflows `usize` (a panic with overflow
//!   checks; a wrapped, wrong size without them, and in wasm32 a 64-bit dimension
//!   silently truncated to 32 bits);
//! - a tensor with no elements: a slice made from a dangling, misaligned pointer.
//!
//! This walks the same layout (GGUF v1–v3, little-endian) without allocating
//! more than one key at a time, and refuses those headers with a message. It
//! also bounds what a kpl encoder never contains, so that no header can make the
//! reader allocate far more memory than the file's size: arrays (candle keeps one
//! 32-byte `Value` per element, so a 100 MB array of bytes would take 3.2 GB) are
//! limited to [`MAX_ARRAY_ELEMENTS`] in all, and a tensor's element count to
//! four per byte of the file.
//!
//! No header may panic this walker: indexing, `unwrap`/`expect` and unchecked
//! integer arithmetic are denied by clippy here (`make test` runs clippy).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]

use std::io::{Read, Seek, SeekFrom};

/// Array elements allowed in one header, all arrays together (kpl writes none).
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;
const MAX_DEPTH: usize = 8;

struct Walker<'a, R> {
    reader: &'a mut R,
    pos: u64,
    len: u64,
    /// Length prefixes are u32 in GGUF v1, u64 after.
    wide: bool,
    array_elements: u64,
}

type Check<T> = std::result::Result<T, String>;

impl<R: Read + Seek> Walker<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Check<[u8; N]> {
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b).map_err(|_| format!("truncated header at byte {}", self.pos))?;
        self.advance(N as u64)?;
        Ok(b)
    }

    /// Moves the position on by `n` bytes already read or skipped.
    fn advance(&mut self, n: u64) -> Check<()> {
        self.pos = self.pos.checked_add(n).filter(|&p| p <= self.len).ok_or_else(|| format!("truncated header at byte {}", self.pos))?;
        Ok(())
    }

    /// Bytes left after the position.
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn u32(&mut self) -> Check<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Check<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn length(&mut self) -> Check<u64> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }

    /// Skips `n` bytes that must be present.
    fn skip(&mut self, n: u64, what: &str) -> Check<()> {
        if n > self.remaining() {
            return Err(format!("{what} of {n} bytes at byte {} runs past the end of the file ({} bytes)", self.pos, self.len));
        }
        self.advance(n)?;
        self.reader.seek(SeekFrom::Start(self.pos)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn string(&mut self) -> Check<Vec<u8>> {
        let n = self.length()?;
        if n > self.remaining() {
            return Err(format!("a string of {n} bytes at byte {} runs past the end of the file", self.pos));
        }
        let size = usize::try_from(n).map_err(|_| format!("a string of {n} bytes does not fit in memory"))?;
        let mut s = vec![0u8; size];
        self.reader.read_exact(&mut s).map_err(|e| e.to_string())?;
        self.advance(n)?;
        Ok(s)
    }

    /// Skips a value of GGUF type `kind`; returns it when it is an unsigned or
    /// signed integer of at most 32 bits (for `general.alignment`).
    fn value(&mut self, kind: u32, depth: usize) -> Check<Option<i64>> {
        Ok(match kind {
            0 => Some(i64::from(u8::from_le_bytes(self.bytes()?))),
            1 => Some(i64::from(i8::from_le_bytes(self.bytes()?))),
            2 => Some(i64::from(u16::from_le_bytes(self.bytes()?))),
            3 => Some(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => Some(i64::from(self.u32()?)),
            5 => Some(i64::from(self.u32()? as i32)),
            6 => self.skip(4, "an f32").map(|_| None)?,
            7 => self.skip(1, "a bool").map(|_| None)?,
            8 => self.skip_string()?,
            10..=12 => self.skip(8, "a 64-bit value").map(|_| None)?,
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
                }
                let element = self.u32()?;
                let n = self.length()?;
                self.array_elements = self.array_elements.saturating_add(n);
                if self.array_elements > MAX_ARRAY_ELEMENTS {
                    return Err(format!("more than {MAX_ARRAY_ELEMENTS} array elements in the metadata"));
                }
                for _ in 0..n {
                    self.value(element, depth.saturating_add(1))?;
                }
                None
            }
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }

    fn skip_string(&mut self) -> Check<Option<i64>> {
        let n = self.length()?;
        self.skip(n, "a string").map(|_| None)
    }
}

/// Checks the GGUF header of everything `reader` holds (it is left at the start).
pub fn check_header<R: Read + Seek>(reader: &mut R) -> Check<()> {
    let len = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut w = Walker { reader, pos: 0, len, wide: true, array_elements: 0 };
    let result = walk(&mut w);
    w.reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    result
}

fn walk<R: Read + Seek>(w: &mut Walker<'_, R>) -> Check<()> {
    let magic = w.bytes::<4>()?;
    if &magic != b"GGUF" && &magic != b"FUGG" {
        return Err(format!("unknown magic 0x{:08x}", u32::from_le_bytes(magic)));
    }
    let version = w.u32()?;
    if !(1..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version}"));
    }
    w.wide = version != 1;
    let tensors = w.length()?;
    let entries = w.length()?;
    for _ in 0..entries {
        let key = w.string()?;
        let kind = w.u32()?;
        let value = w.value(kind, 0)?;
        if key == b"general.alignment" && value.is_some_and(|v| v <= 0) {
            return Err(format!("general.alignment is {}, it must be positive", value.unwrap_or(0)));
        }
    }
    let max_elements = w.len.saturating_mul(4);
    for _ in 0..tensors {
        let name = w.string()?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let dims = w.u32()?;
        if dims > MAX_DIMS {
            return Err(format!("tensor {name} has {dims} dimensions (at most {MAX_DIMS})"));
        }
        let mut shape = Vec::with_capacity(dims as usize);
        for _ in 0..dims {
            shape.push(if w.wide { w.u64()? } else { u64::from(w.u32()?) });
        }
        let elements = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if elements == Some(0) {
            return Err(format!("tensor {name} has no elements (dimensions {shape:?})"));
        }
        if elements.is_none_or(|n| n > max_elements || usize::try_from(n).is_err()) {
            return Err(format!("tensor {name} has dimensions {shape:?}, more elements than a {}-byte file holds", w.len));
        }
        w.skip(12, "a tensor's type (4 bytes) and offset (8 bytes)")?;
    }
    Ok(())
}
