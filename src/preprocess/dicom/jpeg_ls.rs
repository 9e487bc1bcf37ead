//! A JPEG-LS decoder (ITU-T T.87 | ISO/IEC 14495-1), pure Rust so that it runs
//! in wasm: lossless and near-lossless (NEAR > 0), 2 to 16 bits, 1 to 4
//! components in one scan per component or interleaved by line or by sample,
//! LSE preset coding parameters (MAXVAL, T1, T2, T3, RESET; the defaults of
//! T.87 C.2.4.1.1 otherwise), LSE oversize dimensions, restart intervals (DRI,
//! RSTn), and the HP colour transforms (APP8 "mrfx", as CharLS writes them).
//! DICOM transfer syntaxes 1.2.840.10008.1.2.4.80 and .81 (PS3.5 A.4.3).
//!
//! Not supported, with an error naming it: mapping tables (LSE ids 2 and 3,
//! used through a scan's table selector), point transforms, subsampled
//! components, a height defined by DNL.
//!
//! Bounded: the output (width × height × components samples) is checked
//! against the caller's limit before it is allocated, every loop advances
//! through the input or the image, and no input can panic (the lints below).
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

mod bits;
mod params;
mod scan;

use super::codec::{marker_segment, next_marker};
use bits::BitReader;
use params::{Params, Preset};
use scan::Scan;

type JResult<T> = std::result::Result<T, String>;

/// A decoded JPEG-LS image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    /// Components (1 to 4).
    pub components: usize,
    /// Sample precision P of the frame header, 2 to 16 bits.
    pub precision: u8,
    /// `height × width × components` samples, row by row, the components of a
    /// pixel together (whatever the interleave mode of the scans), each in
    /// 0..2^precision, after the inverse colour transform if the stream has one.
    pub samples: Vec<u16>,
}

/// What the frame header (SOF55) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub width: usize,
    pub height: usize,
    pub components: usize,
    pub precision: u8,
}

struct Frame {
    header: FrameHeader,
    /// Component identifiers Ci, in frame order.
    ids: Vec<u8>,
}

/// Whether bytes start like a JPEG-LS (or any JPEG) codestream: SOI.
pub fn starts_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

fn frame_header(segment: &[u8]) -> JResult<Frame> {
    let &[precision, h0, h1, w0, w1, count, ref specs @ ..] = segment else {
        return Err("the JPEG-LS frame header (SOF55) is truncated".into());
    };
    if !(2..=16).contains(&precision) {
        return Err(format!("JPEG-LS sample precision {precision} is not supported (2 to 16 bits)"));
    }
    if !(1..=4).contains(&count) {
        return Err(format!("JPEG-LS frames of {count} components are not supported (1 to 4)"));
    }
    let (specs, _) = specs.as_chunks::<3>();
    let specs = specs.get(..usize::from(count)).ok_or("the JPEG-LS frame header (SOF55) is truncated")?;
    let mut ids = Vec::with_capacity(specs.len());
    for &[id, sampling, _] in specs {
        if sampling != 0x11 {
            return Err("subsampled JPEG-LS components are not supported".into());
        }
        if ids.contains(&id) {
            return Err(format!("the JPEG-LS frame header lists component {id} twice"));
        }
        ids.push(id);
    }
    Ok(Frame {
        header: FrameHeader {
            width: usize::from(u16::from_be_bytes([w0, w1])),
            height: usize::from(u16::from_be_bytes([h0, h1])),
            components: usize::from(count),
            precision,
        },
        ids,
    })
}

/// The frame header of a JPEG-LS codestream (and LSE oversize dimensions
/// before it), read without decoding: for checking it against the DICOM
/// attributes before any allocation.
pub fn header(data: &[u8]) -> JResult<FrameHeader> {
    let mut rest = data.strip_prefix(&[0xFF, 0xD8]).ok_or("the JPEG-LS data does not start with an SOI marker")?;
    let mut oversize: Option<(usize, usize)> = None;
    loop {
        let (marker, after) =
            next_marker(rest).ok_or("the JPEG-LS data ends (or is corrupt) before its frame header")?;
        let (segment, after) = segment_of(marker, after)?;
        match marker {
            0xF7 => {
                let mut frame = frame_header(segment)?;
                apply_oversize(&mut frame.header, oversize)?;
                return Ok(frame.header);
            }
            0xF8 => {
                if let Some(dims) = lse_oversize(segment)? {
                    oversize = Some(dims);
                }
            }
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return Err(not_jpeg_ls(marker)),
            0xD9 | 0xDA => return Err("the JPEG-LS data has no frame header (SOF55) before its scan".into()),
            _ => {}
        }
        rest = after;
    }
}

fn not_jpeg_ls(marker: u8) -> String {
    format!("the codestream is not JPEG-LS: it has a JPEG SOF{} frame header, not SOF55", marker & 0x0F)
}

/// The segment of a marker (empty for markers without one) and what follows.
fn segment_of(marker: u8, after: &[u8]) -> JResult<(&[u8], &[u8])> {
    match marker {
        0xD0..=0xD9 | 0x01 => Ok((&[], after)),
        _ => marker_segment(after).map_err(|e| e.replace("JPEG", "JPEG-LS")),
    }
}

/// LSE id 4 (T.87 C.2.4.1.4): Wxy bytes of height then width, for images
/// beyond 65535; `None` for other LSE ids.
fn lse_oversize(segment: &[u8]) -> JResult<Option<(usize, usize)>> {
    let Some((&4, rest)) = segment.split_first() else {
        return Ok(None);
    };
    let Some((&wxy, dims)) = rest.split_first() else {
        return Err("the JPEG-LS oversize dimensions (LSE 4) are truncated".into());
    };
    if !(2..=4).contains(&wxy) {
        return Err(format!("the JPEG-LS oversize dimensions use {wxy} bytes per value (2 to 4)"));
    }
    let n = usize::from(wxy);
    let value = |bytes: &[u8]| bytes.iter().fold(0usize, |v, &b| (v << 8) | usize::from(b));
    let height = dims.get(..n).map(value);
    let width = dims.get(n..n.saturating_mul(2)).map(value);
    match (height, width) {
        (Some(h), Some(w)) => Ok(Some((h, w))),
        _ => Err("the JPEG-LS oversize dimensions (LSE 4) are truncated".into()),
    }
}

fn apply_oversize(header: &mut FrameHeader, oversize: Option<(usize, usize)>) -> JResult<()> {
    if let Some((h, w)) = oversize {
        if header.height == 0 {
            header.height = h;
        }
        if header.width == 0 {
            header.width = w;
        }
    }
    if header.height == 0 {
        return Err("a JPEG-LS image whose height is defined later (DNL) is not supported".into());
    }
    if header.width == 0 {
        return Err("the JPEG-LS frame has no columns".into());
    }
    Ok(())
}

/// An LSE preset coding parameters segment (id 1, T.87 C.2.4.1.1).
fn lse_preset(segment: &[u8]) -> JResult<Option<Preset>> {
    match segment {
        [1, m0, m1, a0, a1, b0, b1, c0, c1, r0, r1, ..] => Ok(Some(Preset {
            maxval: u16::from_be_bytes([*m0, *m1]),
            t1: u16::from_be_bytes([*a0, *a1]),
            t2: u16::from_be_bytes([*b0, *b1]),
            t3: u16::from_be_bytes([*c0, *c1]),
            reset: u16::from_be_bytes([*r0, *r1]),
        })),
        [1, ..] => Err("the JPEG-LS preset coding parameters (LSE 1) are truncated".into()),
        [2 | 3, ..] | [4, ..] => Ok(None),
        [id, ..] => Err(format!("the JPEG-LS LSE segment has an unknown id {id}")),
        [] => Err("the JPEG-LS LSE segment is empty".into()),
    }
}

/// The HP colour transform of an APP8 "mrfx" segment (CharLS's extension),
/// 0 when the segment is another one.
fn colour_transform(segment: &[u8]) -> JResult<Option<u8>> {
    match segment {
        [b'm', b'r', b'f', b'x', id, ..] if *id <= 3 => Ok(Some(*id)),
        [b'm', b'r', b'f', b'x', id, ..] => Err(format!("unknown JPEG-LS colour transform {id} (APP8 mrfx)")),
        _ => Ok(None),
    }
}

/// Decodes a JPEG-LS codestream of at most `max_samples` samples (width ×
/// height × components, checked from the frame header before anything is
/// allocated). Errors say what is wrong or unsupported.
pub fn decode(data: &[u8], max_samples: usize) -> JResult<Decoded> {
    let mut rest = data.strip_prefix(&[0xFF, 0xD8]).ok_or("the JPEG-LS data does not start with an SOI marker")?;
    let mut preset = Preset::default();
    let mut restart_interval = 0usize;
    let mut transform = 0u8;
    let mut oversize = None;
    let mut frame: Option<Frame> = None;
    let mut samples: Vec<u16> = Vec::new();
    let mut done = [false; 4];
    loop {
        if let Some(f) = &frame {
            if done.iter().take(f.header.components).all(|&d| d) {
                break;
            }
        }
        let Some((marker, after)) = next_marker(rest) else {
            return Err(if rest.is_empty() {
                "the JPEG-LS data ends before all components were decoded".into()
            } else {
                "the JPEG-LS data is corrupt: a marker was expected".into()
            });
        };
        let (segment, after) = segment_of(marker, after)?;
        rest = after;
        match marker {
            0xF7 => {
                if frame.is_some() {
                    return Err("the JPEG-LS data has two frame headers".into());
                }
                let mut f = frame_header(segment)?;
                apply_oversize(&mut f.header, oversize)?;
                let h = f.header;
                let count = h.width.checked_mul(h.height).and_then(|p| p.checked_mul(h.components));
                let count = count.filter(|&c| c <= max_samples).ok_or_else(|| {
                    format!("the JPEG-LS image ({}×{}×{}) is larger than allowed", h.width, h.height, h.components)
                })?;
                samples = vec![0u16; count];
                frame = Some(f);
            }
            0xF8 => {
                if let Some(p) = lse_preset(segment)? {
                    preset = p;
                }
                if let Some(dims) = lse_oversize(segment)? {
                    if frame.is_some() {
                        return Err("the JPEG-LS oversize dimensions (LSE 4) come after the frame header".into());
                    }
                    oversize = Some(dims);
                }
            }
            0xDD => {
                restart_interval = match segment {
                    [a, b] => usize::from(u16::from_be_bytes([*a, *b])),
                    [a, b, c] => usize::try_from(u32::from_be_bytes([0, *a, *b, *c])).unwrap_or(usize::MAX),
                    [a, b, c, d] => usize::try_from(u32::from_be_bytes([*a, *b, *c, *d])).unwrap_or(usize::MAX),
                    _ => return Err("the JPEG-LS restart interval (DRI) has an invalid length".into()),
                };
            }
            0xE8 => {
                if let Some(t) = colour_transform(segment)? {
                    transform = t;
                }
            }
            0xDA => {
                let f = frame.as_ref().ok_or("the JPEG-LS data has a scan before its frame header (SOF55)")?;
                let scan = scan_header(segment, f, &done)?;
                let params = Params::new(f.header.precision, scan.near, &preset)?;
                let consumed = decode_scan(rest, &f.header, &scan, &params, restart_interval, &mut samples)?;
                for &c in &scan.components {
                    if let Some(d) = done.get_mut(c) {
                        *d = true;
                    }
                }
                rest = rest.get(consumed..).unwrap_or_default();
            }
            0xD9 => return Err("the JPEG-LS data ends (EOI) before all components were decoded".into()),
            0xDC => return Err("a JPEG-LS image whose height is defined later (DNL) is not supported".into()),
            0xD0..=0xD7 => return Err("the JPEG-LS data has a restart marker outside a scan".into()),
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return Err(not_jpeg_ls(marker)),
            _ => {}
        }
    }
    let header = frame.map(|f| f.header).ok_or("the JPEG-LS data has no frame header")?;
    if transform != 0 {
        inverse_colour_transform(transform, &header, &mut samples)?;
    }
    Ok(Decoded {
        width: header.width,
        height: header.height,
        components: header.components,
        precision: header.precision,
        samples,
    })
}

struct ScanHeader {
    /// Indices into the frame's components, in scan order.
    components: Vec<usize>,
    near: u8,
    /// 0 (none), 1 (line) or 2 (sample).
    interleave: u8,
}

/// The scan header (SOS, T.87 C.2.3).
fn scan_header(segment: &[u8], frame: &Frame, done: &[bool; 4]) -> JResult<ScanHeader> {
    let truncated = "the JPEG-LS scan header (SOS) is truncated";
    let (&count, rest) = segment.split_first().ok_or(truncated)?;
    let n = usize::from(count);
    if n == 0 || n > frame.ids.len() {
        return Err(format!("the JPEG-LS scan has {count} components, the frame {}", frame.ids.len()));
    }
    let (specs, tail) = rest.as_chunks::<2>();
    let specs = specs.get(..n).ok_or(truncated)?;
    let tail = rest.get(n.saturating_mul(2)..).unwrap_or(tail);
    let &[near, interleave, transform, ..] = tail else {
        return Err(truncated.into());
    };
    let mut components = Vec::with_capacity(n);
    for &[id, table] in specs {
        let index =
            frame.ids.iter().position(|&i| i == id).ok_or_else(|| {
                format!("the JPEG-LS scan names component {id}, which the frame header does not list")
            })?;
        if done.get(index).copied().unwrap_or(true) || components.contains(&index) {
            return Err(format!("JPEG-LS component {id} is coded twice"));
        }
        if table != 0 {
            return Err(format!(
                "the JPEG-LS scan uses mapping table {table} (LSE palette tables, ids 2 and 3), which is not supported"
            ));
        }
        components.push(index);
    }
    if transform & 0x0F != 0 {
        return Err("JPEG-LS point transforms are not supported".into());
    }
    let interleave = if n == 1 { 0 } else { interleave };
    match interleave {
        0 if n > 1 => Err("a JPEG-LS scan of several components has interleave mode 0".into()),
        0..=2 => Ok(ScanHeader { components, near, interleave }),
        other => Err(format!("JPEG-LS interleave mode {other} is invalid (0, 1 or 2)")),
    }
}

/// Decodes one scan into `out` (the frame's interleaved samples). Returns how
/// many bytes of `data` the scan used: the next marker starts there.
fn decode_scan(
    data: &[u8],
    frame: &FrameHeader,
    scan: &ScanHeader,
    params: &Params,
    restart_interval: usize,
    out: &mut [u16],
) -> JResult<usize> {
    let width = frame.width;
    let line_len = width.checked_add(2).ok_or("the JPEG-LS image is too wide")?;
    let n = scan.components.len();
    let mut prev: Vec<Vec<i32>> = vec![vec![0; line_len]; n];
    let mut cur: Vec<Vec<i32>> = vec![vec![0; line_len]; n];
    let mut coder = Scan::new(params);
    let mut offset = 0usize;
    let mut bits = BitReader::new(data);
    let mut restarts = 0u8;
    // A scan of one component is coded plane by plane; several components are
    // interleaved line by line (1) or sample by sample (2).
    for y in 0..frame.height {
        if restart_interval > 0 && y > 0 && y.is_multiple_of(restart_interval) {
            offset = next_marker_at(data, offset.saturating_add(bits.position()), &bits)?;
            let marker = data.get(offset.saturating_add(1)).copied().unwrap_or(0);
            let expected = 0xD0u8.saturating_add(restarts);
            if marker != expected {
                return Err(format!("JPEG-LS restart marker RST{} expected, found marker {marker:02X}", restarts));
            }
            restarts = restarts.saturating_add(1) & 7;
            offset = offset.saturating_add(2);
            bits = BitReader::new(data.get(offset..).unwrap_or_default());
            coder.reset();
            prev.iter_mut().chain(cur.iter_mut()).for_each(|line| line.fill(0));
        }
        if scan.interleave == 2 {
            coder.pixel_line(&mut bits, &mut prev, &mut cur)?;
        } else {
            for (slot, (p, c)) in prev.iter_mut().zip(cur.iter_mut()).enumerate() {
                coder.line(&mut bits, slot, p, c)?;
            }
        }
        for (&component, line) in scan.components.iter().zip(&cur) {
            let start = y.saturating_mul(width).saturating_mul(frame.components).saturating_add(component);
            let targets = out.iter_mut().skip(start).step_by(frame.components.max(1)).take(width);
            for (target, &v) in targets.zip(line.iter().skip(1)) {
                *target = u16::try_from(v).unwrap_or(0);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    if bits.overrun() {
        return Err("the JPEG-LS scan data ends early (truncated or corrupt)".into());
    }
    next_marker_at(data, offset.saturating_add(bits.position()), &bits)
}

/// The offset of the marker that ends the entropy-coded segment read so far:
/// the first 0xFF at or after `from` followed by a byte with its high bit set
/// (a 0xFF of coded data is followed by a stuffed 0 bit).
fn next_marker_at(data: &[u8], from: usize, bits: &BitReader<'_>) -> JResult<usize> {
    if bits.overrun() {
        return Err("the JPEG-LS scan data ends early (truncated or corrupt)".into());
    }
    let tail = data.get(from..).unwrap_or_default();
    tail.windows(2)
        .position(|w| matches!(w, [0xFF, b] if *b >= 0x80))
        .map(|i| from.saturating_add(i))
        .ok_or_else(|| "the JPEG-LS scan data is not followed by a marker (truncated)".to_string())
}

/// The inverse HP colour transforms of CharLS (APP8 "mrfx" 1, 2, 3) on 8- or
/// 16-bit RGB, computed modulo 2^precision as CharLS does.
fn inverse_colour_transform(transform: u8, frame: &FrameHeader, samples: &mut [u16]) -> JResult<()> {
    if frame.components != 3 || !matches!(frame.precision, 8 | 16) {
        return Err(format!(
            "the JPEG-LS colour transform HP{transform} needs 3 components of 8 or 16 bits ({} of {} bits here)",
            frame.components, frame.precision
        ));
    }
    let mask = (1i64 << frame.precision).wrapping_sub(1);
    let half = 1i64 << frame.precision.saturating_sub(1);
    let quarter = half >> 1;
    let (pixels, _) = samples.as_chunks_mut::<3>();
    for pixel in pixels {
        let [v1, v2, v3] = pixel.map(i64::from);
        let (r, g, b) = match transform {
            1 => (v1.wrapping_add(v2).wrapping_sub(half), v2, v3.wrapping_add(v2).wrapping_sub(half)),
            2 => {
                let r = v1.wrapping_add(v2).wrapping_sub(half) & mask;
                let g = v2;
                (r, g, v3.wrapping_add(r.wrapping_add(g) >> 1).wrapping_sub(half))
            }
            _ => {
                let g = v1.wrapping_sub(v3.wrapping_add(v2) >> 2).wrapping_add(quarter) & mask;
                (v3.wrapping_add(g).wrapping_sub(half), g, v2.wrapping_add(g).wrapping_sub(half))
            }
        };
        *pixel = [r, g, b].map(|v| u16::try_from(v & mask).unwrap_or(0));
    }
    Ok(())
}
