//! Pixel data of one frame to stored sample values (`i32`, interleaved), for
//! native data and each supported encapsulation. Every decoder's output size is
//! fixed by Rows × Columns × Samples per Pixel, which the caller has checked
//! against the pixel limit; compressed headers are checked against those
//! attributes before any codec runs, so a codec never allocates from numbers
//! the DICOM header did not vouch for.
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

use std::borrow::Cow;

use super::jpeg12;
use super::jpeg_ls;
use super::parse::{Fragment, PResult};

/// What the attributes say about one frame's samples, made through
/// [`Layout::checked`], which checks that every size derived from it fits in `usize`.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub rows: usize,
    pub columns: usize,
    pub samples: usize,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    /// Planar Configuration 1 (colour-by-plane) for native data.
    pub planar: bool,
    /// Native YBR_FULL_422: two luminance samples share one Cb and one Cr.
    pub ybr_422: bool,
}

impl Layout {
    /// The layout after checking its ranges: rows, columns and samples at
    /// least 1, 1, 8, 16 or 32 bits allocated, 1 to Bits Allocated bits stored,
    /// and the bytes of a frame representable (so that [`Layout::pixels`],
    /// [`Layout::sample_count`] and [`Layout::native_frame_bytes`] never
    /// overflow, on 32-bit targets included).
    pub fn checked(self) -> PResult<Self> {
        let Self { rows, columns, samples, bits_allocated, bits_stored, .. } = self;
        if rows == 0 || columns == 0 || samples == 0 {
            return Err(format!("the image has no samples ({columns}×{rows}×{samples})"));
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
            return Err(format!("Bits Allocated {bits_allocated} is not supported (1, 8, 16 or 32)"));
        }
        if bits_stored == 0 || bits_stored > bits_allocated {
            return Err(format!("Bits Stored {bits_stored} does not fit Bits Allocated {bits_allocated}"));
        }
        rows.checked_mul(columns)
            .and_then(|p| p.checked_mul(samples))
            .and_then(|s| s.checked_mul(8))
            .ok_or_else(|| format!("a frame of {columns}×{rows}×{samples} samples is too large for this platform"))?;
        Ok(self)
    }

    // The products below cannot saturate: `Layout::checked` made sure that
    // rows × columns × samples × 2 fits in usize.
    pub fn pixels(&self) -> usize {
        self.rows.saturating_mul(self.columns)
    }

    pub fn sample_count(&self) -> usize {
        self.pixels().saturating_mul(self.samples)
    }

    /// A raw stored value reduced to Bits Stored and sign-extended when signed
    /// (i64: unsigned 32-bit values included).
    pub fn normalize(&self, raw: u32) -> i64 {
        // The bits above Bits Stored are shifted out at the top, then the value is
        // shifted back down, arithmetically (sign-extending) when signed.
        // Bits Stored is 1 to 32 (`checked`), so `unused` is 0 to 31.
        let unused = 32u32.saturating_sub(u32::from(self.bits_stored));
        let top = raw.checked_shl(unused).unwrap_or(0);
        if self.signed {
            i64::from(i32::from_ne_bytes(top.to_ne_bytes()).checked_shr(unused).unwrap_or(0))
        } else {
            i64::from(top.checked_shr(unused).unwrap_or(0))
        }
    }

    /// Bytes of one native frame (bit-packed 1-bit frames: rounded up; they
    /// need not start on a byte boundary, see [`bits`]).
    pub fn native_frame_bytes(&self) -> usize {
        if self.ybr_422 {
            self.pixels().saturating_mul(2)
        } else if self.bits_allocated == 1 {
            self.sample_count().div_ceil(8)
        } else {
            self.sample_count().saturating_mul(usize::from(self.bits_allocated / 8))
        }
    }
}

/// `v` converted by Rust's saturating float-to-integer `as`: NaN and negative
/// values give 0, values above 65535 give 65535, others are truncated toward
/// zero. Every caller rounds and clamps to the u16 range first.
#[allow(clippy::cast_possible_truncation)] // the DICOM code's one float-to-integer conversion: `as` saturates (no UB, no panic) and callers pass values already rounded and clamped to 0..=65535
pub fn saturating_u16(v: f64) -> u16 {
    v as u16
}

/// The bytes of an OW value of 8-bit samples under big endian in their stored
/// order: each 16-bit word was written byte-swapped (PS3.5 7.3), so they are
/// swapped back word by word over the whole value, before it is cut into frames
/// (a frame of odd length ends inside a word). The last byte of a value of odd
/// length (which PS3.5 forbids) is the second half of a word whose first half is
/// missing: it is dropped.
pub fn unswap_ow(value: &[u8]) -> Vec<u8> {
    let (words, _) = value.as_chunks::<2>();
    words.iter().flat_map(|&[a, b]| [b, a]).collect()
}

/// Frame `frame` of bit-packed (Bits Allocated 1) native pixel data: sample
/// `i` of the value is bit `i % 8` (least significant first) of byte `i / 8`
/// (PS3.5 8.1.1), frames following each other with no padding, so a frame may
/// start inside a byte (as pydicom's `unpack_bits` reads them). 16-bit words
/// do not reorder the bits under big endian either (PS3.5 8.1.1, as pydicom).
pub fn bits(value: &[u8], layout: &Layout, frame: usize) -> PResult<Vec<i64>> {
    let count = layout.sample_count();
    // `Layout::checked` keeps count × 8 in range; frame × count is bounded by the
    // caller's check that every frame's bits are present.
    let first = frame.checked_mul(count).ok_or("the pixel data size overflows")?;
    let end = first.checked_add(count).ok_or("the pixel data size overflows")?;
    if end.div_ceil(8) > value.len() {
        return Err(format!("the bit-packed Pixel Data ends before frame {frame}"));
    }
    let mut planes: Vec<i64> = (first..end)
        .map(|i| {
            let byte = value.get(i / 8).copied().unwrap_or(0);
            i64::from((byte >> (i % 8)) & 1)
        })
        .collect();
    if layout.planar && layout.samples > 1 {
        planes = interleave(&planes, layout.pixels(), layout.samples);
    }
    Ok(planes)
}

/// One frame of native pixel data (8, 16 or 32 bits allocated; 1 is [`bits`]).
pub fn native(frame_bytes: &[u8], layout: &Layout, big_endian: bool) -> PResult<Vec<i64>> {
    let expected = layout.native_frame_bytes();
    if frame_bytes.len() != expected {
        return Err(format!("a frame holds {} bytes of pixel data, {expected} expected", frame_bytes.len()));
    }
    if layout.ybr_422 {
        if !layout.columns.is_multiple_of(2) || layout.bits_allocated != 8 {
            return Err("YBR_FULL_422 pixel data needs an even number of columns and 8 bits allocated".into());
        }
        // Y1 Y2 Cb Cr for each pair of pixels (an even count: columns are even).
        let (quads, _) = frame_bytes.as_chunks::<4>();
        let mut out = Vec::with_capacity(layout.sample_count());
        for &[y1, y2, cb, cr] in quads {
            // Reduced to Bits Stored like every other native sample (pydicom
            // masks the unused high bits after expanding the pairs).
            let [y1, y2, cb, cr] = [y1, y2, cb, cr].map(|b| layout.normalize(u32::from(b)));
            out.extend_from_slice(&[y1, cb, cr, y2, cb, cr]);
        }
        return Ok(out);
    }
    let mut values: Vec<i64> = match layout.bits_allocated {
        8 => frame_bytes.iter().map(|&b| layout.normalize(u32::from(b))).collect(),
        16 => frame_bytes
            .as_chunks::<2>()
            .0
            .iter()
            .map(|&w| {
                let v = if big_endian { u16::from_be_bytes(w) } else { u16::from_le_bytes(w) };
                layout.normalize(u32::from(v))
            })
            .collect(),
        32 => frame_bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|&w| layout.normalize(if big_endian { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) }))
            .collect(),
        other => return Err(format!("Bits Allocated {other} is not supported (8, 16 or 32)")),
    };
    if layout.planar && layout.samples > 1 {
        values = interleave(&values, layout.pixels(), layout.samples);
    }
    Ok(values)
}

/// Colour-by-plane (`samples` planes of `pixels` values) to colour-by-pixel.
fn interleave<T: Copy>(planes: &[T], pixels: usize, samples: usize) -> Vec<T> {
    let mut planes: Vec<std::slice::Iter<'_, T>> =
        planes.chunks(pixels.max(1)).take(samples).map(|plane| plane.iter()).collect();
    let mut out = Vec::with_capacity(pixels.saturating_mul(samples));
    for _ in 0..pixels {
        for plane in &mut planes {
            out.extend(plane.next().copied());
        }
    }
    out
}

/// The encoded bytes of frame `frame` of `frames` from encapsulated fragments:
/// one fragment per frame, all fragments for a single frame, else the Basic
/// Offset Table, else fragments that start with the codec's start marker.
pub fn frame_fragments<'a>(
    fragments: &[Fragment<'a>],
    offset_table: &[u8],
    frames: usize,
    frame: usize,
    starts_frame: fn(&[u8]) -> bool,
) -> PResult<Cow<'a, [u8]>> {
    if fragments.is_empty() {
        return Err("the encapsulated Pixel Data has no fragments".into());
    }
    let concat = |parts: &[Fragment<'a>]| -> Cow<'a, [u8]> {
        match parts {
            [only] => Cow::Borrowed(only.bytes),
            _ => Cow::Owned(parts.iter().flat_map(|f| f.bytes.iter().copied()).collect()),
        }
    };
    let missing = || format!("frame {frame} does not exist: the image has {frames} frame(s)");
    if fragments.len() == frames {
        return fragments.get(frame).map(|f| Cow::Borrowed(f.bytes)).ok_or_else(missing);
    }
    if frames == 1 {
        return Ok(concat(fragments));
    }
    if fragments.len() < frames {
        return Err(format!("the Pixel Data has {} fragments for {frames} frames", fragments.len()));
    }
    if frames.checked_mul(4) == Some(offset_table.len()) {
        let offsets: Vec<usize> = offset_table
            .as_chunks::<4>()
            .0
            .iter()
            .map(|&w| usize::try_from(u32::from_le_bytes(w)).unwrap_or(usize::MAX))
            .collect();
        if offsets.is_sorted_by(|a, b| a < b) {
            let mut bounds = offsets.iter().skip(frame).copied();
            let start = bounds.next().ok_or_else(missing)?;
            let end = bounds.next().unwrap_or(usize::MAX);
            if let Some(first) = fragments.iter().position(|f| f.offset == start) {
                let tail = fragments.get(first..).unwrap_or_default();
                let count = tail.iter().take_while(|f| f.offset < end).count();
                return Ok(concat(tail.get(..count).unwrap_or_default()));
            }
        }
        return Err("the Basic Offset Table does not match the Pixel Data fragments".into());
    }
    let starts: Vec<usize> =
        fragments.iter().enumerate().filter(|(_, f)| starts_frame(f.bytes)).map(|(i, _)| i).collect();
    if starts.len() == frames && starts.first() == Some(&0) {
        let mut bounds = starts.iter().skip(frame).copied();
        let start = bounds.next().ok_or_else(missing)?;
        let end = bounds.next().unwrap_or(fragments.len());
        let parts = fragments.get(start..end).ok_or("the Pixel Data fragments are out of order")?;
        return Ok(concat(parts));
    }
    Err(format!("cannot tell which of the {} Pixel Data fragments belong to frame {frame}", fragments.len()))
}

// ---------------------------------------------------------------- RLE Lossless

pub fn rle_starts_frame(_: &[u8]) -> bool {
    true
}

/// DICOM RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, one
/// PackBits segment per byte of each sample, most significant byte first.
pub fn rle(fragment: &[u8], layout: &Layout) -> PResult<Vec<i64>> {
    // The left shift of each byte of a sample, most significant first.
    let shifts: &[u32] = match layout.bits_allocated {
        8 => &[0],
        16 => &[8, 0],
        32 => &[24, 16, 8, 0],
        other => return Err(format!("Bits Allocated {other} is not supported for RLE (8, 16 or 32)")),
    };
    let Some((header, _)) = fragment.split_first_chunk::<64>() else {
        return Err(format!("the RLE frame is {} bytes, shorter than its 64-byte header", fragment.len()));
    };
    let (words, _) = header.as_chunks::<4>();
    let mut words = words.iter().map(|&w| usize::try_from(u32::from_le_bytes(w)).unwrap_or(usize::MAX));
    let segments = words.next().unwrap_or(0);
    let expected = layout.samples.saturating_mul(shifts.len());
    if segments != expected {
        return Err(format!("the RLE header lists {segments} segments, {expected} expected"));
    }
    let mut bounds: Vec<usize> = words.take(segments).collect();
    if bounds.len() != segments {
        return Err(format!("the RLE header has room for 15 segments, not {segments}"));
    }
    bounds.push(fragment.len());
    if bounds.first() != Some(&64) || !bounds.is_sorted() {
        return Err("the RLE segment offsets are invalid".into());
    }
    let mut ranges = bounds.iter().zip(bounds.iter().skip(1)).enumerate();
    let mut raw = vec![0u32; layout.sample_count()];
    let mut plane = vec![0u8; layout.pixels()];
    for sample in 0..layout.samples {
        for &shift in shifts {
            let (seg, (&start, &end)) = ranges.next().ok_or("the RLE header lists too few segments")?;
            let segment = fragment.get(start..end).ok_or("the RLE segment offsets are invalid")?;
            packbits(segment, &mut plane).map_err(|e| format!("RLE segment {seg}: {e}"))?;
            // Sample `sample` of each pixel: raw[p * samples + sample].
            let targets = raw.iter_mut().skip(sample).step_by(layout.samples.max(1));
            for (value, &b) in targets.zip(&plane) {
                *value |= u32::from(b) << shift;
            }
        }
    }
    Ok(raw.into_iter().map(|v| layout.normalize(v)).collect())
}

/// Decodes one PackBits segment into exactly `out.len()` bytes.
fn packbits(mut segment: &[u8], out: &mut [u8]) -> PResult<()> {
    let total = out.len();
    let mut rest = out;
    while !rest.is_empty() {
        let Some((&header, tail)) = segment.split_first() else {
            return Err(format!("ends after {} of {total} bytes", total.saturating_sub(rest.len())));
        };
        segment = tail;
        match header {
            // A literal run of header + 1 (1 to 128) bytes.
            0..=127 => {
                let count = usize::from(header).saturating_add(1);
                let (literal, tail) = segment.split_at_checked(count).ok_or("a literal run goes past the segment")?;
                segment = tail;
                // `min` keeps the split within `rest`.
                let n = count.min(rest.len());
                let (done, tail) = std::mem::take(&mut rest).split_at_mut(n);
                done.iter_mut().zip(literal).for_each(|(d, &s)| *d = s);
                rest = tail;
            }
            // No operation.
            128 => {}
            // 257 - header (2 to 128) copies of the next byte: 256 - header is
            // its wrapping negation.
            129..=255 => {
                let count = usize::from(header.wrapping_neg()).saturating_add(1);
                let (&value, tail) = segment.split_first().ok_or("a replicate run goes past the segment")?;
                segment = tail;
                let n = count.min(rest.len());
                let (done, tail) = std::mem::take(&mut rest).split_at_mut(n);
                done.fill(value);
                rest = tail;
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------- JPEG

pub fn jpeg_starts_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

/// What the JPEG headers say before decoding.
#[derive(Debug, Clone, Copy)]
pub struct JpegHeader {
    pub sof: u8,
    pub precision: u8,
    pub height: u16,
    pub width: u16,
    pub components: u8,
    /// A whole Adobe APP14 segment (its transform byte present).
    pub adobe: bool,
    /// An APPn segment that starts with "JFIF".
    pub jfif: bool,
    /// Component identifiers "RGB" or "rgb" (ASCII) in the frame header.
    pub rgb_ids: bool,
}

// The marker helpers are the JPEG decoder's (one copy; jpeg12.rs uses them too).
pub use crate::preprocess::jpeg::markers::{marker_segment, next_marker};

/// Scans the markers of a JPEG stream up to its frame header.
pub fn jpeg_header(data: &[u8]) -> PResult<JpegHeader> {
    let Some(mut rest) = data.strip_prefix(&[0xFF, 0xD8]) else {
        return Err("the JPEG data does not start with an SOI marker".into());
    };
    let (mut adobe, mut jfif) = (false, false);
    loop {
        let (marker, after) = next_marker(rest).ok_or("the JPEG data ends (or is corrupt) before its frame header")?;
        rest = after;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue;
        }
        let (segment, after) = marker_segment(rest)?;
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let &[precision, h0, h1, w0, w1, components, ref specs @ ..] = segment else {
                    return Err("the JPEG frame header is truncated".into());
                };
                // Three bytes per component, its identifier first.
                let ids: Vec<u8> = specs.as_chunks::<3>().0.iter().map(|&[id, _, _]| id).collect();
                return Ok(JpegHeader {
                    // SOFn is marker C0 + n.
                    sof: marker & 0x0F,
                    precision,
                    height: u16::from_be_bytes([h0, h1]),
                    width: u16::from_be_bytes([w0, w1]),
                    components,
                    adobe,
                    jfif,
                    rgb_ids: matches!(ids.as_slice(), b"RGB" | b"rgb"),
                });
            }
            // "Adobe", version, two flag words and the transform byte: 12 bytes.
            // A shorter segment says nothing (libjpeg ignores it, and so does
            // pydicom's rendering of SC_rgb_jpeg.dcm).
            0xEE if segment.starts_with(b"Adobe") && segment.len() >= 12 => adobe = true,
            0xE0..=0xEF if segment.starts_with(b"JFIF") => jfif = true,
            0xD9 | 0xDA => return Err("the JPEG data has no frame header before its scan".into()),
            _ => {}
        }
        rest = after;
    }
}

/// Whether the three components of a JPEG frame are YCbCr, as pydicom 3 decides
/// (`DecodeRunner._conform_jpg_colorspace`): component identifiers "RGB" or
/// "rgb" say RGB, a JFIF APP segment says YCbCr when the Photometric
/// Interpretation names no YBR, else the Photometric Interpretation says
/// (YBR_FULL and YBR_FULL_422 are YCbCr; pydicom converts no other YBR).
fn jpeg_is_ybr(header: &JpegHeader, photometric: &str) -> bool {
    if header.rgb_ids {
        false
    } else if photometric.contains("YBR") {
        matches!(photometric, "YBR_FULL" | "YBR_FULL_422")
    } else {
        header.jfif
    }
}

/// Decodes a JPEG frame: 8-bit DCT and lossless (2–16 bits) with `jpeg-decoder`,
/// 12-bit extended DCT with our own decoder. Returns the samples and whether
/// they are still YCbCr (lossless frames: their components come out as stored,
/// and the caller converts them as it converts native YBR_FULL, as pydicom
/// does); DCT colour comes out as RGB.
pub fn jpeg(data: &[u8], layout: &Layout, photometric: &str) -> PResult<(Vec<i64>, bool)> {
    let header = jpeg_header(data)?;
    if usize::from(header.width) != layout.columns || usize::from(header.height) != layout.rows {
        return Err(format!(
            "the JPEG frame is {}×{} but Columns × Rows say {}×{}",
            header.width, header.height, layout.columns, layout.rows
        ));
    }
    if usize::from(header.components) != layout.samples {
        return Err(format!(
            "the JPEG frame has {} components but Samples per Pixel is {}",
            header.components, layout.samples
        ));
    }
    let lossless = matches!(header.sof, 3 | 7 | 11 | 15);
    if !lossless && header.sof > 2 {
        return Err(format!("JPEG process SOF{} (hierarchical or arithmetic coding) is not supported", header.sof));
    }
    let ybr = layout.samples == 3 && jpeg_is_ybr(&header, photometric);
    if !lossless && header.precision == 12 {
        if header.sof == 2 {
            return Err("12-bit progressive JPEG is not supported".into());
        }
        let samples = jpeg12::decode(data, layout.columns, layout.rows).map_err(|e| format!("12-bit JPEG: {e}"))?;
        if samples.len() != layout.sample_count() {
            return Err("the 12-bit JPEG decoded to an unexpected size".into());
        }
        return Ok((samples.into_iter().map(|v| layout.normalize(u32::from(v))).collect(), false));
    }
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.set_max_decoding_buffer_size(layout.sample_count().saturating_mul(2).saturating_add(1024));
    if layout.samples == 3 && !lossless {
        // The codestream and the Photometric Interpretation say whether the
        // encoder converted to YCbCr; an Adobe marker, when present, says so
        // itself for RGB.
        use jpeg_decoder::ColorTransform;
        if ybr {
            decoder.set_color_transform(ColorTransform::YCbCr);
        } else if !header.adobe {
            decoder.set_color_transform(ColorTransform::RGB);
        }
    }
    let pixels = decoder.decode().map_err(|e| format!("JPEG decoding failed: {e}"))?;
    let info = decoder.info().ok_or("the JPEG decoder returned no image information")?;
    if usize::from(info.width) != layout.columns || usize::from(info.height) != layout.rows {
        return Err("the JPEG decoder returned an unexpected size".into());
    }
    use jpeg_decoder::PixelFormat;
    let (samples, bytes_per_sample) = if lossless {
        // jpeg-decoder returns lossless frames of any component count as they
        // are stored, interleaved, one byte a sample at precision 8 and two
        // (native endian) at every other precision, 2 to 7 included.
        (usize::from(header.components), if header.precision == 8 { 1 } else { 2 })
    } else {
        match info.pixel_format {
            PixelFormat::L8 => (1, 1),
            PixelFormat::L16 => (1, 2),
            PixelFormat::RGB24 => (3, 1),
            PixelFormat::CMYK32 => return Err("CMYK JPEG data is not supported".into()),
        }
    };
    if samples != layout.samples || layout.sample_count().checked_mul(bytes_per_sample) != Some(pixels.len()) {
        return Err("the JPEG decoder returned an unexpected number of samples".into());
    }
    let values = if bytes_per_sample == 2 {
        pixels.as_chunks::<2>().0.iter().map(|&w| layout.normalize(u32::from(u16::from_ne_bytes(w)))).collect()
    } else {
        pixels.into_iter().map(|v| layout.normalize(u32::from(v))).collect()
    };
    Ok((values, lossless && ybr))
}

// -------------------------------------------------------------------- JPEG-LS

/// Decodes a JPEG-LS frame (our `jpeg_ls` decoder) after checking its frame
/// header against Columns, Rows, Samples per Pixel and Bits Allocated. Samples
/// come out as stored (colour by pixel whatever the interleave mode); signed
/// ones are sign-extended at the codestream's precision, which is how pydicom
/// reads them (JPEG-LS codes every sample as unsigned).
pub fn jpeg_ls(data: &[u8], layout: &Layout) -> PResult<Vec<i64>> {
    let header = jpeg_ls::header(data)?;
    if header.width != layout.columns || header.height != layout.rows {
        return Err(format!(
            "the JPEG-LS frame is {}×{} but Columns × Rows say {}×{}",
            header.width, header.height, layout.columns, layout.rows
        ));
    }
    if header.components != layout.samples {
        return Err(format!(
            "the JPEG-LS frame has {} components but Samples per Pixel is {}",
            header.components, layout.samples
        ));
    }
    if u16::from(header.precision) > layout.bits_allocated {
        return Err(format!(
            "the JPEG-LS frame has {}-bit samples but Bits Allocated is {}",
            header.precision, layout.bits_allocated
        ));
    }
    let decoded = jpeg_ls::decode(data, layout.sample_count()).map_err(|e| format!("JPEG-LS: {e}"))?;
    if decoded.samples.len() != layout.sample_count() {
        return Err("the JPEG-LS decoder returned an unexpected number of samples".into());
    }
    // 2 <= precision <= 16: the shift is 16 to 30.
    let unused = 32u32.saturating_sub(u32::from(decoded.precision));
    Ok(decoded
        .samples
        .into_iter()
        .map(|v| i64::from(if layout.signed { (u32::from(v) << unused).cast_signed() >> unused } else { i32::from(v) }))
        .collect())
}

// ------------------------------------------------------------------ JPEG 2000

const JP2_SIGNATURE: &[u8] = b"\x00\x00\x00\x0C\x6A\x50\x20\x20";

pub fn j2k_starts_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) || bytes.starts_with(JP2_SIGNATURE)
}

#[derive(Debug, Clone)]
struct Siz {
    width: u32,
    height: u32,
    /// (signed, precision, dx, dy) per component.
    components: Vec<(bool, u8, u8, u8)>,
}

/// The raw codestream inside a JP2 file, or the data itself.
fn codestream(data: &[u8]) -> PResult<&[u8]> {
    if !data.starts_with(JP2_SIGNATURE) {
        return Ok(data);
    }
    let mut rest = data;
    while let Some((&[l0, l1, l2, l3, k0, k1, k2, k3], after)) = rest.split_first_chunk::<8>() {
        let (header, len) = match u32::from_be_bytes([l0, l1, l2, l3]) {
            // The box runs to the end of the file.
            0 => (8, rest.len()),
            // An extended 64-bit length follows the type.
            1 => {
                let &long = after.first_chunk::<8>().ok_or("a JP2 box header is truncated")?;
                (16, usize::try_from(u64::from_be_bytes(long)).map_err(|_| "a JP2 box is too large")?)
            }
            l => (8, usize::try_from(l).map_err(|_| "a JP2 box is too large")?),
        };
        // The box, with `header <= len <= rest.len()`; every box moves on by at least 8 bytes.
        let boxed = rest.get(..len).filter(|_| len >= header).ok_or("a JP2 box length is invalid")?;
        if [k0, k1, k2, k3] == *b"jp2c" {
            return Ok(boxed.get(header..).unwrap_or_default());
        }
        rest = rest.get(len..).unwrap_or_default();
    }
    Err("the JP2 file has no codestream box".into())
}

fn siz(stream: &[u8]) -> PResult<Siz> {
    let Some(s) = stream.strip_prefix(&[0xFF, 0x4F, 0xFF, 0x51]) else {
        return Err("the JPEG 2000 data does not start with SOC and SIZ markers".into());
    };
    // Lsiz, Rsiz (2 bytes each), Xsiz, Ysiz, XOsiz, YOsiz, four tile sizes and
    // offsets (4 bytes each), Csiz (2 bytes), then 3 bytes per component.
    let Some((fixed, rest)) = s.split_first_chunk::<38>() else {
        return Err("the JPEG 2000 SIZ marker is truncated".into());
    };
    let (words, _) = fixed.as_chunks::<4>();
    let &[_, xsiz, ysiz, xosiz, yosiz, ..] = words else {
        return Err("the JPEG 2000 SIZ marker is truncated".into());
    };
    let [xsiz, ysiz, xosiz, yosiz] = [xsiz, ysiz, xosiz, yosiz].map(u32::from_be_bytes);
    let [.., c0, c1] = *fixed;
    let count = usize::from(u16::from_be_bytes([c0, c1]));
    let comps = rest.as_chunks::<3>().0.get(..count).ok_or("the JPEG 2000 SIZ marker is truncated")?;
    let (Some(width), Some(height)) = (xsiz.checked_sub(xosiz), ysiz.checked_sub(yosiz)) else {
        return Err("the JPEG 2000 image area is empty".into());
    };
    if width == 0 || height == 0 {
        return Err("the JPEG 2000 image area is empty".into());
    }
    Ok(Siz {
        width,
        height,
        // Ssiz: bit 7 the sign, bits 0–6 the precision minus 1 (so at most 128).
        components: comps.iter().map(|&[s, dx, dy]| (s & 0x80 != 0, (s & 0x7F).saturating_add(1), dx, dy)).collect(),
    })
}

/// Decodes a JPEG 2000 frame with `hayro-jpeg2000` (pure Rust). The codec applies
/// the multiple-component transform, so YBR_RCT/YBR_ICT come out as RGB.
pub fn j2k(data: &[u8], layout: &Layout) -> PResult<Vec<i64>> {
    let stream = codestream(data)?;
    let siz = siz(stream)?;
    if usize::try_from(siz.width).ok() != Some(layout.columns) || usize::try_from(siz.height).ok() != Some(layout.rows)
    {
        return Err(format!(
            "the JPEG 2000 image is {}×{} but Columns × Rows say {}×{}",
            siz.width, siz.height, layout.columns, layout.rows
        ));
    }
    if siz.components.len() != layout.samples {
        return Err(format!(
            "the JPEG 2000 image has {} components but Samples per Pixel is {}",
            siz.components.len(),
            layout.samples
        ));
    }
    for &(_, precision, dx, dy) in &siz.components {
        if precision > 16 {
            return Err(format!("JPEG 2000 components of {precision} bits are not supported (16 at most)"));
        }
        if dx != 1 || dy != 1 {
            return Err("subsampled JPEG 2000 components are not supported".into());
        }
    }
    let image = hayro_jpeg2000::Image::new(data, &hayro_jpeg2000::DecodeSettings::default())
        .map_err(|e| format!("JPEG 2000 decoding failed: {e:?}"))?;
    if image.width() != siz.width || image.height() != siz.height {
        return Err("the JPEG 2000 decoder read an unexpected size".into());
    }
    let mut context = hayro_jpeg2000::DecoderContext::default();
    let decoded = image.decode(&mut context).map_err(|e| format!("JPEG 2000 decoding failed: {e:?}"))?;
    let components = decoded.components();
    let pixels = layout.pixels();
    if components.len() != layout.samples || components.iter().any(|c| c.samples().len() != pixels) {
        return Err("the JPEG 2000 decoder returned an unexpected number of samples".into());
    }
    let mut out = vec![0i64; layout.sample_count()];
    for (c, (component, &(signed, precision, _, _))) in components.iter().zip(&siz.components).enumerate() {
        // 1 <= precision <= 16 (checked above), so these shifts are in range.
        let top = (1u32 << precision).saturating_sub(1);
        // The decoder adds the unsigned level shift to every component.
        let shift = if signed { 1i64 << precision.saturating_sub(1) } else { 0 };
        let targets = out.iter_mut().skip(c).step_by(layout.samples.max(1));
        for (target, &v) in targets.zip(component.samples()) {
            let unsigned = saturating_u16(f64::from(v).round().clamp(0.0, f64::from(top)));
            // |unsigned - shift| <= 65535: no overflow.
            *target =
                if signed { i64::from(unsigned).saturating_sub(shift) } else { layout.normalize(u32::from(unsigned)) };
        }
    }
    Ok(out)
}
