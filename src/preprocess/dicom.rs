//! DICOM Part 10 files to the 8-bit RGB image the CLIP preprocessing takes,
//! natively and in wasm (pure Rust throughout).
//!
//! Rendering rules, in order (the same steps as `tests/reference/dicom_reference.py`):
//! 1. the frame: the middle one of a multi-frame image (index `frames / 2`,
//!    counting from 0) unless an index is given;
//! 2. stored values: Bits Stored of Bits Allocated (8 or 16), sign-extended
//!    when Pixel Representation is 1;
//! 3. greyscale (MONOCHROME1/2): the modality LUT `x · slope + intercept`
//!    (Rescale Slope/Intercept, default 1 and 0), then the first VOI window
//!    (Window Center/Width, width ≥ 1) by the linear function of PS3.3
//!    C.11.2.1.2 scaled to 0–255, or without a window the frame's modality
//!    values from their minimum to their maximum mapped linearly to 0–255;
//!    MONOCHROME1 is then inverted; values are rounded half up;
//! 4. colour: RGB as stored; YBR_FULL and YBR_FULL_422 converted to RGB
//!    (PS3.3 C.7.6.3.1.2), lossless JPEG frames included (their components
//!    are stored as they are; for JPEG, component identifiers "RGB" and a JFIF
//!    segment override the Photometric Interpretation, as in pydicom); DCT JPEG
//!    and JPEG 2000 codecs return RGB themselves;
//!    PALETTE COLOR through its red, green and blue lookup tables; samples of
//!    more than 8 bits scaled by `255 / (2^bits - 1)`.
//!
//! Limits: Rows × Columns × Number of Frames × Samples per Pixel is checked
//! against [`DecodeLimits::max_pixels`] from the header, before any pixel memory
//! is allocated; every length in the file is checked against the bytes present.
//!
//! Privacy: only the attributes needed to render are read (see `parse::WANTED`);
//! the only descriptive ones returned are those of [`DicomSummary`].
//!
//! Files: DICOM Part 10 (preamble and "DICM"), a file meta group without the
//! preamble, and data sets without file meta information (ACR-NEMA style, raw
//! exports) that start with a plausible group 0008 element, read in the encoding
//! that element shows, as pydicom's `dcmread(force=True)` and dcmtk read them
//! (see `parse::start`).
//!
//! No input can make this code panic: every index, slice and integer operation
//! is checked (the lints below, and in each submodule, deny the rest).
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

mod codec;
mod jpeg12;
pub mod jpeg_ls;
mod parse;
mod voi;

use serde::Serialize;

use super::pil_resize::Image8;
use super::DecodeLimits;
use crate::error::{Error, Result};
use codec::Layout;
use parse::{DataSet, Encoding, Origin, PResult, PixelData, Start};
pub use voi::{VoiChoice, VoiUsed, Window};

/// What a page may show about a DICOM file: nothing that identifies a patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DicomSummary {
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    /// MONOCHROME1 (white is low), MONOCHROME2, RGB, YBR_FULL, PALETTE COLOR, …
    pub photometric_interpretation: Option<String>,
    /// The transfer syntax UID.
    pub transfer_syntax: String,
    /// What was read other than the file declares (an encoding that contradicts
    /// the transfer syntax, …), one sentence each; empty when nothing was.
    pub warnings: Vec<String>,
    /// The windows the file carries (Window Center / Width, with their
    /// explanations), in order; `VoiChoice::Index` counts in this list.
    pub windows: Vec<Window>,
}

impl DicomSummary {
    /// The transfer syntax's name, or "unknown transfer syntax".
    pub fn transfer_syntax_name(&self) -> &'static str {
        transfer_syntax(&self.transfer_syntax).map_or("unknown transfer syntax", |t| t.name)
    }
}

/// A rendered frame with the file's summary.
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub image: Image8,
    pub summary: DicomSummary,
    /// The frame that was rendered (0-based).
    pub frame: u32,
    /// The VOI transformation used (greyscale only; `None` for colour).
    pub voi: Option<VoiUsed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Native(Encoding),
    Deflated,
    Rle,
    Jpeg,
    Jpeg2000,
    JpegLs,
    /// Readable data set, pixel data we cannot decode.
    Unsupported,
}

struct TransferSyntax {
    uid: &'static str,
    name: &'static str,
    codec: Codec,
}

const fn ts(uid: &'static str, name: &'static str, codec: Codec) -> TransferSyntax {
    TransferSyntax { uid, name, codec }
}

const TRANSFER_SYNTAXES: &[TransferSyntax] = &[
    ts("1.2.840.10008.1.2", "Implicit VR Little Endian", Codec::Native(Encoding::ImplicitLittle)),
    ts("1.2.840.10008.1.2.1", "Explicit VR Little Endian", Codec::Native(Encoding::ExplicitLittle)),
    ts("1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", Codec::Deflated),
    ts("1.2.840.10008.1.2.2", "Explicit VR Big Endian", Codec::Native(Encoding::ExplicitBig)),
    ts("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", Codec::Jpeg),
    ts("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", Codec::Jpeg),
    ts("1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", Codec::Jpeg),
    ts(
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
        Codec::Jpeg,
    ),
    ts("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression", Codec::JpegLs),
    ts("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression", Codec::JpegLs),
    ts("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", Codec::Jpeg2000),
    ts("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", Codec::Jpeg2000),
    ts(
        "1.2.840.10008.1.2.4.92",
        "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)",
        Codec::Unsupported,
    ),
    ts("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.94", "JPIP Referenced", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.110", "JPEG XL Lossless", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.112", "JPEG XL", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)", Codec::Unsupported),
    ts(
        "1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)",
        Codec::Unsupported,
    ),
    ts("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced", Codec::Unsupported),
    ts("1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", Codec::Unsupported),
    ts("1.2.840.10008.1.2.5", "RLE Lossless", Codec::Rle),
    ts("1.2.840.10008.1.2.8.1", "SMPTE ST 2110-20 Uncompressed Progressive Active Video", Codec::Unsupported),
    ts("1.2.840.10008.1.2.8.2", "SMPTE ST 2110-20 Uncompressed Interlaced Active Video", Codec::Unsupported),
];

fn transfer_syntax(uid: &str) -> Option<&'static TransferSyntax> {
    TRANSFER_SYNTAXES.iter().find(|t| t.uid == uid)
}

/// The transfer syntax UIDs whose pixel data this build decodes.
pub fn supported_transfer_syntaxes() -> Vec<(&'static str, &'static str)> {
    TRANSFER_SYNTAXES.iter().filter(|t| t.codec != Codec::Unsupported).map(|t| (t.uid, t.name)).collect()
}

fn describe_ts(uid: &str) -> String {
    match transfer_syntax(uid) {
        Some(t) => format!("{uid} ({})", t.name),
        None => format!("{uid} (unknown transfer syntax)"),
    }
}

/// Whether bytes named `name` are to be read as DICOM: a `.dcm` name, the
/// "DICM" marker after the 128-byte preamble, or bytes that start with a file
/// meta element or a plausible group 0008 data set element (files without the
/// preamble: see `parse::start`).
pub fn is_dicom(bytes: &[u8], name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".dcm") || parse::start(bytes).is_some()
}

/// The file's summary (modality, body part, size, transfer syntax).
pub fn summary(bytes: &[u8], name: &str, limits: DecodeLimits) -> Result<DicomSummary> {
    let file = File::open(bytes, limits).map_err(|e| Error::image(name, e))?;
    file.summary().map_err(|e| Error::image(name, file.explain(e)))
}

/// Renders frame `frame` (0-based; the middle frame when `None`) to 8-bit RGB
/// by the README's rule.
pub fn decode(bytes: &[u8], name: &str, limits: DecodeLimits, frame: Option<u32>) -> Result<DicomImage> {
    decode_with(bytes, name, limits, frame, VoiChoice::Default)
}

/// [`decode`] with the VOI transformation `voi` for greyscale images (colour
/// images ignore it). Errors: those of `decode`, and a `VoiChoice::Index` beyond
/// the file's windows.
pub fn decode_with(
    bytes: &[u8],
    name: &str,
    limits: DecodeLimits,
    frame: Option<u32>,
    voi: VoiChoice,
) -> Result<DicomImage> {
    decode_inner(bytes, limits, frame, voi).map_err(|e| Error::image(name, e))
}

fn decode_inner(bytes: &[u8], limits: DecodeLimits, frame: Option<u32>, voi: VoiChoice) -> PResult<DicomImage> {
    let file = File::open(bytes, limits)?;
    decode_file(&file, limits, frame, voi).map_err(|e| file.explain(e))
}

fn decode_file(file: &File<'_>, limits: DecodeLimits, frame: Option<u32>, voi: VoiChoice) -> PResult<DicomImage> {
    let summary = file.summary()?;
    let index = match frame {
        Some(f) if f >= summary.frames => {
            return Err(format!("frame {f} does not exist: the image has {} frame(s), numbered from 0", summary.frames))
        }
        Some(f) => f,
        None => summary.frames / 2,
    };
    let (image, voi) = file.render(index, limits, voi)?;
    Ok(DicomImage { image, summary, frame: index, voi })
}

/// An opened file: the data set borrowed from the input or its inflated copy.
struct File<'a> {
    ts: String,
    codec: Codec,
    start: Start,
    dataset: DataSetStore<'a>,
    warnings: Vec<String>,
}

enum DataSetStore<'a> {
    /// The data set's bytes, their encoding, and the file offset they start at.
    Borrowed(&'a [u8], Encoding, usize),
    /// An inflated data set and its encoding.
    Inflated(Vec<u8>, Encoding),
}

impl<'a> File<'a> {
    fn open(bytes: &'a [u8], limits: DecodeLimits) -> PResult<Self> {
        if bytes.is_empty() {
            return Err("the file is empty".into());
        }
        let meta = parse::parse_meta(bytes)?;
        let start = meta.dataset_start;
        let rest = bytes.get(start..).ok_or("the file ends inside its file meta information")?;
        let codec = transfer_syntax(&meta.transfer_syntax).map_or(Codec::Unsupported, |t| t.codec);
        let mut warnings = Vec::new();
        // The encoding the data set is really in: a data set without file meta
        // information was read in the one it shows already.
        let mut actual = |data: &[u8], declared: Encoding| {
            if matches!(meta.start, Start::DataSet(_)) {
                return declared;
            }
            let (encoding, warning) = parse::actual_encoding(data, declared, &describe_ts(&meta.transfer_syntax));
            warnings.extend(warning);
            encoding
        };
        let dataset = match codec {
            Codec::Native(encoding) => DataSetStore::Borrowed(rest, actual(rest, encoding), start),
            Codec::Deflated => {
                // Bounded: the inflated data set may hold the pixel limit in 16-bit
                // samples plus headers, no more.
                let cap =
                    usize::try_from(limits.max_pixels.saturating_mul(2).saturating_add(64 << 20)).unwrap_or(usize::MAX);
                let inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(rest, cap).map_err(|e| {
                    if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
                        format!("the deflated data set expands beyond {} MB", cap >> 20)
                    } else {
                        format!("the deflated data set is corrupt ({:?})", e.status)
                    }
                })?;
                let encoding = actual(&inflated, Encoding::ExplicitLittle);
                DataSetStore::Inflated(inflated, encoding)
            }
            // Encapsulated transfer syntaxes (and unknown ones, whose data set
            // is explicit VR little endian by rule) keep the data set readable.
            _ => DataSetStore::Borrowed(rest, actual(rest, Encoding::ExplicitLittle), start),
        };
        Ok(Self { ts: meta.transfer_syntax, codec, start: meta.start, dataset, warnings })
    }

    fn dataset(&self) -> PResult<DataSet<'_>> {
        let parsed = match &self.dataset {
            DataSetStore::Borrowed(bytes, encoding, start) => {
                parse::parse_dataset(bytes, *encoding, Origin::File(*start))
            }
            DataSetStore::Inflated(bytes, encoding) => parse::parse_dataset(bytes, *encoding, Origin::Inflated),
        };
        parsed.map_err(|e| {
            if transfer_syntax(&self.ts).is_none() {
                format!("{e} (transfer syntax {})", describe_ts(&self.ts))
            } else {
                e
            }
        })
    }

    /// An error about this file, with how a file without file meta
    /// information was read (its encoding is a guess from its first element).
    fn explain(&self, e: String) -> String {
        match self.start {
            Start::DataSet(encoding) => {
                format!("{e} (read as a data set without file meta information, in {})", encoding.name())
            }
            _ => e,
        }
    }

    fn summary(&self) -> PResult<DicomSummary> {
        let ds = self.dataset()?;
        let (rows, columns) = dimensions(&ds)?;
        Ok(DicomSummary {
            modality: ds.string(parse::MODALITY).map(code_string),
            body_part: ds.string(parse::BODY_PART).map(code_string),
            rows: u32::from(rows),
            columns: u32::from(columns),
            frames: frames(&ds)?,
            photometric_interpretation: ds.string(parse::PHOTOMETRIC).map(code_string),
            transfer_syntax: self.ts.clone(),
            warnings: self.warnings.clone(),
            // A malformed window is reported when the image is rendered.
            windows: voi::file_windows(&ds).unwrap_or_default(),
        })
    }

    fn render(&self, frame: u32, limits: DecodeLimits, voi: VoiChoice) -> PResult<(Image8, Option<VoiUsed>)> {
        let ds = self.dataset()?;
        let (rows, columns) = dimensions(&ds)?;
        let frames = frames(&ds)?;
        let samples = ds.u16(parse::SAMPLES_PER_PIXEL)?.unwrap_or(1);
        // Up to 2^80: a product beyond u64 is beyond any limit too.
        let total = [columns, samples]
            .into_iter()
            .map(u64::from)
            .chain([u64::from(frames)])
            .try_fold(u64::from(rows), u64::checked_mul);
        if total.is_none_or(|total| total > limits.max_pixels) {
            return Err(format!(
                "the image is {columns}×{rows} pixels × {frames} frame(s) × {samples} sample(s) = {:.1} million \
                 samples, above the limit of {:.1} megapixels (raise it with --max-megapixels)",
                f64::from(rows) * f64::from(columns) * f64::from(frames) * f64::from(samples) / 1e6,
                limits.max_pixels as f64 / 1e6
            ));
        }
        if let Some(float) = float_pixel_data(&ds) {
            let (grey, used) = self.render_float(&ds, float, (rows, columns, frames, samples), frame, voi)?;
            let image = Image8 {
                width: usize::from(columns),
                height: usize::from(rows),
                channels: 3,
                data: grey.into_iter().flat_map(|v| [v; 3]).collect(),
            };
            return Ok((image, Some(used)));
        }
        if self.codec == Codec::Unsupported {
            return Err(format!("the transfer syntax {} is not supported", describe_ts(&self.ts)));
        }
        let photometric = ds.string(parse::PHOTOMETRIC).ok_or("Photometric Interpretation (0028,0004) is missing")?;
        let layout = layout(&ds, rows, columns, samples, &photometric, self.codec)?;
        let pixel_data = ds.pixel_data.as_ref().ok_or("the file has no Pixel Data (7FE0,0010)")?;
        let too_many = |_| format!("{frames} frames are too many for this platform");
        let (frames_us, frame_us) =
            (usize::try_from(frames).map_err(too_many)?, usize::try_from(frame).map_err(too_many)?);
        // Whether the samples are YCbCr still, to be converted to RGB: native and
        // RLE YBR_FULL(_422) data, and JPEG frames that the JPEG decoder did not
        // convert (`codec::jpeg` says which).
        let mut ybr = photometric.starts_with("YBR_FULL");
        let values = match (self.codec, pixel_data) {
            (Codec::Native(_) | Codec::Deflated, PixelData::Native { vr, bytes, at }) => {
                let big = ds.encoding.big_endian();
                // 8-bit samples in OW words under big endian: the whole value is
                // un-swapped first, then cut into frames.
                let unswapped;
                let value: &[u8] = if big && vr == b"OW" && layout.bits_allocated == 8 {
                    unswapped = codec::unswap_ow(bytes);
                    &unswapped
                } else {
                    bytes
                };
                // Bit-packed frames follow each other bit by bit: all of them
                // need the ceiling of their bits over 8 bytes.
                let size = layout.native_frame_bytes();
                let needed = if layout.bits_allocated == 1 {
                    layout.sample_count().checked_mul(frames_us).map(|bits| bits.div_ceil(8))
                } else {
                    size.checked_mul(frames_us)
                }
                .ok_or("the pixel data size overflows")?;
                if value.len() < needed {
                    let odd = if value.len() < bytes.len() {
                        "; an OW value of odd length, whose last byte has no partner in a 16-bit word"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "Pixel Data holds {} bytes but {frames} frame(s) of {columns}×{rows}×{samples} samples need \
                         {needed} (truncated file or wrong value length{odd}; Pixel Data (7FE0,0010) {})",
                        bytes.len(),
                        ds.origin.at(*at)
                    ));
                }
                if layout.bits_allocated == 1 {
                    codec::bits(value, &layout, frame_us)?
                } else {
                // frame < frames: the frame lies within the `needed` bytes checked above.
                let frame_bytes = value
                    .get(size.saturating_mul(frame_us)..)
                    .and_then(|v| v.get(..size))
                    .ok_or("the frame lies beyond the Pixel Data")?;
                codec::native(frame_bytes, &layout, big)?
                }
            }
            (
                Codec::Rle | Codec::Jpeg | Codec::Jpeg2000 | Codec::JpegLs,
                PixelData::Encapsulated { offset_table, fragments },
            ) => {
                let starts = match self.codec {
                    Codec::Rle => codec::rle_starts_frame,
                    Codec::Jpeg => codec::jpeg_starts_frame,
                    Codec::JpegLs => jpeg_ls::starts_frame,
                    _ => codec::j2k_starts_frame,
                };
                if self.codec == Codec::Rle && fragments.len() != frames_us {
                    return Err(format!("RLE Pixel Data has {} fragments for {frames} frame(s)", fragments.len()));
                }
                let data = codec::frame_fragments(fragments, offset_table, frames_us, frame_us, starts)?;
                match self.codec {
                    Codec::Rle => codec::rle(&data, &layout)?,
                    Codec::Jpeg => {
                        let (values, still_ybr) = codec::jpeg(&data, &layout, &photometric)?;
                        ybr = still_ybr;
                        values
                    }
                    Codec::JpegLs => codec::jpeg_ls(&data, &layout)?,
                    _ => codec::j2k(&data, &layout)?,
                }
            }
            (_, PixelData::Native { .. }) => {
                return Err(format!("the transfer syntax {} needs encapsulated Pixel Data", describe_ts(&self.ts)))
            }
            (_, PixelData::Encapsulated { .. }) => {
                return Err(format!("encapsulated Pixel Data in the native transfer syntax {}", describe_ts(&self.ts)))
            }
        };
        if values.len() != layout.sample_count() {
            return Err("the decoded frame has an unexpected number of samples".into());
        }
        let mut used = None;
        let data = match photometric.as_str() {
            "MONOCHROME1" | "MONOCHROME2" => {
                let stored: Vec<f64> = values.iter().map(|&v| v as f64).collect();
                let (grey, voi_used) = greyscale(&ds, &stored, photometric == "MONOCHROME1", voi)?;
                used = Some(voi_used);
                grey.into_iter().flat_map(|v| [v; 3]).collect()
            }
            "PALETTE COLOR" => palette(&ds, &values)?,
            "RGB" | "YBR_ICT" | "YBR_RCT" | "YBR_FULL" | "YBR_FULL_422" => {
                let eight = colour(&values, layout.bits_stored);
                if ybr {
                    ybr_to_rgb(&eight)
                } else {
                    eight
                }
            }
            other => return Err(format!("Photometric Interpretation {other:?} is not supported")),
        };
        Ok((Image8 { width: usize::from(columns), height: usize::from(rows), channels: 3, data }, used))
    }
}

impl File<'_> {
    /// Frame `frame` of Float Pixel Data (7FE0,0008: OF, 32-bit IEEE floats) or
    /// Double Float Pixel Data (7FE0,0009: OD, 64-bit), greyscale only (PS3.3
    /// C.7.6.24), through the same modality LUT and window rule as integers.
    fn render_float(
        &self,
        ds: &DataSet<'_>,
        (tag, value): (parse::Tag, parse::Value<'_>),
        (rows, columns, frames, samples): (u16, u16, u32, u16),
        frame: u32,
        voi: VoiChoice,
    ) -> PResult<(Vec<u8>, VoiUsed)> {
        let what = ds.describe(tag);
        if !matches!(self.codec, Codec::Native(_) | Codec::Deflated) {
            return Err(format!("{what} in the encapsulated transfer syntax {}", describe_ts(&self.ts)));
        }
        let photometric = ds.string(parse::PHOTOMETRIC).unwrap_or_else(|| "MONOCHROME2".into());
        if samples != 1 || !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2") {
            return Err(format!(
                "{what} is greyscale only, but the file says {photometric} with {samples} sample(s) per pixel"
            ));
        }
        let width: usize = if tag == parse::FLOAT_PIXEL_DATA { 4 } else { 8 };
        let too_large = || format!("{what}: {frames} frame(s) of {columns}×{rows} are too large for this platform");
        let size = usize::from(rows).checked_mul(usize::from(columns)).and_then(|p| p.checked_mul(width));
        let size = size.ok_or_else(too_large)?;
        let needed = usize::try_from(frames).ok().and_then(|f| f.checked_mul(size)).ok_or_else(too_large)?;
        if value.bytes.len() < needed {
            return Err(format!(
                "{what} holds {} bytes but {frames} frame(s) of {columns}×{rows} values of {width} bytes need {needed} \
                 (truncated file or wrong value length)",
                value.bytes.len()
            ));
        }
        // frame < frames: within the `needed` bytes checked above.
        let start = usize::try_from(frame).ok().and_then(|f| f.checked_mul(size)).ok_or_else(too_large)?;
        let bytes = value.bytes.get(start..).and_then(|v| v.get(..size)).ok_or("the frame lies beyond the pixel data")?;
        let big = ds.encoding.big_endian();
        let values: Vec<f64> = if width == 4 {
            let word = |w: [u8; 4]| if big { f32::from_be_bytes(w) } else { f32::from_le_bytes(w) };
            bytes.as_chunks::<4>().0.iter().map(|&w| f64::from(word(w))).collect()
        } else {
            let word = |w: [u8; 8]| if big { f64::from_be_bytes(w) } else { f64::from_le_bytes(w) };
            bytes.as_chunks::<8>().0.iter().map(|&w| word(w)).collect()
        };
        greyscale(ds, &values, photometric == "MONOCHROME1", voi)
    }
}

/// The Float or Double Float Pixel Data element, when the file has one.
fn float_pixel_data<'a>(ds: &DataSet<'a>) -> Option<(parse::Tag, parse::Value<'a>)> {
    [parse::FLOAT_PIXEL_DATA, parse::DOUBLE_PIXEL_DATA].into_iter().find_map(|t| ds.get(t).map(|v| (t, v)))
}

/// Keeps a code string to its defined characters (upper-case letters, digits,
/// space, underscore), at most 16 of them.
fn code_string(s: String) -> String {
    s.chars().filter(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == ' ' || *c == '_').take(16).collect()
}

fn dimensions(ds: &DataSet<'_>) -> PResult<(u16, u16)> {
    let rows = ds.u16(parse::ROWS)?.ok_or("Rows (0028,0010) is missing")?;
    let columns = ds.u16(parse::COLUMNS)?.ok_or("Columns (0028,0011) is missing")?;
    if rows == 0 || columns == 0 {
        return Err(format!("the image has no pixels ({columns}×{rows})"));
    }
    Ok((rows, columns))
}

fn frames(ds: &DataSet<'_>) -> PResult<u32> {
    match ds.integer(parse::NUMBER_OF_FRAMES)? {
        None => Ok(1),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("{} is {n}", ds.describe(parse::NUMBER_OF_FRAMES))),
    }
}

fn layout(ds: &DataSet<'_>, rows: u16, columns: u16, samples: u16, photometric: &str, codec: Codec) -> PResult<Layout> {
    let bits_allocated = ds.u16(parse::BITS_ALLOCATED)?.ok_or("Bits Allocated (0028,0100) is missing")?;
    if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
        return Err(format!("Bits Allocated {bits_allocated} is not supported (1, 8, 16 or 32)"));
    }
    if bits_allocated == 1 && !matches!(codec, Codec::Native(_) | Codec::Deflated) {
        return Err("bit-packed pixel data (Bits Allocated 1) in an encapsulated transfer syntax".into());
    }
    let bits_stored = ds.u16(parse::BITS_STORED)?.unwrap_or(bits_allocated);
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(format!("Bits Stored {bits_stored} does not fit Bits Allocated {bits_allocated}"));
    }
    let signed = match ds.u16(parse::PIXEL_REPRESENTATION)?.unwrap_or(0) {
        0 => false,
        1 => true,
        other => return Err(format!("Pixel Representation {other} is invalid (0 or 1)")),
    };
    let expected_samples = match photometric {
        "MONOCHROME1" | "MONOCHROME2" | "PALETTE COLOR" => 1,
        "RGB" | "YBR_FULL" | "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" => 3,
        other => return Err(format!("Photometric Interpretation {other:?} is not supported")),
    };
    if samples != expected_samples {
        return Err(format!("Samples per Pixel is {samples} but {photometric} has {expected_samples}"));
    }
    let planar = ds.u16(parse::PLANAR_CONFIGURATION)?.unwrap_or(0) == 1;
    let native = matches!(codec, Codec::Native(_) | Codec::Deflated);
    Layout {
        rows: usize::from(rows),
        columns: usize::from(columns),
        samples: usize::from(samples),
        bits_allocated,
        bits_stored,
        signed,
        planar,
        ybr_422: native && photometric == "YBR_FULL_422",
    }
    .checked()
}

/// Rounds half up and clamps to 0..=255 (NaN gives 0).
fn to_u8(v: f64) -> u8 {
    u8::try_from(codec::saturating_u16((v + 0.5).floor().clamp(0.0, 255.0))).unwrap_or(u8::MAX)
}

/// The linear VOI function of PS3.3 C.11.2.1.2.1 with output range 0..255.
pub fn window(x: f64, center: f64, width: f64) -> f64 {
    let (c, w) = (center - 0.5, width - 1.0);
    if x <= c - w / 2.0 {
        0.0
    } else if x > c + w / 2.0 {
        255.0
    } else {
        ((x - c) / w + 0.5) * 255.0
    }
}

/// Stored values (integers, or floats of Float/Double Float Pixel Data) to
/// 8-bit grey by the rule of the module docs (step 3), with the window `voi`
/// chooses; also says what was used.
fn greyscale(ds: &DataSet<'_>, values: &[f64], invert: bool, voi: VoiChoice) -> PResult<(Vec<u8>, VoiUsed)> {
    let slope = ds.decimal(parse::RESCALE_SLOPE)?.unwrap_or(1.0);
    let intercept = ds.decimal(parse::RESCALE_INTERCEPT)?.unwrap_or(0.0);
    let modality = |x: f64| x * slope + intercept;
    let (mut out, used): (Vec<u8>, VoiUsed) = match voi::choose(ds, voi)? {
        Some(used @ (VoiUsed::File { center, width, .. } | VoiUsed::Given { center, width })) => {
            (values.iter().map(|&x| to_u8(window(modality(x), center, width))).collect(), used)
        }
        _ => {
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                let y = modality(x);
                (lo.min(y), hi.max(y))
            });
            let grey = if hi > lo {
                values.iter().map(|&x| to_u8((modality(x) - lo) / (hi - lo) * 255.0)).collect()
            } else {
                vec![0; values.len()]
            };
            (grey, VoiUsed::MinMax { low: lo, high: hi })
        }
    };
    if invert {
        // 255 - v.
        out.iter_mut().for_each(|v| *v = !*v);
    }
    Ok((out, used))
}

/// Colour samples to 8 bits: samples of more than 8 bits (up to 32) scaled by
/// `255 / (2^bits - 1)`.
fn colour(values: &[i64], bits_stored: u16) -> Vec<u8> {
    if bits_stored <= 8 {
        values.iter().map(|&v| u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX)).collect()
    } else {
        let scale = 255.0 / (2f64.powi(i32::from(bits_stored)) - 1.0);
        values.iter().map(|&v| to_u8(v.max(0) as f64 * scale)).collect()
    }
}

/// YBR_FULL to RGB (PS3.3 C.7.6.3.1.2, the inverse of its RGB to YBR_FULL).
fn ybr_to_rgb(ybr: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ybr.len());
    for &[y, cb, cr] in ybr.as_chunks::<3>().0 {
        let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
        out.push(to_u8(y + 1.402 * cr));
        out.push(to_u8(y - 0.114 * 1.772 / 0.587 * cb - 0.299 * 1.402 / 0.587 * cr));
        out.push(to_u8(y + 1.772 * cb));
    }
    out
}

fn palette(ds: &DataSet<'_>, values: &[i64]) -> PResult<Vec<u8>> {
    if parse::SEGMENTED_PALETTE_DATA.iter().any(|&t| ds.get(t).is_some()) {
        return Err("segmented palette colour lookup tables are not supported".into());
    }
    let mut tables = Vec::with_capacity(3);
    for (&desc_tag, &data_tag) in parse::PALETTE_DESCRIPTORS.iter().zip(&parse::PALETTE_DATA) {
        let desc = ds.words(desc_tag)?.ok_or_else(|| format!("{} is missing", parse::tag_name(desc_tag)))?;
        let &[count, first, bits] = desc.as_slice() else {
            return Err(format!("{} has {} values, expected 3", ds.describe(desc_tag), desc.len()));
        };
        // At least one entry: 0 means 65536.
        let entries = if count == 0 { 65536 } else { usize::from(count) };
        let signed_first = ds.get(desc_tag).is_some_and(|v| &v.vr == b"SS");
        let first = if signed_first { i32::from(i16::from_ne_bytes(first.to_ne_bytes())) } else { i32::from(first) };
        if !matches!(bits, 8 | 16) {
            return Err(format!("{} gives {bits} bits per entry (8 or 16)", ds.describe(desc_tag)));
        }
        let raw = ds.get(data_tag).ok_or_else(|| format!("{} is missing", parse::tag_name(data_tag)))?;
        let table: Vec<u8> = if entries.checked_mul(2) == Some(raw.bytes.len()) {
            let words = ds.words(data_tag)?.unwrap_or_default();
            if bits == 16 {
                words.iter().map(|&w| to_u8(f64::from(w) * 255.0 / 65535.0)).collect()
            } else {
                // 8-bit entries in 16-bit words: in the low byte, or the high one.
                let high = words.iter().any(|&w| w > 255);
                words
                    .iter()
                    .map(|&w| {
                        let [high_byte, low_byte] = w.to_be_bytes();
                        if high {
                            high_byte
                        } else {
                            low_byte
                        }
                    })
                    .collect()
            }
        } else if bits == 8 && (entries..=entries.saturating_add(1)).contains(&raw.bytes.len()) {
            raw.bytes.get(..entries).unwrap_or_default().to_vec()
        } else {
            return Err(format!(
                "{} has {} bytes for {entries} entries of {bits} bits",
                ds.describe(data_tag),
                raw.bytes.len()
            ));
        };
        tables.push((first, table));
    }
    let mut out = Vec::with_capacity(values.len().saturating_mul(3));
    for &v in values {
        for (first, table) in &tables {
            // A value below the first mapped one takes the first entry, one beyond
            // the table the last (PS3.3 C.7.6.3.1.5).
            let entry = match usize::try_from(v.saturating_sub(i64::from(*first))) {
                Ok(i) => table.get(i).or(table.last()),
                Err(_) => table.first(),
            };
            // Every table has at least one entry.
            out.push(entry.copied().unwrap_or(0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_follows_the_standard() {
        // PS3.3 C.11.2.1.2.1 with c = 2048, w = 4096.
        assert_eq!(window(0.0, 2048.0, 4096.0), 0.0);
        assert_eq!(window(4095.5, 2048.0, 4096.0), 255.0);
        assert!((window(2047.5, 2048.0, 4096.0) - 127.5).abs() < 1e-9);
        // Width 1 is a threshold at c - 0.5.
        assert_eq!(window(99.5, 100.0, 1.0), 0.0);
        assert_eq!(window(99.6, 100.0, 1.0), 255.0);
    }

    #[test]
    fn normalize_masks_and_sign_extends() {
        let layout = Layout {
            rows: 1,
            columns: 1,
            samples: 1,
            bits_allocated: 16,
            bits_stored: 12,
            signed: true,
            planar: false,
            ybr_422: false,
        };
        assert_eq!(layout.normalize(0xF800), -2048);
        assert_eq!(layout.normalize(0x07FF), 2047);
        assert_eq!(layout.normalize(0x0FFF), -1);
        let unsigned = Layout { signed: false, ..layout };
        assert_eq!(unsigned.normalize(0xFFFF), 4095);
    }
}
