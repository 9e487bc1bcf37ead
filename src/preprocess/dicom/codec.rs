//! Pixel data of one frame to stored sample values (`i32`, interleaved), for
//! native data and each supported encapsulation. Every decoder's output size is
//! fixed by Rows × Columns × Samples per Pixel, which the caller has checked
//! against the pixel limit; compressed headers are checked against those
//! attributes before any codec runs, so a codec never allocates from numbers
//! the DICOM header did not vouch for.

use std::borrow::Cow;

use super::jpeg12;
use super::parse::{Fragment, PResult};

/// What the attributes say about one frame's samples.
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
    pub fn pixels(&self) -> usize {
        self.rows * self.columns
    }

    pub fn sample_count(&self) -> usize {
        self.pixels() * self.samples
    }

    /// A raw stored value reduced to Bits Stored and sign-extended when signed.
    pub fn normalize(&self, raw: u32) -> i32 {
        let bits = u32::from(self.bits_stored);
        let masked = if bits >= 32 { raw } else { raw & ((1u32 << bits) - 1) };
        if self.signed && bits < 32 && masked & (1u32 << (bits - 1)) != 0 {
            (masked | !((1u32 << bits) - 1)) as i32
        } else {
            masked as i32
        }
    }

    /// Bytes of one native frame.
    pub fn native_frame_bytes(&self) -> usize {
        if self.ybr_422 {
            self.pixels() * 2
        } else {
            self.sample_count() * usize::from(self.bits_allocated / 8)
        }
    }
}

/// One frame of native pixel data.
pub fn native(frame_bytes: &[u8], layout: &Layout, big_endian: bool, swap_ow_bytes: bool) -> PResult<Vec<i32>> {
    let expected = layout.native_frame_bytes();
    if frame_bytes.len() != expected {
        return Err(format!("a frame holds {} bytes of pixel data, {expected} expected", frame_bytes.len()));
    }
    if layout.ybr_422 {
        if !layout.columns.is_multiple_of(2) || layout.bits_allocated != 8 {
            return Err("YBR_FULL_422 pixel data needs an even number of columns and 8 bits allocated".into());
        }
        // Y1 Y2 Cb Cr for each pair of pixels.
        let mut out = Vec::with_capacity(layout.sample_count());
        for quad in frame_bytes.chunks_exact(4) {
            let (cb, cr) = (i32::from(quad[2]), i32::from(quad[3]));
            out.extend_from_slice(&[i32::from(quad[0]), cb, cr, i32::from(quad[1]), cb, cr]);
        }
        return Ok(out);
    }
    let count = layout.sample_count();
    let mut values: Vec<i32> = match layout.bits_allocated {
        8 if swap_ow_bytes => (0..count).map(|i| layout.normalize(u32::from(frame_bytes[i ^ 1]))).collect(),
        8 => frame_bytes.iter().map(|&b| layout.normalize(u32::from(b))).collect(),
        16 => frame_bytes
            .chunks_exact(2)
            .map(|c| {
                let v = if big_endian { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) };
                layout.normalize(u32::from(v))
            })
            .collect(),
        other => return Err(format!("Bits Allocated {other} is not supported (8 or 16)")),
    };
    if layout.planar && layout.samples > 1 {
        values = interleave(&values, layout.pixels(), layout.samples);
    }
    Ok(values)
}

fn interleave(planes: &[i32], pixels: usize, samples: usize) -> Vec<i32> {
    let mut out = vec![0i32; planes.len()];
    for s in 0..samples {
        for p in 0..pixels {
            out[p * samples + s] = planes[s * pixels + p];
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
        if parts.len() == 1 {
            Cow::Borrowed(parts[0].bytes)
        } else {
            Cow::Owned(parts.iter().flat_map(|f| f.bytes.iter().copied()).collect())
        }
    };
    if fragments.len() == frames {
        return Ok(Cow::Borrowed(fragments[frame].bytes));
    }
    if frames == 1 {
        return Ok(concat(fragments));
    }
    if fragments.len() < frames {
        return Err(format!("the Pixel Data has {} fragments for {frames} frames", fragments.len()));
    }
    if offset_table.len() == frames * 4 {
        let offsets: Vec<usize> = offset_table
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if offsets.windows(2).all(|w| w[0] < w[1]) {
            let start = offsets[frame];
            let end = offsets.get(frame + 1).copied().unwrap_or(usize::MAX);
            let first = fragments.iter().position(|f| f.offset == start);
            if let Some(first) = first {
                let count = fragments[first..].iter().take_while(|f| f.offset < end).count();
                return Ok(concat(&fragments[first..first + count]));
            }
        }
        return Err("the Basic Offset Table does not match the Pixel Data fragments".into());
    }
    let starts: Vec<usize> = (0..fragments.len()).filter(|&i| starts_frame(fragments[i].bytes)).collect();
    if starts.len() == frames && starts[0] == 0 {
        let end = starts.get(frame + 1).copied().unwrap_or(fragments.len());
        return Ok(concat(&fragments[starts[frame]..end]));
    }
    Err(format!("cannot tell which of the {} Pixel Data fragments belong to frame {frame}", fragments.len()))
}

// ---------------------------------------------------------------- RLE Lossless

pub fn rle_starts_frame(_: &[u8]) -> bool {
    true
}

/// DICOM RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, one
/// PackBits segment per byte of each sample, most significant byte first.
pub fn rle(fragment: &[u8], layout: &Layout) -> PResult<Vec<i32>> {
    let bytes_per_sample = usize::from(layout.bits_allocated / 8);
    if !matches!(layout.bits_allocated, 8 | 16) {
        return Err(format!("Bits Allocated {} is not supported for RLE (8 or 16)", layout.bits_allocated));
    }
    if fragment.len() < 64 {
        return Err(format!("the RLE frame is {} bytes, shorter than its 64-byte header", fragment.len()));
    }
    let word = |i: usize| u32::from_le_bytes([fragment[i], fragment[i + 1], fragment[i + 2], fragment[i + 3]]) as usize;
    let segments = word(0);
    let expected = layout.samples * bytes_per_sample;
    if segments != expected {
        return Err(format!("the RLE header lists {segments} segments, {expected} expected"));
    }
    let mut offsets: Vec<usize> = (0..segments).map(|i| word(4 + 4 * i)).collect();
    offsets.push(fragment.len());
    if offsets[0] != 64 || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err("the RLE segment offsets are invalid".into());
    }
    let pixels = layout.pixels();
    let mut raw = vec![0u32; layout.sample_count()];
    let mut plane = vec![0u8; pixels];
    for seg in 0..segments {
        let (sample, byte) = (seg / bytes_per_sample, seg % bytes_per_sample);
        packbits(&fragment[offsets[seg]..offsets[seg + 1]], &mut plane)
            .map_err(|e| format!("RLE segment {seg}: {e}"))?;
        let shift = 8 * (bytes_per_sample - 1 - byte);
        for (p, &b) in plane.iter().enumerate() {
            raw[p * layout.samples + sample] |= u32::from(b) << shift;
        }
    }
    Ok(raw.into_iter().map(|v| layout.normalize(v)).collect())
}

/// Decodes one PackBits segment into exactly `out.len()` bytes.
fn packbits(segment: &[u8], out: &mut [u8]) -> PResult<()> {
    let (mut i, mut o) = (0usize, 0usize);
    while o < out.len() {
        let Some(&header) = segment.get(i) else {
            return Err(format!("ends after {o} of {} bytes", out.len()));
        };
        i += 1;
        let n = header as i8;
        if n >= 0 {
            let count = n as usize + 1;
            let src = segment.get(i..i + count).ok_or("a literal run goes past the segment")?;
            let take = count.min(out.len() - o);
            out[o..o + take].copy_from_slice(&src[..take]);
            i += count;
            o += take;
        } else if n != -128 {
            let count = (1 - i32::from(n)) as usize;
            let &value = segment.get(i).ok_or("a replicate run goes past the segment")?;
            i += 1;
            let take = count.min(out.len() - o);
            out[o..o + take].fill(value);
            o += take;
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
    pub adobe: bool,
}

/// Scans the markers of a JPEG stream up to its frame header.
pub fn jpeg_header(data: &[u8]) -> PResult<JpegHeader> {
    if !jpeg_starts_frame(data) {
        return Err("the JPEG data does not start with an SOI marker".into());
    }
    let mut pos = 2;
    let mut adobe = false;
    loop {
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (data.get(pos), data.get(pos + 1)) else {
            return Err("the JPEG data ends (or is corrupt) before its frame header".into());
        };
        pos += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue;
        }
        let len = match data.get(pos..pos + 2) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return Err("the JPEG data ends inside a marker segment".into()),
        };
        let segment = data.get(pos + 2..pos + len).filter(|_| len >= 2).ok_or("a JPEG marker segment is truncated")?;
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if segment.len() < 6 {
                    return Err("the JPEG frame header is truncated".into());
                }
                return Ok(JpegHeader {
                    sof: marker - 0xC0,
                    precision: segment[0],
                    height: u16::from_be_bytes([segment[1], segment[2]]),
                    width: u16::from_be_bytes([segment[3], segment[4]]),
                    components: segment[5],
                    adobe,
                });
            }
            0xEE if segment.starts_with(b"Adobe") => adobe = true,
            0xD9 | 0xDA => return Err("the JPEG data has no frame header before its scan".into()),
            _ => {}
        }
        pos += len;
    }
}

/// Decodes a JPEG frame: 8-bit DCT and lossless (2–16 bits) with `jpeg-decoder`,
/// 12-bit extended DCT with our own decoder. Colour comes out as RGB.
pub fn jpeg(data: &[u8], layout: &Layout, photometric: &str) -> PResult<Vec<i32>> {
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
    if !lossless && header.precision == 12 {
        if header.sof == 2 {
            return Err("12-bit progressive JPEG is not supported".into());
        }
        let samples = jpeg12::decode(data, layout.columns, layout.rows).map_err(|e| format!("12-bit JPEG: {e}"))?;
        if samples.len() != layout.sample_count() {
            return Err("the 12-bit JPEG decoded to an unexpected size".into());
        }
        return Ok(samples.into_iter().map(|v| layout.normalize(u32::from(v))).collect());
    }
    let mut decoder = jpeg_decoder::Decoder::new(data);
    decoder.set_max_decoding_buffer_size(layout.sample_count() * 2 + 1024);
    if layout.samples == 3 {
        // The Photometric Interpretation says whether the encoder converted to
        // YCbCr; an Adobe marker, when present, says so itself.
        use jpeg_decoder::ColorTransform;
        if photometric.starts_with("YBR") {
            decoder.set_color_transform(ColorTransform::YCbCr);
        } else if photometric == "RGB" && !header.adobe {
            decoder.set_color_transform(ColorTransform::RGB);
        }
    }
    let pixels = decoder.decode().map_err(|e| format!("JPEG decoding failed: {e}"))?;
    let info = decoder.info().ok_or("the JPEG decoder returned no image information")?;
    if usize::from(info.width) != layout.columns || usize::from(info.height) != layout.rows {
        return Err("the JPEG decoder returned an unexpected size".into());
    }
    use jpeg_decoder::PixelFormat;
    let (samples, sixteen) = match info.pixel_format {
        PixelFormat::L8 => (1, false),
        PixelFormat::L16 => (1, true),
        PixelFormat::RGB24 => (3, false),
        PixelFormat::CMYK32 => return Err("CMYK JPEG data is not supported".into()),
    };
    if samples != layout.samples || pixels.len() != layout.sample_count() * if sixteen { 2 } else { 1 } {
        return Err("the JPEG decoder returned an unexpected number of samples".into());
    }
    Ok(if sixteen {
        pixels.chunks_exact(2).map(|c| layout.normalize(u32::from(u16::from_ne_bytes([c[0], c[1]])))).collect()
    } else {
        pixels.into_iter().map(|v| layout.normalize(u32::from(v))).collect()
    })
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
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let len32 = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let kind = &data[pos + 4..pos + 8];
        let (header, len) = match len32 {
            0 => (8, data.len() - pos),
            1 => {
                let b = data.get(pos + 8..pos + 16).ok_or("a JP2 box header is truncated")?;
                let l = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                (16, usize::try_from(l).map_err(|_| "a JP2 box is too large")?)
            }
            l => (8, l),
        };
        if len < header || len > data.len() - pos {
            return Err("a JP2 box length is invalid".into());
        }
        if kind == b"jp2c" {
            return Ok(&data[pos + header..pos + len]);
        }
        pos += len;
    }
    Err("the JP2 file has no codestream box".into())
}

fn siz(stream: &[u8]) -> PResult<Siz> {
    if !stream.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Err("the JPEG 2000 data does not start with SOC and SIZ markers".into());
    }
    let s = &stream[4..];
    if s.len() < 38 {
        return Err("the JPEG 2000 SIZ marker is truncated".into());
    }
    let be32 = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (xsiz, ysiz, xosiz, yosiz) = (be32(4), be32(8), be32(12), be32(16));
    let count = usize::from(u16::from_be_bytes([s[36], s[37]]));
    let comps = s.get(38..38 + 3 * count).ok_or("the JPEG 2000 SIZ marker is truncated")?;
    if xosiz >= xsiz || yosiz >= ysiz {
        return Err("the JPEG 2000 image area is empty".into());
    }
    Ok(Siz {
        width: xsiz - xosiz,
        height: ysiz - yosiz,
        components: comps.chunks_exact(3).map(|c| (c[0] & 0x80 != 0, (c[0] & 0x7F) + 1, c[1], c[2])).collect(),
    })
}

/// Decodes a JPEG 2000 frame with `hayro-jpeg2000` (pure Rust). The codec applies
/// the multiple-component transform, so YBR_RCT/YBR_ICT come out as RGB.
pub fn j2k(data: &[u8], layout: &Layout) -> PResult<Vec<i32>> {
    let stream = codestream(data)?;
    let siz = siz(stream)?;
    if siz.width as usize != layout.columns || siz.height as usize != layout.rows {
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
    let mut out = vec![0i32; layout.sample_count()];
    for (c, component) in components.iter().enumerate() {
        let (signed, precision, _, _) = siz.components[c];
        let top = (1i64 << precision) - 1;
        // The decoder adds the unsigned level shift to every component.
        let shift = if signed { 1i64 << (precision - 1) } else { 0 };
        for (p, &v) in component.samples().iter().enumerate() {
            let unsigned = (v.round() as i64).clamp(0, top);
            let value = unsigned - shift;
            out[p * layout.samples + c] = if signed {
                value as i32
            } else {
                layout.normalize(value as u32)
            };
        }
    }
    Ok(out)
}
