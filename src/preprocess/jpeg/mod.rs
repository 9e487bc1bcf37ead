//! A JPEG decoder whose output is byte-identical to Pillow's
//! `Image.open(f).convert("RGB")` (and mode "L" for greyscale), i.e. to
//! libjpeg-turbo with its defaults (the `JDCT_ISLOW` integer IDCT, fancy
//! upsampling, its YCbCr tables), which is how `transformers` and `open_clip`
//! read images. The `image` crate's decoder (zune-jpeg) rounds differently in
//! all three stages (up to 3 levels on 18% of the samples of a 4:2:0 photo).
//!
//! Covered: baseline and extended sequential (SOF0/SOF1) and progressive
//! (SOF2) Huffman coding, 8-bit, 1, 3 or 4 components with any integral
//! sampling factors, restart intervals, libjpeg's colour space rules (JFIF,
//! Adobe APP14 transform flag, component identifiers) and Pillow's CMYK/YCCK
//! handling. Not covered, reported as [`JpegError::Unsupported`] so that the
//! caller can fall back to another decoder: arithmetic coding, 12-bit and
//! lossless JPEG, hierarchical frames, DNL-sized frames, 2-component frames,
//! fractional sampling ratios, and progressive images that leave low
//! frequencies unrefined (libjpeg then applies its block smoothing,
//! jdcoefct.c `decompress_smooth_data`, which is not reproduced here).
//!
//! The pixels come in their stored order; the EXIF data (where the orientation
//! tag lives) is returned beside them, as Pillow gathers it, for
//! `preprocess::decode` to apply `ImageOps.exif_transpose` as transformers does.
//!
//! The input is untrusted: no panics, every length checked, and the sample
//! planes are sized from the header and checked against the pixel limit before
//! anything is allocated.
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

pub mod bits;
pub mod color;
pub mod entropy;
pub mod idct;
pub mod markers;
pub mod scan;
pub mod upsample;

use bits::{BitReader, Huffman};
use entropy::Block;
use markers::{Frame, HuffmanSpec, Process, ScanHeader};
use scan::{BlockSink, Geometry};
use upsample::Plane;

/// Why [`decode`] returned no image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegError {
    /// A valid JPEG this decoder does not handle (see the module docs); the
    /// text names the feature.
    Unsupported(String),
    /// The data is not a decodable JPEG; the text names the problem.
    Invalid(String),
    /// The frame is `width × height`, above the pixel limit.
    TooLarge { width: usize, height: usize },
}

impl std::fmt::Display for JpegError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "{what} is not supported by the Pillow-exact JPEG decoder"),
            Self::Invalid(problem) => f.write_str(problem),
            Self::TooLarge { width, height } => write!(f, "the JPEG frame is {width}×{height} pixels, above the pixel limit"),
        }
    }
}

impl std::error::Error for JpegError {}

impl From<String> for JpegError {
    fn from(e: String) -> Self {
        Self::Invalid(e)
    }
}

impl From<&str> for JpegError {
    fn from(e: &str) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// A decoded image: `channels` is 1 (grey) or 3 (RGB), `data` row-major and
/// interleaved, `width · height · channels` bytes, in the stored order (no EXIF
/// orientation applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
    /// The EXIF data as Pillow's `info["exif"]` holds it, less its `Exif\0\0`
    /// identifier: the first APP1 `Exif` segment before the first scan, later ones
    /// appended (JpegImagePlugin `APP`); empty when there is none. Unchecked bytes
    /// (at most the file's size).
    pub exif: Vec<u8>,
}

/// The colour space of the coded components (libjpeg's `jpeg_color_space`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColorSpace {
    Grey,
    YCbCr,
    Rgb,
    Cmyk,
    Ycck,
}

/// libjpeg-turbo jdapimin.c `default_decompress_parms`: the JFIF marker, then
/// the Adobe transform flag, then the component identifiers decide.
fn color_space(frame: &Frame, jfif: bool, adobe: Option<u8>) -> Result<ColorSpace, JpegError> {
    let ids: Vec<u8> = frame.components.iter().map(|c| c.id).collect();
    Ok(match ids.len() {
        1 => ColorSpace::Grey,
        3 if jfif => ColorSpace::YCbCr,
        3 => match adobe {
            Some(0) => ColorSpace::Rgb,
            Some(_) => ColorSpace::YCbCr,
            None if ids == b"RGB" => ColorSpace::Rgb,
            None => ColorSpace::YCbCr,
        },
        4 => match adobe {
            Some(0) | None => ColorSpace::Cmyk,
            Some(_) => ColorSpace::Ycck,
        },
        n => return Err(JpegError::Unsupported(format!("a JPEG with {n} components"))),
    })
}

/// The standard Huffman tables (T.81 K.3, tables K.3 to K.6) that libjpeg-turbo
/// installs for destinations 0 and 1 when a stream defines none (jstdhuff.c,
/// for Motion-JPEG frames).
fn standard_table(dc: bool, id: usize) -> Option<HuffmanSpec> {
    let (counts, values): ([u8; 16], &[u8]) = match (dc, id) {
        (true, 0) => ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        (true, 1) => ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        (false, 0) => ([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], &AC_LUMINANCE),
        (false, 1) => ([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], &AC_CHROMINANCE),
        _ => return None,
    };
    Some(HuffmanSpec { counts, values: values.to_vec() })
}

#[rustfmt::skip]
const AC_LUMINANCE: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

#[rustfmt::skip]
const AC_CHROMINANCE: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

/// The tables a scan refers to, built once per scan.
struct Tables {
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
}

impl Tables {
    fn build(dc: &[Option<HuffmanSpec>; 4], ac: &[Option<HuffmanSpec>; 4], header: &ScanHeader, uses_dc: bool, uses_ac: bool) -> Result<Self, JpegError> {
        let mut t = Self { dc: [None, None, None, None], ac: [None, None, None, None] };
        for c in &header.components {
            if uses_dc {
                if let Some(slot) = t.dc.get_mut(c.td).filter(|s| s.is_none()) {
                    let spec = dc.get(c.td).cloned().flatten().or_else(|| standard_table(true, c.td));
                    let spec = spec.ok_or_else(|| format!("a JPEG scan uses DC Huffman table {}, which is not defined", c.td))?;
                    *slot = Some(Huffman::new(&spec, true)?);
                }
            }
            if uses_ac {
                if let Some(slot) = t.ac.get_mut(c.ta).filter(|s| s.is_none()) {
                    let spec = ac.get(c.ta).cloned().flatten().or_else(|| standard_table(false, c.ta));
                    let spec = spec.ok_or_else(|| format!("a JPEG scan uses AC Huffman table {}, which is not defined", c.ta))?;
                    *slot = Some(Huffman::new(&spec, false)?);
                }
            }
        }
        Ok(t)
    }
}

/// Block-padded samples (all components together) per pixel of the pixel limit
/// that a frame may need: 4:4:4 CMYK needs 4 plus padding; only degenerate
/// layouts (one pixel wide with large sampling factors) need more, and are
/// refused rather than allocated.
const SAMPLES_PER_PIXEL: usize = 8;

/// Decodes a JPEG file to grey (1 channel) or RGB (3 channels) as Pillow does.
///
/// `max_pixels` bounds `width · height` (checked from the frame header before
/// any allocation). Errors: [`JpegError::Unsupported`] for what the module docs
/// list, [`JpegError::TooLarge`], and [`JpegError::Invalid`] naming the problem
/// (a truncated file, a table a scan uses but nobody defined, …).
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Decoded, JpegError> {
    let mut rest = bytes.strip_prefix(&[0xFF, 0xD8]).ok_or("the data does not start with a JPEG SOI marker")?;
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_specs: [Option<HuffmanSpec>; 4] = [None, None, None, None];
    let mut ac_specs: [Option<HuffmanSpec>; 4] = [None, None, None, None];
    let mut restart_interval = 0usize;
    let (mut jfif, mut adobe) = (false, None);
    let mut exif: Vec<u8> = Vec::new();
    let mut state: Option<State> = None;
    while let Some((marker, after)) = markers::seek_marker(rest) {
        rest = after;
        match marker {
            // Standalone markers: EOI ends the image; RSTn and TEM outside a scan say nothing.
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 => return Err("the JPEG data has a second SOI marker".into()),
            _ => {}
        }
        let (segment, after) = markers::marker_segment(rest)?;
        rest = after;
        match marker {
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if state.is_some() {
                    return Err("the JPEG data has a second frame header".into());
                }
                let frame = Frame::parse(marker, segment)?;
                state = Some(State::new(frame, max_pixels)?);
            }
            0xC4 => markers::read_huffman(segment, &mut dc_specs, &mut ac_specs)?,
            0xDB => markers::read_quantisation(segment, &mut quant)?,
            0xDD => restart_interval = markers::read_restart_interval(segment)?,
            0xE0 if state.as_ref().is_none_or(|s| s.scans == 0) => jfif |= markers::is_jfif(segment),
            0xE1 if state.as_ref().is_none_or(|s| s.scans == 0) => {
                if let Some(payload) = markers::exif_payload(segment) {
                    exif.extend_from_slice(payload);
                }
            }
            0xEE if state.as_ref().is_none_or(|s| s.scans == 0) => {
                if let Some(t) = markers::adobe_transform(segment) {
                    adobe = Some(t);
                }
            }
            0xDA => {
                let st = state.as_mut().ok_or("a JPEG scan comes before the frame header")?;
                let header = ScanHeader::parse(segment, &st.frame)?;
                // The scan's entropy-coded data follows the header.
                rest = st.scan(&header, &quant, &dc_specs, &ac_specs, restart_interval, rest)?;
            }
            // DHP, EXP (hierarchical), DAC (arithmetic), DNL: the frame types
            // that use them are refused at their SOF; others are skipped.
            _ => {}
        }
    }
    let st = state.ok_or("the JPEG data has no frame header")?;
    if st.scans == 0 {
        return Err("the JPEG data has no scan".into());
    }
    let space = color_space(&st.frame, jfif, adobe)?;
    let mut decoded = st.finish(space)?;
    decoded.exif = exif;
    Ok(decoded)
}

/// A frame being decoded.
struct State {
    frame: Frame,
    geometry: Geometry,
    /// Each component's samples (sequential frames, IDCT done per block) …
    planes: Vec<Plane>,
    /// … or coefficients (progressive frames, IDCT at the end), one block per
    /// padded block position.
    coefficients: Vec<Vec<Block>>,
    /// The quantisation table of each component, latched at its first scan
    /// (jddctmgr.c / jdinput.c `latch_quant_tables`).
    quant: Vec<Option<[u16; 64]>>,
    /// Progressive: the successive-approximation bit of each coefficient of
    /// each component (−1: not received), libjpeg's `coef_bits`.
    coef_bits: Vec<[i32; 64]>,
    scans: usize,
}

impl State {
    fn new(frame: Frame, max_pixels: u64) -> Result<Self, JpegError> {
        match frame.process {
            Process::Other(n) => {
                let what = match n {
                    3 => "lossless",
                    5..=7 => "hierarchical",
                    11 => "lossless arithmetic-coded",
                    _ => "arithmetic-coded",
                };
                return Err(JpegError::Unsupported(format!("{what} JPEG (SOF{n})")));
            }
            Process::Sequential | Process::Progressive => {}
        }
        if frame.precision != 8 {
            return Err(JpegError::Unsupported(format!("{}-bit JPEG", frame.precision)));
        }
        if frame.height == 0 {
            return Err(JpegError::Unsupported("a JPEG whose height comes in a DNL marker".into()));
        }
        if frame.width == 0 {
            return Err("the JPEG frame is 0 pixels wide".into());
        }
        if !matches!(frame.components.len(), 1 | 3 | 4) {
            return Err(JpegError::Unsupported(format!("a JPEG with {} components", frame.components.len())));
        }
        let geometry = Geometry::new(&frame);
        let (width, height) = (geometry.width, geometry.height);
        if u64::try_from(width.saturating_mul(height)).unwrap_or(u64::MAX) > max_pixels {
            return Err(JpegError::TooLarge { width, height });
        }
        for c in &geometry.components {
            if geometry.h_max.checked_rem(c.h) != Some(0) || geometry.v_max.checked_rem(c.v) != Some(0) {
                return Err(JpegError::Unsupported(format!(
                    "JPEG sampling factors {}×{} in a {}×{} frame (not an integral ratio)",
                    c.h, c.v, geometry.h_max, geometry.v_max
                )));
            }
        }
        let progressive = frame.process == Process::Progressive;
        let samples: usize = geometry
            .components
            .iter()
            .map(|c| c.padded_wide.saturating_mul(c.padded_high).saturating_mul(64))
            .fold(0, usize::saturating_add);
        let budget = usize::try_from(max_pixels).unwrap_or(usize::MAX).saturating_mul(SAMPLES_PER_PIXEL).saturating_add(1 << 20);
        if samples > budget {
            return Err(format!(
                "the JPEG frame's block layout ({width}×{height} pixels, sampling factors up to {}×{}) needs {samples} samples, \
                 above the {SAMPLES_PER_PIXEL} per pixel of the pixel limit",
                geometry.h_max, geometry.v_max
            )
            .into());
        }
        let (mut planes, mut coefficients) = (Vec::new(), Vec::new());
        for c in &geometry.components {
            let stride = c.padded_wide.saturating_mul(8);
            let rows = c.padded_high.saturating_mul(8);
            if progressive {
                coefficients.push(vec![[0i16; 64]; c.padded_wide.saturating_mul(c.padded_high)]);
            } else {
                // A component no scan codes decodes as zero coefficients: 128.
                planes.push(Plane { data: vec![128u8; stride.saturating_mul(rows)], stride, width: c.width, height: c.height });
            }
        }
        let n = frame.components.len();
        Ok(Self { frame, geometry, planes, coefficients, quant: vec![None; n], coef_bits: vec![[-1; 64]; n], scans: 0 })
    }

    /// Decodes one scan from `data` (what follows its header); returns the bytes
    /// after its entropy-coded data.
    fn scan<'a>(
        &mut self,
        header: &ScanHeader,
        quant: &[Option<[u16; 64]>; 4],
        dc_specs: &[Option<HuffmanSpec>; 4],
        ac_specs: &[Option<HuffmanSpec>; 4],
        restart_interval: usize,
        data: &'a [u8],
    ) -> Result<&'a [u8], JpegError> {
        let progressive = self.frame.process == Process::Progressive;
        let (ss, se, ah, al) = (header.ss, header.se, header.ah, header.al);
        if progressive {
            // jdphuff.c `start_pass_phuff_decoder`: JERR_BAD_PROGRESSION.
            let dc_band = ss == 0;
            let bad = if dc_band { se != 0 } else { ss > se || se > 63 || header.components.len() != 1 };
            if bad || (ah != 0 && al != ah.wrapping_sub(1)) || al > 13 {
                return Err(format!("a progressive JPEG scan has invalid parameters (Ss={ss}, Se={se}, Ah={ah}, Al={al})").into());
            }
        }
        for c in &header.components {
            let latched = self.quant.get_mut(c.index).ok_or("a JPEG scan names a missing component")?;
            if latched.is_none() {
                let tq = self.frame.components.get(c.index).map_or(0, |fc| fc.tq);
                let table = quant.get(tq).copied().flatten().ok_or_else(|| format!("a JPEG component uses quantisation table {tq}, which is not defined"))?;
                *latched = Some(table);
            }
            if progressive {
                if let Some(bits) = self.coef_bits.get_mut(c.index) {
                    for k in usize::from(ss)..=usize::from(se.min(63)) {
                        if let Some(b) = bits.get_mut(k) {
                            *b = i32::from(al);
                        }
                    }
                }
            }
        }
        let uses_dc = !progressive || (ss == 0 && ah == 0);
        let uses_ac = !progressive || ss > 0;
        let tables = Tables::build(dc_specs, ac_specs, header, uses_dc, uses_ac)?;
        let order: Vec<usize> = header.components.iter().map(|c| c.index).collect();
        let mut bits = BitReader::new(data);
        let n = self.frame.components.len();
        let mut sink = Sink {
            state: self,
            tables: &tables,
            header,
            preds: vec![0; n],
            eobrun: 0,
            mode: if !progressive {
                Mode::Sequential
            } else if ss == 0 {
                if ah == 0 { Mode::DcFirst } else { Mode::DcRefine }
            } else if ah == 0 {
                Mode::AcFirst
            } else {
                Mode::AcRefine
            },
        };
        let geometry = sink.state.geometry.clone();
        scan::run_scan(&geometry, &order, restart_interval, &mut bits, &mut sink)?;
        self.scans = self.scans.saturating_add(1);
        Ok(bits.rest())
    }

    /// Inverse DCT (progressive), upsampling and colour conversion.
    fn finish(mut self, space: ColorSpace) -> Result<Decoded, JpegError> {
        if self.frame.process == Process::Progressive {
            self.smoothing_check()?;
            let coefficients = std::mem::take(&mut self.coefficients);
            for ((blocks, c), q) in coefficients.iter().zip(&self.geometry.components).zip(&self.quant) {
                let stride = c.padded_wide.saturating_mul(8);
                let rows = c.padded_high.saturating_mul(8);
                let mut plane = Plane { data: vec![0u8; stride.saturating_mul(rows)], stride, width: c.width, height: c.height };
                // A component no scan coded has no latched table: zeros, as libjpeg's
                // zeroed multiplier table gives.
                let q = q.unwrap_or([0; 64]);
                for (i, block) in blocks.iter().enumerate() {
                    let (by, bx) = (i.checked_div(c.padded_wide).unwrap_or(0), i.checked_rem(c.padded_wide).unwrap_or(0));
                    let start = by.saturating_mul(8).saturating_mul(stride).saturating_add(bx.saturating_mul(8));
                    if let Some(out) = plane.data.get_mut(start..) {
                        idct::idct_islow(block, &q, out, stride);
                    }
                }
                self.planes.push(plane);
            }
        }
        let (width, height) = (self.geometry.width, self.geometry.height);
        let n = width.saturating_mul(height);
        let full: Vec<Vec<u8>> = self
            .planes
            .iter()
            .zip(&self.geometry.components)
            .map(|(p, c)| {
                let (hr, vr) = (self.geometry.h_max.checked_div(c.h).unwrap_or(1), self.geometry.v_max.checked_div(c.v).unwrap_or(1));
                upsample::upsample(p, hr, vr, width, height)
            })
            .collect();
        let channels = if space == ColorSpace::Grey { 1 } else { 3 };
        let mut data = vec![0u8; n.saturating_mul(channels)];
        let tables = color::YccTables::new();
        match (space, full.as_slice()) {
            (ColorSpace::Grey, [g]) => data.copy_from_slice(g),
            (ColorSpace::YCbCr, [y, cb, cr]) => color::ycc_to_rgb(&tables, y, cb, cr, &mut data),
            (ColorSpace::Rgb, [r, g, b]) => color::interleave(r, g, b, &mut data),
            (ColorSpace::Cmyk, [c, m, y, k]) => color::cmyk_to_rgb(c, m, y, k, &mut data),
            (ColorSpace::Ycck, [y, cb, cr, k]) => color::ycck_to_rgb(&tables, y, cb, cr, k, &mut data),
            _ => return Err("the JPEG colour space does not match its component count".into()),
        }
        Ok(Decoded { width, height, channels, data, exif: Vec::new() })
    }

    /// libjpeg-turbo smooths the blocks of a progressive image whose low
    /// frequencies are not fully refined (jdcoefct.c `smoothing_ok`: every
    /// component's DC received and its first ten quantisers non-zero, and some
    /// of coefficients 1–9 still approximate); that is not reproduced.
    fn smoothing_check(&self) -> Result<(), JpegError> {
        // Natural-order positions of zig-zag coefficients 0–9 (Q00 … Q30).
        const FIRST_TEN: [usize; 10] = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24];
        let mut useful = false;
        for (bits, q) in self.coef_bits.iter().zip(&self.quant) {
            let Some(q) = q else { return Ok(()) };
            if FIRST_TEN.iter().any(|&i| q.get(i) == Some(&0)) || bits[0] < 0 {
                return Ok(());
            }
            useful |= bits.iter().skip(1).take(9).any(|&b| b != 0);
        }
        if useful {
            return Err(JpegError::Unsupported(
                "a progressive JPEG whose scans leave low frequencies unrefined (libjpeg's block smoothing)".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

/// Decodes each block of a scan into the frame state.
struct Sink<'s, 't> {
    state: &'s mut State,
    tables: &'t Tables,
    header: &'t ScanHeader,
    preds: Vec<i32>,
    eobrun: u32,
    mode: Mode,
}

impl BlockSink for Sink<'_, '_> {
    fn block(&mut self, bits: &mut BitReader<'_>, component: usize, bx: usize, by: usize) {
        let Some(sc) = self.header.components.iter().find(|c| c.index == component) else { return };
        let dc = self.tables.dc.get(sc.td).and_then(Option::as_ref);
        let ac = self.tables.ac.get(sc.ta).and_then(Option::as_ref);
        let Some(pred) = self.preds.get_mut(component) else { return };
        let Some(g) = self.state.geometry.components.get(component) else { return };
        let band = (self.header.ss, self.header.se, self.header.al);
        if self.mode == Mode::Sequential {
            let (Some(dc), Some(ac)) = (dc, ac) else { return };
            let mut block = [0i16; 64];
            entropy::sequential(bits, dc, ac, pred, &mut block);
            let q = self.state.quant.get(component).copied().flatten().unwrap_or([0; 64]);
            if let Some(plane) = self.state.planes.get_mut(component) {
                let stride = plane.stride;
                let start = by.saturating_mul(8).saturating_mul(stride).saturating_add(bx.saturating_mul(8));
                if let Some(out) = plane.data.get_mut(start..) {
                    idct::idct_islow(&block, &q, out, stride);
                }
            }
            return;
        }
        let index = by.saturating_mul(g.padded_wide).saturating_add(bx);
        let Some(block) = self.state.coefficients.get_mut(component).and_then(|b| b.get_mut(index)) else { return };
        match (self.mode, dc, ac) {
            (Mode::DcFirst, Some(dc), _) => entropy::dc_first(bits, dc, pred, block, band.2),
            (Mode::DcRefine, _, _) => entropy::dc_refine(bits, block, band.2),
            (Mode::AcFirst, _, Some(ac)) => entropy::ac_first(bits, ac, block, band, &mut self.eobrun),
            (Mode::AcRefine, _, Some(ac)) => entropy::ac_refine(bits, ac, block, band, &mut self.eobrun),
            _ => {}
        }
    }

    fn restart(&mut self) {
        self.preds.fill(0);
        self.eobrun = 0;
    }
}
