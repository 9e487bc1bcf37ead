//! A structure-aware generator of DICOM Part 10 files, for the `dicom_structured`
//! fuzz target (and any tool that includes this file with `#[path]`; it needs the
//! `arbitrary` and `miniz_oxide` crates and nothing of `kpl`).
//!
//! The fuzz input is read in two parts. Its first bytes choose a [`DicomParams`]
//! (`Arbitrary`, by hand so that most choices give a file a conforming writer
//! would write, and a few do not); [`write`] turns them into a complete file:
//! every transfer syntax the README lists as supported (implicit and explicit VR
//! little endian, explicit VR big endian, deflated, RLE lossless with real
//! PackBits segments, JPEG baseline/extended with a DC-only DCT encoder, JPEG
//! lossless with a real predictive Huffman encoder for predictors 1–7, JPEG 2000
//! with a valid codestream of empty packets, optionally in a JP2 wrapper), with
//! or without the 128-byte preamble and meta group. The remaining bytes then
//! become a few [`Mutation`]s (flip, set, insert, delete, truncate) applied to
//! the written file.
//!
//! The parameter names are those of the pydicom generator
//! `tests/reference/dicom_generate.py` (its `PARAMS`), which writes the
//! differential test set `tests/dicom/generated/` over the same space.

#![allow(dead_code)]

use arbitrary::{Arbitrary, Result, Unstructured};

/// Largest Rows and Columns the generator chooses.
pub const MAX_SIDE: u16 = 24;
/// Largest Number of Frames.
pub const MAX_FRAMES: u16 = 4;
/// Most samples (all frames) the generator writes: a larger image (a rare
/// choice of Rows and Columns) gets its header and only this much pixel data,
/// or an empty codestream, so that one input stays fast.
pub const MAX_SAMPLES: usize = 1 << 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum TransferSyntax {
    ImplicitVrLittleEndian,
    ExplicitVrLittleEndian,
    ExplicitVrBigEndian,
    DeflatedExplicitVrLittleEndian,
    RleLossless,
    JpegBaseline,
    JpegExtended,
    JpegLossless,
    JpegLosslessSv1,
    Jpeg2000Lossless,
    Jpeg2000,
}

impl TransferSyntax {
    pub fn uid(self) -> &'static str {
        match self {
            Self::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
            Self::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            Self::ExplicitVrBigEndian => "1.2.840.10008.1.2.2",
            Self::DeflatedExplicitVrLittleEndian => "1.2.840.10008.1.2.1.99",
            Self::RleLossless => "1.2.840.10008.1.2.5",
            Self::JpegBaseline => "1.2.840.10008.1.2.4.50",
            Self::JpegExtended => "1.2.840.10008.1.2.4.51",
            Self::JpegLossless => "1.2.840.10008.1.2.4.57",
            Self::JpegLosslessSv1 => "1.2.840.10008.1.2.4.70",
            Self::Jpeg2000Lossless => "1.2.840.10008.1.2.4.90",
            Self::Jpeg2000 => "1.2.840.10008.1.2.4.91",
        }
    }

    pub fn encapsulated(self) -> bool {
        !matches!(
            self,
            Self::ImplicitVrLittleEndian
                | Self::ExplicitVrLittleEndian
                | Self::ExplicitVrBigEndian
                | Self::DeflatedExplicitVrLittleEndian
        )
    }

    fn jpeg(self) -> bool {
        matches!(self, Self::JpegBaseline | Self::JpegExtended | Self::JpegLossless | Self::JpegLosslessSv1)
    }

    fn j2k(self) -> bool {
        matches!(self, Self::Jpeg2000Lossless | Self::Jpeg2000)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Photometric {
    Monochrome1,
    Monochrome2,
    Rgb,
    YbrFull,
    YbrFull422,
    PaletteColor,
}

impl Photometric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Monochrome1 => "MONOCHROME1",
            Self::Monochrome2 => "MONOCHROME2",
            Self::Rgb => "RGB",
            Self::YbrFull => "YBR_FULL",
            Self::YbrFull422 => "YBR_FULL_422",
            Self::PaletteColor => "PALETTE COLOR",
        }
    }

    pub fn samples(self) -> u16 {
        match self {
            Self::Monochrome1 | Self::Monochrome2 | Self::PaletteColor => 1,
            _ => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum PixelVr {
    OB,
    OW,
}

/// How a deflated data set is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum DeflateMode {
    /// Stored (uncompressed) blocks.
    Stored,
    /// One block of fixed Huffman codes, literals only.
    FixedHuffman,
    /// miniz_oxide at level 1 (dynamic Huffman codes and matches); data sets
    /// above 16 KB fall back to fixed Huffman codes, to keep an input fast.
    Miniz,
}

/// How the stored values of each frame are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum PixelPattern {
    /// From the smallest to the largest value of Bits Stored, in raster order.
    Ramp,
    /// Uniform in the range of Bits Stored (xorshift from `pixel_seed`).
    Random,
    /// One value (from `pixel_seed`).
    Constant,
    /// The smallest and largest values alternating.
    Extremes,
}

/// The Palette Color lookup tables (the same descriptor for red, green, blue).
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// Number of entries (the descriptor's first value; 0 means 65536).
    pub entries: u16,
    /// First stored value mapped (the descriptor's second value).
    pub first_mapped: u16,
    /// Bits per entry (the descriptor's third value): 8 or 16.
    pub bits: u16,
    /// The descriptor written with VR SS instead of US.
    pub descriptor_ss: bool,
    /// 8-bit entries written one per byte (OB-like) instead of one per 16-bit word.
    pub packed_8bit: bool,
    pub seed: u32,
}

/// The JPEG/JPEG 2000 encoders' choices (ignored by the other transfer syntaxes).
#[derive(Debug, Clone, PartialEq)]
pub struct CodecParams {
    /// JPEG DCT colour: luminance sampled 2×1 (4:2:2) or 2×2 (4:2:0) instead of 1×1.
    pub jpeg_subsampling: u8,
    /// JPEG DCT: a restart interval in MCUs (0: none).
    pub jpeg_restart_interval: u8,
    /// JPEG: an APP14 "Adobe" segment with this colour transform (None: no segment).
    pub jpeg_adobe_transform: Option<u8>,
    /// JPEG: a JFIF APP0 segment.
    pub jpeg_jfif: bool,
    /// JPEG lossless: the predictor (selection value 1–7; forced to 1 for .70).
    pub jpeg_predictor: u8,
    /// JPEG lossless: the point transform.
    pub jpeg_point_transform: u8,
    /// JPEG 2000: decomposition levels.
    pub j2k_levels: u8,
    /// JPEG 2000: the multiple component transform for 3 components.
    pub j2k_mct: bool,
    /// JPEG 2000: the reversible 5-3 wavelet (always for .90).
    pub j2k_reversible: bool,
    /// JPEG 2000: the codestream inside a JP2 file.
    pub j2k_jp2: bool,
    /// JPEG entropy-coded data or JPEG 2000 packet data taken from the fuzz
    /// input instead of the encoder's own.
    pub entropy_bytes: Option<Vec<u8>>,
    /// Fragments per frame (1–3).
    pub fragments_per_frame: u8,
    /// A Basic Offset Table with each frame's offset.
    pub basic_offset_table: bool,
}

/// Elements a real file carries besides the image attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Extra {
    /// A private creator (0009,0010) and a private OB value (0009,1001).
    Private { length: u8 },
    /// A sequence (0040,0275) of `items` items, each with a code string, with
    /// undefined lengths or defined ones.
    Sequence { items: u8, undefined_length: bool },
    /// An element of VR UN (0019,1010).
    Unknown { length: u8 },
    /// A long text (0008,4000) with an odd length.
    Text { length: u8 },
}

/// Everything a generated file is made of. The names are those of
/// `tests/reference/dicom_generate.py`.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomParams {
    pub transfer_syntax: TransferSyntax,
    /// 128-byte preamble, "DICM" and the meta group; without it the file is a
    /// raw implicit VR little endian data set that starts with group 0008.
    pub preamble: bool,
    pub rows: u16,
    pub columns: u16,
    pub frames: u16,
    /// Number of Frames (0028,0008) written for a single frame too.
    pub number_of_frames_element: bool,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub pixel_representation: u16,
    pub photometric_interpretation: Photometric,
    /// Written only for colour images unless `conform` is false.
    pub planar_configuration: u16,
    pub pixel_vr: PixelVr,
    pub rescale_slope: Option<f64>,
    pub rescale_intercept: Option<f64>,
    pub window_center: Option<f64>,
    pub window_width: Option<f64>,
    /// A second window after the first (only the first counts).
    pub second_window: bool,
    pub palette: Palette,
    pub pixel_pattern: PixelPattern,
    pub pixel_seed: u32,
    /// Bits above Bits Stored set to garbage (16-bit allocation).
    pub high_bits_garbage: bool,
    /// Bytes added to (or, negative, cut from) the pixel data (native) or the
    /// last frame's codestream (encapsulated).
    pub pixel_data_delta: i8,
    /// Odd-length values padded to even length, as the standard requires.
    pub odd_length_padding: bool,
    /// The deflated transfer syntax's compression (not a parameter of the
    /// pydicom generator, which deflates with zlib).
    pub deflate_mode: DeflateMode,
    pub codec: CodecParams,
    pub extras: Vec<Extra>,
    /// Whether the other choices were made consistent with the transfer syntax
    /// and photometric interpretation (Bits Allocated 8 for JPEG baseline,
    /// samples per pixel from the photometric interpretation, …).
    pub conform: bool,
}

/// One change to the written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    Flip { at: u32, bit: u8 },
    Set { at: u32, value: u8 },
    Insert { at: u32, value: u8, count: u8 },
    Delete { at: u32, count: u8 },
    Truncate { at: u32 },
}

fn one_in(u: &mut Unstructured<'_>, n: u32) -> Result<bool> {
    Ok(u.int_in_range(0..=n - 1)? == 0)
}

/// A decimal value for a DS attribute: an integer over 1, 2, 4 or 10.
fn decimal(u: &mut Unstructured<'_>, range: i32) -> Result<f64> {
    let n = u.int_in_range(-range..=range)?;
    let d = *u.choose(&[1.0, 1.0, 2.0, 4.0, 10.0])?;
    Ok(f64::from(n) / d)
}

impl<'a> Arbitrary<'a> for DicomParams {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let transfer_syntax = TransferSyntax::arbitrary(u)?;
        let conform = !one_in(u, 8)?;
        let preamble = !one_in(u, 10)?;
        let photometric_interpretation = Photometric::arbitrary(u)?;
        // Mostly small images (fast inputs), sometimes several JPEG MCUs wide,
        // rarely anything.
        let side = |u: &mut Unstructured<'a>| -> Result<u16> {
            Ok(match u.int_in_range(0..=31)? {
                0 => u.arbitrary::<u16>()? % 300,
                1..=8 => u.int_in_range(1..=MAX_SIDE)?,
                _ => u.int_in_range(1..=8)?,
            })
        };
        let rows = side(u)?;
        let columns = side(u)?;
        let frames = if one_in(u, 3)? { u.int_in_range(2..=MAX_FRAMES)? } else { 1 };
        let number_of_frames_element = u.arbitrary()?;
        let bits_allocated = match u.int_in_range(0..=9)? {
            0..=4 => 8,
            5..=8 => 16,
            _ => *u.choose(&[0u16, 1, 12, 32])?,
        };
        let bits_stored = if one_in(u, 4)? || bits_allocated == 0 {
            bits_allocated
        } else {
            u.int_in_range(1..=bits_allocated.min(32) + 1)?
        };
        let high_bit = if one_in(u, 8)? { u.int_in_range(0..=bits_allocated)? } else { bits_stored.saturating_sub(1) };
        let pixel_representation = if one_in(u, 32)? { 2 } else { u16::from(u.arbitrary::<bool>()?) };
        let samples_per_pixel =
            if one_in(u, 16)? { *u.choose(&[0u16, 1, 2, 3, 4])? } else { photometric_interpretation.samples() };
        let planar_configuration = if one_in(u, 32)? { 2 } else { u16::from(u.arbitrary::<bool>()?) };
        let pixel_vr = PixelVr::arbitrary(u)?;
        let rescale = one_in(u, 2)?;
        let rescale_slope = if rescale {
            Some(*u.choose(&[1.0, 1.0, 0.5, 2.0, 0.25, 1.5, 3.0, -1.0, 0.001, 100.0, 0.0])?)
        } else {
            None
        };
        let rescale_intercept = if rescale && !one_in(u, 8)? {
            Some(*u.choose(&[0.0, -1024.0, 1000.0, -0.5, 7.25, 32768.0, -32768.0])?)
        } else {
            None
        };
        let window = one_in(u, 2)?;
        let window_center = if window { Some(decimal(u, 70000)?) } else { None };
        let window_width = if window && !one_in(u, 16)? {
            Some(if one_in(u, 8)? { decimal(u, 2)? } else { decimal(u, 70000)?.abs() })
        } else {
            None
        };
        let second_window = u.arbitrary()?;
        let palette = Palette {
            entries: match u.int_in_range(0..=63)? {
                0 => 0,
                1..=4 => 4096,
                5..=12 => 256,
                _ => u.int_in_range(1..=300)?,
            },
            first_mapped: if one_in(u, 2)? { 0 } else { u.arbitrary()? },
            bits: if one_in(u, 16)? { *u.choose(&[0u16, 1, 12])? } else { *u.choose(&[8u16, 16])? },
            descriptor_ss: one_in(u, 4)?,
            packed_8bit: one_in(u, 4)?,
            seed: u.arbitrary()?,
        };
        let pixel_pattern = PixelPattern::arbitrary(u)?;
        let pixel_seed = u.arbitrary()?;
        let high_bits_garbage = one_in(u, 4)?;
        let pixel_data_delta = if one_in(u, 6)? { u.int_in_range(-4..=4)? } else { 0 };
        let odd_length_padding = !one_in(u, 6)?;
        let deflate_mode = DeflateMode::arbitrary(u)?;
        let codec = CodecParams {
            jpeg_subsampling: u.int_in_range(0..=2)?,
            jpeg_restart_interval: if one_in(u, 4)? { u.int_in_range(1..=4)? } else { 0 },
            jpeg_adobe_transform: if one_in(u, 4)? { Some(u.int_in_range(0..=2)?) } else { None },
            jpeg_jfif: u.arbitrary()?,
            jpeg_predictor: u.int_in_range(1..=7)?,
            jpeg_point_transform: if one_in(u, 4)? { u.int_in_range(1..=3)? } else { 0 },
            j2k_levels: u.int_in_range(0..=5)?,
            j2k_mct: u.arbitrary()?,
            j2k_reversible: u.arbitrary()?,
            j2k_jp2: one_in(u, 4)?,
            entropy_bytes: if one_in(u, 6)? {
                let n = u.int_in_range(0..=64)?;
                Some(u.bytes(n.min(u.len()))?.to_vec())
            } else {
                None
            },
            fragments_per_frame: if one_in(u, 5)? { u.int_in_range(2..=3)? } else { 1 },
            basic_offset_table: u.arbitrary()?,
        };
        let mut extras = Vec::new();
        while extras.len() < 3 && one_in(u, 3)? {
            extras.push(Extra::arbitrary(u)?);
        }
        let mut p = DicomParams {
            transfer_syntax,
            preamble,
            rows,
            columns,
            frames,
            number_of_frames_element,
            samples_per_pixel,
            bits_allocated,
            bits_stored,
            high_bit,
            pixel_representation,
            photometric_interpretation,
            planar_configuration,
            pixel_vr,
            rescale_slope,
            rescale_intercept,
            window_center,
            window_width,
            second_window,
            palette,
            pixel_pattern,
            pixel_seed,
            high_bits_garbage,
            pixel_data_delta,
            odd_length_padding,
            deflate_mode,
            codec,
            extras,
            conform,
        };
        if conform {
            p.make_conform();
        }
        Ok(p)
    }
}

impl DicomParams {
    /// Makes the choices consistent with each other, as a conforming writer
    /// would (the generator still writes whatever the fields say).
    pub fn make_conform(&mut self) {
        use TransferSyntax as T;
        let pi = self.photometric_interpretation;
        self.rows = self.rows.clamp(1, MAX_SIDE);
        self.columns = self.columns.clamp(1, MAX_SIDE);
        self.frames = self.frames.clamp(1, MAX_FRAMES);
        self.samples_per_pixel = pi.samples();
        if !matches!(self.bits_allocated, 8 | 16) {
            self.bits_allocated = 16;
        }
        self.pixel_representation = self.pixel_representation.min(1);
        self.planar_configuration = self.planar_configuration.min(1);
        if !self.preamble {
            // A raw data set is implicit VR little endian by rule.
            self.transfer_syntax = T::ImplicitVrLittleEndian;
        }
        let ts = self.transfer_syntax;
        match ts {
            T::JpegBaseline => self.bits_allocated = 8,
            T::JpegExtended => {
                if self.bits_allocated == 16 && pi.samples() == 3 {
                    self.bits_allocated = 8; // 12-bit colour is not decoded
                }
            }
            _ => {}
        }
        if pi == Photometric::YbrFull422 && !ts.encapsulated() {
            self.bits_allocated = 8;
            self.columns += self.columns % 2;
            self.planar_configuration = 0;
        }
        if pi == Photometric::PaletteColor {
            self.pixel_representation = 0;
            self.bits_allocated = self.bits_allocated.min(16);
            if !matches!(self.palette.bits, 8 | 16) {
                self.palette.bits = 16;
            }
        }
        if ts.jpeg() && !matches!(ts, T::JpegLossless | T::JpegLosslessSv1) {
            // DCT: 8 bits, or 12 in 16 bits; unsigned samples.
            self.bits_stored = if self.bits_allocated == 8 { 8 } else { 12 };
            if pi.samples() == 3 {
                self.pixel_representation = 0;
            }
        } else if matches!(ts, T::JpegLossless | T::JpegLosslessSv1) {
            self.bits_stored = self.bits_stored.clamp(2, self.bits_allocated);
        }
        if ts.j2k() && pi.samples() == 3 && pi != Photometric::Rgb {
            self.photometric_interpretation = if self.codec.j2k_reversible || ts == T::Jpeg2000Lossless {
                Photometric::YbrFull
            } else {
                Photometric::Rgb
            };
        }
        if ts == T::JpegLosslessSv1 {
            self.codec.jpeg_predictor = 1;
        }
        if ts == T::Jpeg2000Lossless {
            self.codec.j2k_reversible = true;
        }
        if pi.samples() == 3 && ts.encapsulated() {
            self.planar_configuration = 0;
        }
        self.bits_stored = self.bits_stored.clamp(1, self.bits_allocated);
        self.high_bit = self.bits_stored - 1;
        self.codec.jpeg_point_transform = self.codec.jpeg_point_transform.min((self.bits_stored - 1) as u8);
        self.codec.entropy_bytes = None;
        self.codec.fragments_per_frame = self.codec.fragments_per_frame.max(1);
        if ts == T::RleLossless {
            self.codec.fragments_per_frame = 1;
        }
        if matches!(self.window_width, Some(w) if w < 1.0) {
            self.window_width = Some(1.0);
        }
        if self.window_width.is_none() {
            self.window_center = None;
        }
        if self.palette.entries == 0 || self.palette.entries > 4096 {
            self.palette.entries = 256;
        }
    }

    /// Whether a correct decoder must decode the file [`write`] makes (before
    /// any mutation): conforming choices, no bytes missing or added, every
    /// value of even length.
    pub fn should_decode(&self) -> bool {
        self.conform && self.pixel_data_delta == 0 && self.codec.entropy_bytes.is_none() && self.odd_length_padding
    }
}

/// Reads the mutations from the rest of the input: 6 bytes each, at most 8.
pub fn mutations(u: &mut Unstructured<'_>) -> Vec<Mutation> {
    let mut out = Vec::new();
    while out.len() < 8 {
        let Ok(bytes) = u.bytes(6) else { break };
        let at = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], 0]);
        let (value, extra) = (bytes[4], bytes[5]);
        out.push(match bytes[0] % 5 {
            0 => Mutation::Flip { at, bit: value % 8 },
            1 => Mutation::Set { at, value },
            2 => Mutation::Insert { at, value, count: 1 + extra % 4 },
            3 => Mutation::Delete { at, count: 1 + extra % 4 },
            _ => Mutation::Truncate { at },
        });
    }
    out
}

/// Applies the mutations; offsets are taken modulo the file's length.
pub fn mutate(file: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if file.is_empty() {
            return;
        }
        let pos = |at: u32, len: usize| at as usize % len;
        match *m {
            Mutation::Flip { at, bit } => {
                let i = pos(at, file.len());
                file[i] ^= 1 << bit;
            }
            Mutation::Set { at, value } => {
                let i = pos(at, file.len());
                file[i] = value;
            }
            Mutation::Insert { at, value, count } => {
                let i = pos(at, file.len() + 1);
                file.splice(i..i, std::iter::repeat_n(value, usize::from(count)));
            }
            Mutation::Delete { at, count } => {
                let i = pos(at, file.len());
                let end = (i + usize::from(count)).min(file.len());
                file.drain(i..end);
            }
            Mutation::Truncate { at } => {
                let i = pos(at, file.len());
                file.truncate(i);
            }
        }
    }
}

/// Parameters, file and mutations from one fuzz input.
pub fn from_fuzz_input(data: &[u8]) -> Option<(DicomParams, Vec<u8>, Vec<Mutation>)> {
    let mut u = Unstructured::new(data);
    let params = DicomParams::arbitrary(&mut u).ok()?;
    let mut file = write(&params);
    let mutations = mutations(&mut u);
    mutate(&mut file, &mutations);
    Some((params, file, mutations))
}

// ------------------------------------------------------------------ pixel values

struct XorShift(u32);

impl XorShift {
    fn new(seed: u32) -> Self {
        Self(seed.wrapping_mul(2_654_435_761) | 1)
    }

    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Stored bit patterns (within Bits Allocated), frame by frame, pixel by
/// pixel, sample by sample (interleaved).
fn stored_values(p: &DicomParams, samples: usize) -> Vec<u32> {
    let allocated = u32::from(p.bits_allocated.clamp(1, 32));
    let bits = u32::from(p.bits_stored).clamp(1, allocated);
    let signed = p.pixel_representation == 1;
    let (min, max): (i64, i64) =
        if signed { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) } else { (0, (1i64 << bits) - 1) };
    let per_frame = usize::from(p.rows) * usize::from(p.columns) * samples;
    let count = (per_frame * usize::from(p.frames.max(1))).min(MAX_SAMPLES);
    let mut rng = XorShift::new(p.pixel_seed);
    let span = (max - min + 1) as u64;
    let stored_mask: u64 = (1u64 << bits) - 1;
    // One tight loop per pattern (the generator's code is instrumented too).
    let mut values: Vec<u32> = match p.pixel_pattern {
        PixelPattern::Ramp => {
            let n = per_frame.max(2) as i64 - 1;
            (0..count)
                .map(|i| {
                    // Frames differ: each starts further along the ramp.
                    let k = ((i % per_frame.max(1)) as i64 + (i / per_frame.max(1)) as i64 * 7) % (n + 1);
                    ((min + (max - min) * k / n) as u64 & stored_mask) as u32
                })
                .collect()
        }
        PixelPattern::Random => {
            (0..count).map(|_| ((min + (u64::from(rng.next()) % span) as i64) as u64 & stored_mask) as u32).collect()
        }
        PixelPattern::Constant => {
            let v = ((min + (u64::from(p.pixel_seed) % span) as i64) as u64 & stored_mask) as u32;
            vec![v; count]
        }
        PixelPattern::Extremes => {
            let (lo, hi) = ((min as u64 & stored_mask) as u32, (max as u64 & stored_mask) as u32);
            (0..count).map(|i| if (i / samples) % 2 == 0 { lo } else { hi }).collect()
        }
    };
    if p.high_bits_garbage && bits < allocated {
        let keep: u64 = if allocated >= 32 { u64::from(u32::MAX) } else { (1u64 << allocated) - 1 };
        for v in &mut values {
            *v = ((u64::from(*v) | (u64::from(rng.next()) << bits)) & keep) as u32;
        }
    }
    values
}

// ------------------------------------------------------------------- data sets

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
}

impl Encoding {
    fn big(self) -> bool {
        self == Encoding::ExplicitBig
    }
}

enum Value {
    Bytes(Vec<u8>),
    /// Encapsulated pixel data: the offset table and the fragments.
    Encapsulated(Vec<u8>, Vec<Vec<u8>>),
    /// Items of elements, with undefined lengths or not.
    Sequence(Vec<Vec<Element>>, bool),
}

struct Element {
    tag: (u16, u16),
    vr: [u8; 2],
    value: Value,
}

fn long_header_vr(vr: &[u8; 2]) -> bool {
    matches!(vr, b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"OV" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR" | b"SV" | b"UV")
}

struct Writer {
    out: Vec<u8>,
    enc: Encoding,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&if self.enc.big() { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&if self.enc.big() { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn header(&mut self, tag: (u16, u16), vr: &[u8; 2], length: u32) {
        self.u16(tag.0);
        self.u16(tag.1);
        if self.enc == Encoding::ImplicitLittle || tag.0 == 0xFFFE {
            self.u32(length);
        } else if long_header_vr(vr) {
            self.out.extend_from_slice(vr);
            self.out.extend_from_slice(&[0, 0]);
            self.u32(length);
        } else {
            self.out.extend_from_slice(vr);
            self.u16(length.min(0xFFFF) as u16);
        }
    }

    fn element(&mut self, e: &Element) {
        match &e.value {
            Value::Bytes(b) => {
                self.header(e.tag, &e.vr, b.len() as u32);
                self.out.extend_from_slice(b);
            }
            Value::Encapsulated(table, fragments) => {
                self.header(e.tag, &e.vr, u32::MAX);
                self.header((0xFFFE, 0xE000), b"  ", table.len() as u32);
                self.out.extend_from_slice(table);
                for f in fragments {
                    self.header((0xFFFE, 0xE000), b"  ", f.len() as u32);
                    self.out.extend_from_slice(f);
                }
                self.header((0xFFFE, 0xE0DD), b"  ", 0);
            }
            Value::Sequence(items, undefined) => {
                let mut inner = Writer { out: Vec::new(), enc: self.enc };
                for item in items {
                    let mut body = Writer { out: Vec::new(), enc: self.enc };
                    for e in item {
                        body.element(e);
                    }
                    inner.header((0xFFFE, 0xE000), b"  ", if *undefined { u32::MAX } else { body.out.len() as u32 });
                    inner.out.extend_from_slice(&body.out);
                    if *undefined {
                        inner.header((0xFFFE, 0xE00D), b"  ", 0);
                    }
                }
                if *undefined {
                    inner.header((0xFFFE, 0xE0DD), b"  ", 0);
                }
                self.header(e.tag, &e.vr, if *undefined { u32::MAX } else { inner.out.len() as u32 });
                self.out.extend_from_slice(&inner.out);
            }
        }
    }
}

fn text(s: &str, pad: u8, even: bool) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    if even && b.len() % 2 == 1 {
        b.push(pad);
    }
    b
}

/// A DS value as pydicom would write it (at most 16 characters).
fn ds(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 16 {
        s
    } else {
        let s = format!("{v:.6e}");
        s[..s.len().min(16)].to_string()
    }
}

fn us(v: u16, enc: Encoding) -> Vec<u8> {
    if enc.big() {
        v.to_be_bytes().to_vec()
    } else {
        v.to_le_bytes().to_vec()
    }
}

/// The image's data set elements, in any order (sorted when written).
fn dataset(p: &DicomParams, enc: Encoding, pixel: Value) -> Vec<Element> {
    let even = p.odd_length_padding;
    let el =
        |g: u16, e: u16, vr: &[u8; 2], value: Vec<u8>| Element { tag: (g, e), vr: *vr, value: Value::Bytes(value) };
    let pi = p.photometric_interpretation;
    let mut v = vec![
        el(0x0008, 0x0016, b"UI", text("1.2.840.10008.5.1.4.1.1.7", 0, even)),
        el(0x0008, 0x0018, b"UI", text("1.2.826.0.1.3680043.8.498.1", 0, even)),
        el(0x0008, 0x0060, b"CS", text("OT", b' ', even)),
        el(0x0018, 0x0015, b"CS", text("CHEST", b' ', even)),
        el(0x0028, 0x0002, b"US", us(p.samples_per_pixel, enc)),
        el(0x0028, 0x0004, b"CS", text(pi.name(), b' ', even)),
        el(0x0028, 0x0010, b"US", us(p.rows, enc)),
        el(0x0028, 0x0011, b"US", us(p.columns, enc)),
        el(0x0028, 0x0100, b"US", us(p.bits_allocated, enc)),
        el(0x0028, 0x0101, b"US", us(p.bits_stored, enc)),
        el(0x0028, 0x0102, b"US", us(p.high_bit, enc)),
        el(0x0028, 0x0103, b"US", us(p.pixel_representation, enc)),
    ];
    if p.samples_per_pixel > 1 || !p.conform {
        v.push(el(0x0028, 0x0006, b"US", us(p.planar_configuration, enc)));
    }
    if p.frames > 1 || p.number_of_frames_element {
        v.push(el(0x0028, 0x0008, b"IS", text(&p.frames.to_string(), b' ', even)));
    }
    let pair =
        |first: f64, second: bool| if second { format!("{}\\{}", ds(first), ds(first * 2.0 + 1.0)) } else { ds(first) };
    if let Some(c) = p.window_center {
        v.push(el(0x0028, 0x1050, b"DS", text(&pair(c, p.second_window), b' ', even)));
    }
    if let Some(w) = p.window_width {
        v.push(el(0x0028, 0x1051, b"DS", text(&pair(w, p.second_window), b' ', even)));
    }
    if let Some(i) = p.rescale_intercept {
        v.push(el(0x0028, 0x1052, b"DS", text(&ds(i), b' ', even)));
    }
    if let Some(s) = p.rescale_slope {
        v.push(el(0x0028, 0x1053, b"DS", text(&ds(s), b' ', even)));
    }
    if pi == Photometric::PaletteColor {
        let pal = &p.palette;
        let vr = if pal.descriptor_ss { b"SS" } else { b"US" };
        let desc: Vec<u8> = [pal.entries, pal.first_mapped, pal.bits].iter().flat_map(|&x| us(x, enc)).collect();
        let entries = if pal.entries == 0 { 65536 } else { usize::from(pal.entries) };
        for (i, channel) in [0x1101u16, 0x1102, 0x1103].into_iter().enumerate() {
            v.push(el(0x0028, channel, vr, desc.clone()));
            // Ramps of different slopes, with some noise from the seed.
            let (step, noise) = ((i + 1) * 65535 / entries.max(2), pal.seed.rotate_left(8 * i as u32));
            let shift = if pal.bits == 8 { 8 } else { 0 };
            let words: Vec<u16> =
                (0..entries).map(|k| (((k * step) as u32 ^ (noise >> (k % 16)) & 0x0F0F) as u16) >> shift).collect();
            let data: Vec<u8> = if pal.bits == 8 && pal.packed_8bit {
                let mut b: Vec<u8> = words.iter().map(|&w| w as u8).collect();
                if even && b.len() % 2 == 1 {
                    b.push(0);
                }
                b
            } else {
                let mut b = Vec::with_capacity(2 * words.len());
                for &w in &words {
                    b.extend_from_slice(&if enc.big() { w.to_be_bytes() } else { w.to_le_bytes() });
                }
                b
            };
            v.push(el(0x0028, 0x1201 + i as u16, b"OW", data));
        }
    }
    for extra in &p.extras {
        match *extra {
            Extra::Private { length } => {
                v.push(el(0x0009, 0x0010, b"LO", text("KPL FUZZ", b' ', even)));
                v.push(el(0x0009, 0x1001, b"OB", vec![0xA5; usize::from(length)]));
            }
            Extra::Sequence { items, undefined_length } => {
                let items = (0..items % 4)
                    .map(|i| {
                        vec![
                            el(0x0008, 0x0100, b"SH", text(&format!("CODE{i}"), b' ', even)),
                            el(0x0008, 0x0102, b"SH", text("KPL", b' ', even)),
                        ]
                    })
                    .collect();
                v.push(Element { tag: (0x0040, 0x0275), vr: *b"SQ", value: Value::Sequence(items, undefined_length) });
            }
            Extra::Unknown { length } => v.push(el(0x0019, 0x1010, b"UN", vec![0x5A; usize::from(length)])),
            Extra::Text { length } => {
                v.push(el(0x0008, 0x4000, b"LT", text(&"x".repeat(usize::from(length) | 1), b' ', false)))
            }
        }
    }
    let vr = match (&pixel, p.pixel_vr) {
        (Value::Encapsulated(..), _) => *b"OB",
        (_, PixelVr::OB) => *b"OB",
        (_, PixelVr::OW) => *b"OW",
    };
    v.push(Element { tag: (0x7FE0, 0x0010), vr, value: pixel });
    v.sort_by_key(|e| e.tag);
    v.dedup_by_key(|e| e.tag);
    v
}

fn meta(p: &DicomParams) -> Vec<u8> {
    let even = p.odd_length_padding;
    let mut body = Writer { out: Vec::new(), enc: Encoding::ExplicitLittle };
    for (tag, vr, value) in [
        ((0x0002, 0x0001), b"OB", vec![0, 1]),
        ((0x0002, 0x0002), b"UI", text("1.2.840.10008.5.1.4.1.1.7", 0, even)),
        ((0x0002, 0x0003), b"UI", text("1.2.826.0.1.3680043.8.498.1", 0, even)),
        ((0x0002, 0x0010), b"UI", text(p.transfer_syntax.uid(), 0, even)),
        ((0x0002, 0x0012), b"UI", text("1.2.826.0.1.3680043.8.498.2", 0, even)),
        ((0x0002, 0x0013), b"SH", text("KPL_FUZZ", b' ', even)),
    ] {
        body.element(&Element { tag, vr: *vr, value: Value::Bytes(value) });
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let mut group = Writer { out: Vec::new(), enc: Encoding::ExplicitLittle };
    group.element(&Element {
        tag: (0x0002, 0x0000),
        vr: *b"UL",
        value: Value::Bytes((body.out.len() as u32).to_le_bytes().to_vec()),
    });
    out.extend_from_slice(&group.out);
    out.extend_from_slice(&body.out);
    out
}

/// Writes the file the parameters describe.
pub fn write(p: &DicomParams) -> Vec<u8> {
    use TransferSyntax as T;
    let ts = if p.preamble { p.transfer_syntax } else { T::ImplicitVrLittleEndian };
    let enc = match ts {
        T::ImplicitVrLittleEndian => Encoding::ImplicitLittle,
        T::ExplicitVrBigEndian => Encoding::ExplicitBig,
        _ => Encoding::ExplicitLittle,
    };
    let pixel = if ts.encapsulated() { encapsulated(p, ts) } else { Value::Bytes(native(p, enc)) };
    let mut w = Writer { out: Vec::new(), enc };
    for e in dataset(p, enc, pixel) {
        w.element(&e);
    }
    let body = if ts == T::DeflatedExplicitVrLittleEndian { deflate(&w.out, p.deflate_mode) } else { w.out };
    let mut out = if p.preamble { meta(p) } else { Vec::new() };
    out.extend_from_slice(&body);
    out
}

/// Raw deflate (RFC 1951) of a data set.
fn deflate(data: &[u8], mode: DeflateMode) -> Vec<u8> {
    match mode {
        DeflateMode::Miniz if data.len() <= 16 << 10 => miniz_oxide::deflate::compress_to_vec(data, 1),
        DeflateMode::Stored => {
            let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / 65535 + 1));
            let mut chunks = data.chunks(65535).peekable();
            if chunks.peek().is_none() {
                out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
            }
            while let Some(chunk) = chunks.next() {
                let len = chunk.len() as u16;
                out.push(u8::from(chunks.peek().is_none()));
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&(!len).to_le_bytes());
                out.extend_from_slice(chunk);
            }
            out
        }
        _ => {
            // BFINAL 1, BTYPE 01, then each byte's fixed code (RFC 1951 3.2.6), end of block.
            let mut out = Vec::with_capacity(data.len() * 9 / 8 + 4);
            let (mut acc, mut n) = (0u64, 0u32);
            let mut put = |code: u32, len: u32, out: &mut Vec<u8>| {
                // Huffman codes go most significant bit first.
                let reversed = code.reverse_bits() >> (32 - len);
                acc |= u64::from(reversed) << n;
                n += len;
                while n >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    n -= 8;
                }
            };
            put(0b110, 3, &mut out); // BFINAL = 1 and BTYPE = 01, read LSB first: reversed here
            for &b in data {
                if b < 144 {
                    put(0x30 + u32::from(b), 8, &mut out);
                } else {
                    put(0x190 + u32::from(b) - 144, 9, &mut out);
                }
            }
            put(0, 7, &mut out);
            put(0, 7, &mut out); // flush the last bits (padding)
            out
        }
    }
}

// ---------------------------------------------------------------------- native

fn native(p: &DicomParams, enc: Encoding) -> Vec<u8> {
    let samples = usize::from(p.samples_per_pixel.clamp(1, 4));
    let values = stored_values(p, samples);
    let pixels = usize::from(p.rows) * usize::from(p.columns);
    let per_frame = pixels * samples;
    let mut out = Vec::new();
    let ybr_422 = p.photometric_interpretation == Photometric::YbrFull422 && samples == 3 && p.bits_allocated == 8;
    for frame in values.chunks(per_frame.max(1)) {
        if ybr_422 {
            // Y1 Y2 Cb Cr for each pair of pixels (the pair's first chroma).
            for pair in frame.chunks_exact(6) {
                out.extend_from_slice(&[pair[0] as u8, pair[3] as u8, pair[1] as u8, pair[2] as u8]);
            }
            if let [y, cb, cr, ..] = frame.chunks_exact(6).remainder() {
                out.extend_from_slice(&[*y as u8, *y as u8, *cb as u8, *cr as u8]);
            }
            continue;
        }
        // A frame cut short by MAX_SAMPLES is written as it is, colour-by-pixel.
        let order: Vec<usize> = if p.planar_configuration == 1 && samples > 1 && frame.len() == per_frame {
            (0..samples).flat_map(|s| (0..pixels).map(move |px| px * samples + s)).collect()
        } else {
            (0..frame.len()).collect()
        };
        for i in order {
            let v = frame[i];
            match p.bits_allocated {
                8 => out.push(v as u8),
                16 => {
                    out.extend_from_slice(&if enc.big() { (v as u16).to_be_bytes() } else { (v as u16).to_le_bytes() })
                }
                32 => out.extend_from_slice(&if enc.big() { v.to_be_bytes() } else { v.to_le_bytes() }),
                _ => out.push(v as u8),
            }
        }
    }
    resize(&mut out, p.pixel_data_delta);
    if p.odd_length_padding && out.len() % 2 == 1 {
        out.push(0);
    }
    if enc.big() && p.pixel_vr == PixelVr::OW && p.bits_allocated == 8 {
        // Explicit VR big endian OW: 16-bit words, so byte pairs are swapped
        // (as pydicom writes them).
        for pair in out.chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
    }
    out
}

fn resize(bytes: &mut Vec<u8>, delta: i8) {
    if delta < 0 {
        bytes.truncate(bytes.len().saturating_sub(usize::from(delta.unsigned_abs())));
    } else {
        bytes.extend(std::iter::repeat_n(0xAB, delta as usize));
    }
}

// ---------------------------------------------------------------- encapsulated

fn encapsulated(p: &DicomParams, ts: TransferSyntax) -> Value {
    let samples = usize::from(p.samples_per_pixel.clamp(1, 4));
    let values = stored_values(p, samples);
    let per_frame = (usize::from(p.rows) * usize::from(p.columns) * samples).max(1);
    let frames = usize::from(p.frames.max(1));
    let mut streams: Vec<Vec<u8>> = (0..frames)
        .map(|f| {
            let frame = values.get(f * per_frame..(f + 1) * per_frame).unwrap_or(&[]);
            match ts {
                TransferSyntax::RleLossless => rle(p, frame, samples),
                t if t.jpeg() => jpeg(p, ts, frame, samples),
                _ => j2k(p, ts, frame, samples),
            }
        })
        .collect();
    if let Some(last) = streams.last_mut() {
        resize(last, p.pixel_data_delta);
    }
    let mut table = Vec::new();
    let mut fragments = Vec::new();
    let mut offset = 0u32;
    for stream in streams {
        table.extend_from_slice(&offset.to_le_bytes());
        let n = usize::from(p.codec.fragments_per_frame.max(1));
        let size = stream.len().div_ceil(n).max(1);
        let size = size + size % 2;
        for chunk in stream.chunks(size) {
            let mut f = chunk.to_vec();
            if p.odd_length_padding && f.len() % 2 == 1 {
                f.push(0);
            }
            offset += 8 + f.len() as u32;
            fragments.push(f);
        }
    }
    if !p.codec.basic_offset_table {
        table.clear();
    }
    Value::Encapsulated(table, fragments)
}

// ------------------------------------------------------------------------- RLE

fn packbits(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        let mut run = 1;
        while i + run < data.len() && run < 128 && data[i + run] == data[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((257 - run) as u8);
            out.push(data[i]);
            i += run;
            continue;
        }
        let start = i;
        while i < data.len() && i - start < 128 {
            if i + 1 < data.len() && data[i + 1] == data[i] {
                break;
            }
            i += 1;
        }
        if i == start {
            i += 1;
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&data[start..i]);
    }
}

/// One RLE frame (PS3.5 Annex G): a header of segment offsets, then one
/// PackBits segment per byte of each sample, most significant byte first.
fn rle(p: &DicomParams, frame: &[u32], samples: usize) -> Vec<u8> {
    let bytes = usize::from((p.bits_allocated / 8).clamp(1, 4));
    let segments = (samples * bytes).min(15);
    let mut body = Vec::new();
    let mut offsets = Vec::new();
    for seg in 0..segments {
        let (sample, byte) = (seg / bytes, seg % bytes);
        let shift = 8 * (bytes - 1 - byte);
        let plane: Vec<u8> = frame.iter().skip(sample).step_by(samples).map(|&v| (v >> shift) as u8).collect();
        offsets.push(64 + body.len() as u32);
        packbits(&plane, &mut body);
        if body.len() % 2 == 1 {
            body.push(0);
        }
    }
    if let Some(raw) = &p.codec.entropy_bytes {
        body.extend_from_slice(raw);
    }
    let mut out = Vec::with_capacity(64 + body.len());
    out.extend_from_slice(&(segments as u32).to_le_bytes());
    for i in 0..15 {
        out.extend_from_slice(&offsets.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    out.extend_from_slice(&body);
    out
}

// ------------------------------------------------------------------------ JPEG

struct Bits {
    out: Vec<u8>,
    acc: u8,
    n: u8,
}

impl Bits {
    fn new() -> Self {
        Self { out: Vec::new(), acc: 0, n: 0 }
    }

    fn put(&mut self, code: u32, len: u8) {
        for i in (0..len).rev() {
            self.acc = (self.acc << 1) | ((code >> i) & 1) as u8;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc);
                if self.acc == 0xFF {
                    self.out.push(0);
                }
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// Pads the last byte with one bits.
    fn flush(&mut self) {
        while self.n != 0 {
            self.put(1, 1);
        }
    }
}

/// A Huffman table: the number of codes of each length 1–16 and the symbols.
struct Huffman {
    counts: [u8; 16],
    symbols: Vec<u8>,
    codes: [(u32, u8); 256],
}

impl Huffman {
    fn new(counts: [u8; 16], symbols: Vec<u8>) -> Self {
        let mut codes = [(0u32, 0u8); 256];
        let (mut code, mut k) = (0u32, 0usize);
        for (len, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                codes[usize::from(symbols[k])] = (code, len as u8 + 1);
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        Self { counts, symbols, codes }
    }

    /// DC (or lossless) differences, categories 0–16: fifteen 4-bit codes
    /// (0000–1110), one 5-bit code (11110) and one 6-bit code (111110), so
    /// that no code is all ones.
    fn dc() -> Self {
        let mut counts = [0u8; 16];
        counts[3] = 15;
        counts[4] = 1;
        counts[5] = 1;
        Self::new(counts, (0..=16).collect())
    }

    /// AC coefficients of a DC-only block: end of block, and ZRL.
    fn ac() -> Self {
        let mut counts = [0u8; 16];
        counts[0] = 1;
        counts[1] = 1;
        Self::new(counts, vec![0x00, 0xF0])
    }

    fn segment(&self, class_id: u8, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xFF, 0xC4]);
        out.extend_from_slice(&((2 + 1 + 16 + self.symbols.len()) as u16).to_be_bytes());
        out.push(class_id);
        out.extend_from_slice(&self.counts);
        out.extend_from_slice(&self.symbols);
    }

    fn put(&self, bits: &mut Bits, symbol: u8) {
        let (code, len) = self.codes[usize::from(symbol)];
        bits.put(code, len);
    }
}

/// A difference as its category and extra bits (ITU T.81 F.1.2.1 / H.1.2.2).
fn put_difference(bits: &mut Bits, table: &Huffman, d: i32) {
    let magnitude = d.unsigned_abs();
    let category = 32 - magnitude.leading_zeros();
    table.put(bits, category as u8);
    if category > 0 && category < 16 {
        let extra = if d < 0 { (d - 1) as u32 } else { d as u32 } & ((1 << category) - 1);
        bits.put(extra, category as u8);
    }
}

fn marker_segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn jpeg(p: &DicomParams, ts: TransferSyntax, frame: &[u32], samples: usize) -> Vec<u8> {
    let lossless = matches!(ts, TransferSyntax::JpegLossless | TransferSyntax::JpegLosslessSv1);
    let precision: u8 = if lossless {
        p.bits_stored.clamp(2, 16) as u8
    } else if ts == TransferSyntax::JpegExtended && p.bits_allocated > 8 {
        12
    } else {
        8
    };
    let (rows, cols) = (usize::from(p.rows), usize::from(p.columns));
    let components = samples.min(4);
    let c = &p.codec;
    let too_large = rows * cols * components > MAX_SAMPLES;
    let (h0, v0) = match (lossless, components, c.jpeg_subsampling) {
        (false, 3, 1) => (2u8, 1u8),
        (false, 3, 2) => (2, 2),
        _ => (1, 1),
    };
    let sampling = |i: usize| if i == 0 { (h0, v0) } else { (1, 1) };
    let mut out = vec![0xFF, 0xD8];
    if c.jpeg_jfif {
        marker_segment(&mut out, 0xE0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0");
    }
    if let Some(t) = c.jpeg_adobe_transform {
        marker_segment(&mut out, 0xEE, &[b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, t]);
    }
    let dc = Huffman::dc();
    if !lossless {
        let mut dqt = vec![0u8];
        dqt.extend_from_slice(&[1u8; 64]);
        marker_segment(&mut out, 0xDB, &dqt);
    }
    dc.segment(0x00, &mut out);
    let ac = Huffman::ac();
    if !lossless {
        ac.segment(0x10, &mut out);
    }
    let restart = if lossless { 0 } else { usize::from(c.jpeg_restart_interval) };
    if restart > 0 {
        marker_segment(&mut out, 0xDD, &(restart as u16).to_be_bytes());
    }
    let sof = if lossless {
        0xC3
    } else if ts == TransferSyntax::JpegBaseline {
        0xC0
    } else {
        0xC1
    };
    let mut frame_header = vec![precision];
    frame_header.extend_from_slice(&(rows as u16).to_be_bytes());
    frame_header.extend_from_slice(&(cols as u16).to_be_bytes());
    frame_header.push(components as u8);
    for i in 0..components {
        let (h, v) = sampling(i);
        frame_header.extend_from_slice(&[i as u8 + 1, (h << 4) | v, 0]);
    }
    marker_segment(&mut out, sof, &frame_header);
    let mut scan = vec![components as u8];
    for i in 0..components {
        scan.extend_from_slice(&[i as u8 + 1, 0x00]);
    }
    if lossless {
        scan.extend_from_slice(&[c.jpeg_predictor.clamp(1, 7), 0, c.jpeg_point_transform.min(15)]);
    } else {
        scan.extend_from_slice(&[0, 63, 0]);
    }
    marker_segment(&mut out, 0xDA, &scan);
    let sample = |x: usize, y: usize, s: usize| -> i32 {
        let (x, y) = (x.min(cols.saturating_sub(1)), y.min(rows.saturating_sub(1)));
        let v = frame.get((y * cols + x) * samples + s).copied().unwrap_or(0);
        (v & ((1u32 << precision) - 1)) as i32
    };
    let entropy = if let Some(raw) = &c.entropy_bytes {
        raw.clone()
    } else if too_large {
        Vec::new()
    } else if lossless {
        lossless_scan(
            &dc,
            rows,
            cols,
            components,
            precision,
            c.jpeg_predictor.clamp(1, 7),
            c.jpeg_point_transform.min(15),
            &sample,
        )
    } else {
        let (hmax, vmax) = (usize::from(h0), usize::from(v0));
        let (mcu_w, mcu_h) = (8 * hmax, 8 * vmax);
        let (mcus_x, mcus_y) = if components == 1 {
            (cols.div_ceil(8), rows.div_ceil(8))
        } else {
            (cols.div_ceil(mcu_w), rows.div_ceil(mcu_h))
        };
        let mut bits = Bits::new();
        let mut pred = vec![0i32; components];
        let shift = 1i32 << (precision - 1);
        let mut rst = 0u8;
        for m in 0..mcus_x * mcus_y {
            if restart > 0 && m > 0 && m % restart == 0 {
                bits.flush();
                bits.out.extend_from_slice(&[0xFF, 0xD0 + rst]);
                rst = (rst + 1) % 8;
                pred.iter_mut().for_each(|p| *p = 0);
            }
            let (mx, my) = (m % mcus_x, m / mcus_x);
            for comp in 0..components {
                let (h, v) = if components == 1 {
                    (1, 1)
                } else {
                    (usize::from(sampling(comp).0), usize::from(sampling(comp).1))
                };
                // Full-resolution pixels per component sample.
                let (sx, sy) = if components == 1 { (1, 1) } else { (hmax / h, vmax / v) };
                for by in 0..v {
                    for bx in 0..h {
                        let (x0, y0) = ((mx * h + bx) * 8, (my * v + by) * 8);
                        let mut sum = 0i64;
                        for y in 0..8 {
                            for x in 0..8 {
                                sum += i64::from(sample((x0 + x) * sx, (y0 + y) * sy, comp));
                            }
                        }
                        // The DCT's DC coefficient is 8 × the mean (quantiser 1).
                        let dc_value = ((sum as f64 / 8.0).round() as i32) - 8 * shift;
                        put_difference(&mut bits, &dc, dc_value - pred[comp]);
                        pred[comp] = dc_value;
                        ac.put(&mut bits, 0x00);
                    }
                }
            }
        }
        bits.flush();
        bits.out
    };
    out.extend_from_slice(&entropy);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A lossless (process 14) scan: H = V = 1, interleaved, no restarts.
#[allow(clippy::too_many_arguments)]
fn lossless_scan(
    table: &Huffman,
    rows: usize,
    cols: usize,
    components: usize,
    precision: u8,
    predictor: u8,
    point_transform: u8,
    sample: &dyn Fn(usize, usize, usize) -> i32,
) -> Vec<u8> {
    let pt = u32::from(point_transform.min(precision - 1));
    let value = |x: usize, y: usize, c: usize| sample(x, y, c) >> pt;
    let mut bits = Bits::new();
    for y in 0..rows {
        for x in 0..cols {
            for c in 0..components {
                let prediction = if x == 0 && y == 0 {
                    1i32 << (u32::from(precision) - pt - 1)
                } else if y == 0 {
                    value(x - 1, y, c)
                } else if x == 0 {
                    value(x, y - 1, c)
                } else {
                    let (ra, rb, rc) = (value(x - 1, y, c), value(x, y - 1, c), value(x - 1, y - 1, c));
                    match predictor {
                        1 => ra,
                        2 => rb,
                        3 => rc,
                        4 => ra + rb - rc,
                        5 => ra + ((rb - rc) >> 1),
                        6 => rb + ((ra - rc) >> 1),
                        _ => (ra + rb) >> 1,
                    }
                };
                let mut d = (value(x, y, c) - prediction) & 0xFFFF;
                if d > 32768 {
                    d -= 65536;
                }
                put_difference(&mut bits, table, d);
            }
        }
    }
    bits.flush();
    bits.out
}

// ------------------------------------------------------------------- JPEG 2000

/// A JPEG 2000 codestream whose packets are all empty (every coefficient
/// zero, so the image is the DC level), or carry the fuzz input's bytes.
fn j2k(p: &DicomParams, ts: TransferSyntax, _frame: &[u32], samples: usize) -> Vec<u8> {
    let c = &p.codec;
    let (rows, cols) = (u32::from(p.rows), u32::from(p.columns));
    let components = samples.clamp(1, 4);
    let precision = p.bits_stored.clamp(1, 38) as u8;
    let signed = p.pixel_representation == 1;
    let reversible = c.j2k_reversible || ts == TransferSyntax::Jpeg2000Lossless;
    let levels = c.j2k_levels.min(32);
    let mut cs = vec![0xFF, 0x4F];
    let mut siz = vec![0, 0];
    for v in [cols, rows, 0, 0, cols, rows, 0, 0] {
        siz.extend_from_slice(&v.to_be_bytes());
    }
    siz.extend_from_slice(&(components as u16).to_be_bytes());
    for _ in 0..components {
        siz.extend_from_slice(&[(u8::from(signed) << 7) | (precision - 1), 1, 1]);
    }
    marker_segment(&mut cs, 0x51, &siz);
    let mct = u8::from(c.j2k_mct && components == 3);
    marker_segment(&mut cs, 0x52, &[0, 0, 0, 1, mct, levels, 4, 4, 0, u8::from(reversible)]);
    let subbands = 1 + 3 * usize::from(levels);
    let mut qcd = Vec::new();
    let gain = |b: usize| if b == 0 { 0 } else { [1, 1, 2][(b - 1) % 3] };
    if reversible {
        qcd.push(0x40);
        for b in 0..subbands {
            qcd.push(((precision + gain(b)).min(31)) << 3);
        }
    } else {
        qcd.push(0x42);
        for b in 0..subbands {
            let exponent = u16::from((precision + gain(b)).min(31));
            qcd.extend_from_slice(&(exponent << 11).to_be_bytes());
        }
    }
    marker_segment(&mut cs, 0x5C, &qcd);
    let packets: Vec<u8> = match &c.entropy_bytes {
        Some(raw) => raw.clone(),
        None => vec![0u8; components * (usize::from(levels) + 1)],
    };
    let psot = (12 + 2 + packets.len()) as u32;
    let mut sot = vec![0, 0];
    sot.extend_from_slice(&psot.to_be_bytes());
    sot.extend_from_slice(&[0, 1]);
    marker_segment(&mut cs, 0x90, &sot);
    cs.extend_from_slice(&[0xFF, 0x93]);
    cs.extend_from_slice(&packets);
    cs.extend_from_slice(&[0xFF, 0xD9]);
    if !c.j2k_jp2 {
        return cs;
    }
    let boxed = |kind: &[u8; 4], body: &[u8]| {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    };
    let mut jp2 = boxed(b"jP  ", &[0x0D, 0x0A, 0x87, 0x0A]);
    jp2.extend(boxed(b"ftyp", b"jp2 \0\0\0\0jp2 "));
    let mut ihdr = rows.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&cols.to_be_bytes());
    ihdr.extend_from_slice(&(components as u16).to_be_bytes());
    ihdr.extend_from_slice(&[(u8::from(signed) << 7) | (precision - 1), 7, 0, 0]);
    let mut header = boxed(b"ihdr", &ihdr);
    let space: u32 = if components == 3 { 16 } else { 17 };
    let mut colr = vec![1, 0, 0];
    colr.extend_from_slice(&space.to_be_bytes());
    header.extend(boxed(b"colr", &colr));
    jp2.extend(boxed(b"jp2h", &header));
    jp2.extend(boxed(b"jp2c", &cs));
    jp2
}
