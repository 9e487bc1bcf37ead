//! A bounded, zero-copy reader for DICOM files: the file meta group, then the
//! top-level elements of the data set up to and including Pixel Data.
//!
//! Three starts are read (see [`start`]): a Part 10 file (128-byte preamble,
//! "DICM", file meta group); a file meta group at byte 0 without the preamble;
//! and a bare data set without file meta information (ACR-NEMA style files and
//! raw data sets some archives export) when its first element is a plausible
//! group 0008 element, in the encoding that element shows, as pydicom
//! (`dcmread(force=True)`) and dcmtk read such files.
//!
//! Every declared length is checked against the bytes that remain before it is
//! used, so a truncated file or a wrong value length is an error naming the
//! element and its byte offset, never an out-of-bounds read or an allocation
//! sized by the file. Sequences are skipped (their contents are never needed),
//! with a nesting limit. Only the attributes in [`WANTED`] are kept;
//! patient-identifying ones are never even looked at.
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

use std::collections::BTreeMap;

pub type PResult<T> = std::result::Result<T, String>;

/// A tag as `(group << 16) | element`.
pub type Tag = u32;

pub const fn tag(group: u16, element: u16) -> Tag {
    let [g0, g1] = group.to_be_bytes();
    let [e0, e1] = element.to_be_bytes();
    u32::from_be_bytes([g0, g1, e0, e1])
}

pub const fn group(t: Tag) -> u16 {
    let [g0, g1, _, _] = t.to_be_bytes();
    u16::from_be_bytes([g0, g1])
}

pub const fn element(t: Tag) -> u16 {
    let [_, _, e0, e1] = t.to_be_bytes();
    u16::from_be_bytes([e0, e1])
}

pub const TRANSFER_SYNTAX: Tag = tag(0x0002, 0x0010);
pub const MODALITY: Tag = tag(0x0008, 0x0060);
pub const BODY_PART: Tag = tag(0x0018, 0x0015);
pub const SAMPLES_PER_PIXEL: Tag = tag(0x0028, 0x0002);
pub const PHOTOMETRIC: Tag = tag(0x0028, 0x0004);
pub const PLANAR_CONFIGURATION: Tag = tag(0x0028, 0x0006);
pub const NUMBER_OF_FRAMES: Tag = tag(0x0028, 0x0008);
pub const ROWS: Tag = tag(0x0028, 0x0010);
pub const COLUMNS: Tag = tag(0x0028, 0x0011);
pub const BITS_ALLOCATED: Tag = tag(0x0028, 0x0100);
pub const BITS_STORED: Tag = tag(0x0028, 0x0101);
pub const HIGH_BIT: Tag = tag(0x0028, 0x0102);
pub const PIXEL_REPRESENTATION: Tag = tag(0x0028, 0x0103);
pub const WINDOW_CENTER: Tag = tag(0x0028, 0x1050);
pub const WINDOW_WIDTH: Tag = tag(0x0028, 0x1051);
pub const WINDOW_EXPLANATION: Tag = tag(0x0028, 0x1055);
pub const RESCALE_INTERCEPT: Tag = tag(0x0028, 0x1052);
pub const RESCALE_SLOPE: Tag = tag(0x0028, 0x1053);
pub const PALETTE_DESCRIPTORS: [Tag; 3] = [tag(0x0028, 0x1101), tag(0x0028, 0x1102), tag(0x0028, 0x1103)];
pub const PALETTE_DATA: [Tag; 3] = [tag(0x0028, 0x1201), tag(0x0028, 0x1202), tag(0x0028, 0x1203)];
pub const SEGMENTED_PALETTE_DATA: [Tag; 3] = [tag(0x0028, 0x1221), tag(0x0028, 0x1222), tag(0x0028, 0x1223)];
pub const FLOAT_PIXEL_DATA: Tag = tag(0x7FE0, 0x0008);
pub const DOUBLE_PIXEL_DATA: Tag = tag(0x7FE0, 0x0009);
pub const PIXEL_DATA: Tag = tag(0x7FE0, 0x0010);

const ITEM: Tag = tag(0xFFFE, 0xE000);
const ITEM_END: Tag = tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = tag(0xFFFE, 0xE0DD);
const UNDEFINED: u32 = 0xFFFF_FFFF;
const MAX_DEPTH: usize = 32;

/// The transfer syntax UIDs of the three uncompressed encodings.
pub const IMPLICIT_LITTLE_UID: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_LITTLE_UID: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_BIG_UID: &str = "1.2.840.10008.1.2.2";

/// The only top-level attributes kept (image description and display; no
/// patient, study or institution attribute is on this list).
const WANTED: &[Tag] = &[
    MODALITY,
    BODY_PART,
    SAMPLES_PER_PIXEL,
    PHOTOMETRIC,
    PLANAR_CONFIGURATION,
    NUMBER_OF_FRAMES,
    ROWS,
    COLUMNS,
    BITS_ALLOCATED,
    BITS_STORED,
    HIGH_BIT,
    PIXEL_REPRESENTATION,
    WINDOW_CENTER,
    WINDOW_WIDTH,
    WINDOW_EXPLANATION,
    RESCALE_INTERCEPT,
    RESCALE_SLOPE,
    PALETTE_DESCRIPTORS[0],
    PALETTE_DESCRIPTORS[1],
    PALETTE_DESCRIPTORS[2],
    PALETTE_DATA[0],
    PALETTE_DATA[1],
    PALETTE_DATA[2],
    SEGMENTED_PALETTE_DATA[0],
    SEGMENTED_PALETTE_DATA[1],
    SEGMENTED_PALETTE_DATA[2],
    FLOAT_PIXEL_DATA,
    DOUBLE_PIXEL_DATA,
];

/// The value representations of PS3.5 Table 6.2-1.
const STANDARD_VRS: &[[u8; 2]] = &[
    *b"AE", *b"AS", *b"AT", *b"CS", *b"DA", *b"DS", *b"DT", *b"FD", *b"FL", *b"IS", *b"LO", *b"LT", *b"OB", *b"OD",
    *b"OF", *b"OL", *b"OV", *b"OW", *b"PN", *b"SH", *b"SL", *b"SQ", *b"SS", *b"ST", *b"SV", *b"TM", *b"UC", *b"UI",
    *b"UL", *b"UN", *b"UR", *b"US", *b"UT", *b"UV",
];

pub fn tag_name(t: Tag) -> String {
    let name = match t {
        MODALITY => "Modality",
        BODY_PART => "Body Part Examined",
        SAMPLES_PER_PIXEL => "Samples per Pixel",
        PHOTOMETRIC => "Photometric Interpretation",
        PLANAR_CONFIGURATION => "Planar Configuration",
        NUMBER_OF_FRAMES => "Number of Frames",
        ROWS => "Rows",
        COLUMNS => "Columns",
        BITS_ALLOCATED => "Bits Allocated",
        BITS_STORED => "Bits Stored",
        HIGH_BIT => "High Bit",
        PIXEL_REPRESENTATION => "Pixel Representation",
        WINDOW_CENTER => "Window Center",
        WINDOW_WIDTH => "Window Width",
        WINDOW_EXPLANATION => "Window Center & Width Explanation",
        RESCALE_INTERCEPT => "Rescale Intercept",
        RESCALE_SLOPE => "Rescale Slope",
        PIXEL_DATA => "Pixel Data",
        TRANSFER_SYNTAX => "Transfer Syntax UID",
        ITEM => "Item",
        ITEM_END => "Item Delimitation Item",
        SEQUENCE_END => "Sequence Delimitation Item",
        t if PALETTE_DESCRIPTORS.contains(&t) => "Palette Color Lookup Table Descriptor",
        t if PALETTE_DATA.contains(&t) => "Palette Color Lookup Table Data",
        _ => "element",
    };
    format!("{name} ({:04X},{:04X})", group(t), element(t))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
}

impl Encoding {
    pub fn big_endian(self) -> bool {
        self == Encoding::ExplicitBig
    }

    /// The transfer syntax UID of this encoding without compression.
    pub fn uid(self) -> &'static str {
        match self {
            Encoding::ImplicitLittle => IMPLICIT_LITTLE_UID,
            Encoding::ExplicitLittle => EXPLICIT_LITTLE_UID,
            Encoding::ExplicitBig => EXPLICIT_BIG_UID,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::ImplicitLittle => "implicit VR little endian",
            Encoding::ExplicitLittle => "explicit VR little endian",
            Encoding::ExplicitBig => "explicit VR big endian",
        }
    }
}

/// Where a data set's bytes come from, so that messages give byte offsets in
/// the file (or, for a deflated data set, in its inflated stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A slice of the file starting at this byte.
    File(usize),
    /// The inflated stream of a deflated data set.
    Inflated,
}

impl Origin {
    /// "at byte N" for position `pos` of the data set's buffer.
    pub fn at(self, pos: usize) -> String {
        match self {
            // Both are offsets into one in-memory file, so the sum cannot saturate.
            Origin::File(base) => format!("at byte {}", base.saturating_add(pos)),
            Origin::Inflated => format!("at byte {pos} of the inflated data set"),
        }
    }
}

/// One kept element: its VR (`b"  "` under implicit VR), value bytes, and the
/// position of its header in the data set's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    pub vr: [u8; 2],
    pub bytes: &'a [u8],
    pub at: usize,
}

#[derive(Debug, Clone)]
pub enum PixelData<'a> {
    /// Native (uncompressed) pixel data, with its VR and the position of its header.
    Native { vr: [u8; 2], bytes: &'a [u8], at: usize },
    /// Encapsulated pixel data: the Basic Offset Table and the fragments.
    Encapsulated { offset_table: &'a [u8], fragments: Vec<Fragment<'a>> },
}

#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    /// Offset of the item header from the first fragment's item header, as the
    /// Basic Offset Table counts.
    pub offset: usize,
    pub bytes: &'a [u8],
}

/// How a file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// 128-byte preamble, "DICM", then the file meta group (DICOM Part 10).
    Part10,
    /// The file meta group at byte 0, without preamble or marker.
    MetaWithoutPreamble,
    /// No file meta information: a data set from byte 0, in this encoding.
    DataSet(Encoding),
}

/// The file meta information: the transfer syntax and where the data set starts.
#[derive(Debug, Clone)]
pub struct Meta {
    pub transfer_syntax: String,
    pub dataset_start: usize,
    pub start: Start,
}

pub struct DataSet<'a> {
    pub encoding: Encoding,
    pub origin: Origin,
    pub values: BTreeMap<Tag, Value<'a>>,
    pub pixel_data: Option<PixelData<'a>>,
}

/// Whether `bytes` carry the Part 10 marker "DICM" after the 128-byte preamble.
pub fn has_dicm_marker(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM".as_slice())
}

/// How `bytes` start, when they start like DICOM at all: the Part 10 marker; a
/// file meta element (group 0002, explicit VR little endian) at byte 0; or a
/// plausible group 0008 element at byte 0 (see [`data_set_encoding`]).
pub fn start(bytes: &[u8]) -> Option<Start> {
    if has_dicm_marker(bytes) {
        return Some(Start::Part10);
    }
    if starts_with_meta_element(bytes) {
        return Some(Start::MetaWithoutPreamble);
    }
    data_set_encoding(bytes).map(Start::DataSet)
}

fn u16_of(b: [u8; 2], big: bool) -> u16 {
    if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn u32_of(b: [u8; 4], big: bool) -> u32 {
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// VRs whose explicit-VR header has two reserved bytes and a 32-bit length.
fn long_vr(vr: [u8; 2]) -> bool {
    matches!(&vr, b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV")
}

fn starts_with_meta_element(bytes: &[u8]) -> bool {
    let mut reader = Reader::new(bytes, Encoding::ExplicitLittle, Origin::File(0));
    matches!(reader.header(), Ok(Some(h)) if group(h.tag) == 0x0002 && STANDARD_VRS.contains(&h.vr))
}

/// The encoding of a data set without file meta information whose first
/// element is a plausible group 0008 element. As pydicom (`dcmread(force=True)`)
/// and dcmtk decide: explicit VR when bytes 4–5 are a standard VR, big endian
/// when the group reads 0008 only that way, implicit VR little endian otherwise.
/// Plausible means: group 0008 in that encoding, a group length (element 0000)
/// of 4 bytes, a value that fits in the bytes present, and, when another
/// element follows, a greater tag with a valid header in the same encoding.
pub fn data_set_encoding(bytes: &[u8]) -> Option<Encoding> {
    [Encoding::ExplicitLittle, Encoding::ExplicitBig, Encoding::ImplicitLittle]
        .into_iter()
        .find(|&encoding| plausible_data_set_start(bytes, encoding))
}

fn plausible_data_set_start(bytes: &[u8], encoding: Encoding) -> bool {
    let explicit = encoding != Encoding::ImplicitLittle;
    let valid = |h: &Header| !explicit || STANDARD_VRS.contains(&h.vr);
    let mut reader = Reader::new(bytes, encoding, Origin::File(0));
    let Ok(Some(first)) = reader.header() else { return false };
    if group(first.tag) != 0x0008 || !valid(&first) || (element(first.tag) == 0 && first.length != 4) {
        return false;
    }
    if first.length == UNDEFINED {
        // A sequence: its items would have to be parsed to see past it.
        return !explicit || first.vr == *b"SQ";
    }
    if reader.take(first.length, &first).is_err() {
        return false;
    }
    match reader.header() {
        Ok(None) => true,
        Ok(Some(next)) => next.tag > first.tag && group(next.tag) != 0xFFFE && valid(&next),
        Err(_) => false,
    }
}

/// Whether two bytes are a VR as pydicom tells one (`filereader._is_implicit_vr`):
/// both upper-case ASCII letters.
fn looks_like_vr(b0: u8, b1: u8) -> bool {
    b0.is_ascii_uppercase() && b1.is_ascii_uppercase()
}

/// The encoding a data set is really in, given the one its transfer syntax
/// declares, and a warning when they differ.
///
/// Implicit against explicit VR is decided as pydicom 3 decides it
/// (`filereader._is_implicit_vr`): bytes 4–5 of the first element are a VR when
/// both are upper-case letters (a 32-bit implicit length would have to exceed
/// 16 kB to look like one). Byte order is changed only where it can be told
/// apart: an explicit VR first element whose group reads above 00FF in the
/// declared order, at most 00FF in the other, and whose header and next element
/// are plausible in the other order (the test pydicom applies to data sets
/// without a transfer syntax). Otherwise the declared encoding stands, and a
/// corrupt data set is reported where it fails, naming the element and offset.
pub fn actual_encoding(data: &[u8], declared: Encoding, declared_name: &str) -> (Encoding, Option<String>) {
    let Some(&[g0, g1, _, _, v0, v1]) = data.first_chunk::<6>() else { return (declared, None) };
    let explicit = looks_like_vr(v0, v1);
    let actual = if !explicit {
        Encoding::ImplicitLittle
    } else {
        let big = declared.big_endian();
        let (here, there) = (u16_of([g0, g1], big), u16_of([g0, g1], !big));
        let other = if big { Encoding::ExplicitLittle } else { Encoding::ExplicitBig };
        if here > 0x00FF && there <= 0x00FF && plausible_first_element(data, other) {
            other
        } else if declared == Encoding::ImplicitLittle {
            Encoding::ExplicitLittle
        } else {
            declared
        }
    };
    if actual == declared {
        return (declared, None);
    }
    let warning = format!(
        "the data set is encoded in {} although the transfer syntax {declared_name} says {}; read as {} \
         (as pydicom and dcmtk read such files)",
        actual.name(),
        declared.name(),
        actual.name()
    );
    (actual, Some(warning))
}

/// Whether the data set's first element (any group) reads as a whole element in
/// `encoding`, followed by nothing or by an element with a greater tag.
fn plausible_first_element(bytes: &[u8], encoding: Encoding) -> bool {
    let mut reader = Reader::new(bytes, encoding, Origin::File(0));
    let Ok(Some(first)) = reader.header() else { return false };
    if first.length != UNDEFINED && reader.take(first.length, &first).is_err() {
        return false;
    }
    if first.length == UNDEFINED {
        return true;
    }
    match reader.header() {
        Ok(None) => true,
        Ok(Some(next)) => next.tag > first.tag,
        Err(_) => false,
    }
}

/// Why bytes that do not start like DICOM are refused.
fn not_dicom(bytes: &[u8]) -> String {
    let what = if bytes.len() < 132 {
        format!("{} bytes, too short for the 128-byte preamble and \"DICM\" marker", bytes.len())
    } else {
        "no \"DICM\" marker at byte 128".to_string()
    };
    format!(
        "not a DICOM file: {what}, and the bytes do not start with a file meta element (group 0002) or a \
         data set element of group 0008 (as ACR-NEMA files and raw data sets do)"
    )
}

/// Reads the file meta group (always explicit VR little endian), or, for a data
/// set without one, gives the transfer syntax of the encoding found.
pub fn parse_meta(bytes: &[u8]) -> PResult<Meta> {
    let (meta_at, start) = match start(bytes) {
        Some(start @ Start::Part10) => (132, start),
        Some(start @ Start::MetaWithoutPreamble) => (0, start),
        Some(start @ Start::DataSet(encoding)) => {
            return Ok(Meta { transfer_syntax: encoding.uid().to_string(), dataset_start: 0, start })
        }
        None => return Err(not_dicom(bytes)),
    };
    let mut reader = Reader::new(bytes, Encoding::ExplicitLittle, Origin::File(0));
    reader.pos = meta_at;
    let mut transfer_syntax = None;
    // The meta group ends where group 0002 ends.
    while let Some(&[g0, g1]) = reader.rest().first_chunk::<2>() {
        if u16::from_le_bytes([g0, g1]) != 0x0002 {
            break;
        }
        let at = reader.pos;
        let header = reader
            .header()?
            .ok_or_else(|| format!("the file meta information is truncated {}", reader.origin.at(at)))?;
        if header.length == UNDEFINED {
            return Err(format!(
                "the file meta element {} {} has an undefined length",
                tag_name(header.tag),
                reader.origin.at(header.at)
            ));
        }
        let value = reader.take(header.length, &header)?;
        if header.tag == TRANSFER_SYNTAX {
            transfer_syntax = Some(text(value));
        }
    }
    let transfer_syntax = transfer_syntax
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "the file meta information has no Transfer Syntax UID (0002,0010)".to_string())?;
    if !transfer_syntax.bytes().all(|c| c.is_ascii_digit() || c == b'.') || transfer_syntax.len() > 64 {
        return Err("the Transfer Syntax UID (0002,0010) is not a valid UID".to_string());
    }
    Ok(Meta { transfer_syntax, dataset_start: reader.pos, start })
}

/// A string value without its padding (trailing spaces or NULs, leading spaces).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_matches(|c: char| c == '\0' || c == ' ').to_string()
}

#[derive(Debug, Clone, Copy)]
struct Header {
    tag: Tag,
    vr: [u8; 2],
    length: u32,
    /// Byte offset of the header in the buffer (for messages).
    at: usize,
}

struct Reader<'a> {
    data: &'a [u8],
    /// Never beyond `data.len()`: it only moves through [`Reader::set_rest`].
    pos: usize,
    encoding: Encoding,
    origin: Origin,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], encoding: Encoding, origin: Origin) -> Self {
        Self { data, pos: 0, encoding, origin }
    }

    /// The bytes not read yet.
    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    /// Moves to the start of `tail`, a suffix of `data` (so the subtraction
    /// cannot saturate).
    fn set_rest(&mut self, tail: &'a [u8]) {
        self.pos = self.data.len().saturating_sub(tail.len());
    }

    fn at(&self, pos: usize) -> String {
        self.origin.at(pos)
    }

    /// The next element header, or `None` at the end of the buffer.
    fn header(&mut self) -> PResult<Option<Header>> {
        let at = self.pos;
        let rest = self.rest();
        if rest.is_empty() {
            return Ok(None);
        }
        let Some((&head, tail)) = rest.split_first_chunk::<8>() else {
            if rest.iter().all(|&b| b == 0) {
                // Trailing zero padding.
                self.set_rest(&[]);
                return Ok(None);
            }
            return Err(format!(
                "truncated: {} stray bytes {} at the end where an element header should be",
                rest.len(),
                self.at(at)
            ));
        };
        let big = self.encoding.big_endian();
        let [g0, g1, e0, e1, b4, b5, b6, b7] = head;
        let t = tag(u16_of([g0, g1], big), u16_of([e0, e1], big));
        // Items and delimiters (group FFFE) have no VR, in every encoding.
        if group(t) == 0xFFFE || self.encoding == Encoding::ImplicitLittle {
            self.set_rest(tail);
            return Ok(Some(Header { tag: t, vr: *b"  ", length: u32_of([b4, b5, b6, b7], big), at }));
        }
        let vr = [b4, b5];
        if !vr.iter().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "invalid value representation bytes {b4:02X} {b5:02X} for {} {} (corrupt file or wrong transfer \
                 syntax)",
                tag_name(t),
                self.at(at)
            ));
        }
        if !long_vr(vr) {
            self.set_rest(tail);
            return Ok(Some(Header { tag: t, vr, length: u32::from(u16_of([b6, b7], big)), at }));
        }
        let Some((&[_, _, _, _, _, _, _, _, l0, l1, l2, l3], tail)) = rest.split_first_chunk::<12>() else {
            return Err(format!("truncated: the header of {} {} is cut off", tag_name(t), self.at(at)));
        };
        self.set_rest(tail);
        Ok(Some(Header { tag: t, vr, length: u32_of([l0, l1, l2, l3], big), at }))
    }

    /// The `length` bytes of `h`'s value, checked against what remains.
    fn take(&mut self, length: u32, h: &Header) -> PResult<&'a [u8]> {
        let rest = self.rest();
        match usize::try_from(length).ok().and_then(|n| rest.split_at_checked(n)) {
            Some((value, tail)) => {
                self.set_rest(tail);
                Ok(value)
            }
            None => Err(format!(
                "{} {} declares a value length of {length} bytes but only {} remain \
                 (truncated file or wrong value length)",
                tag_name(h.tag),
                self.at(h.at),
                rest.len()
            )),
        }
    }

    /// Skips a sequence of undefined length (its header `sq` already read).
    fn skip_sequence(&mut self, sq: &Header, depth: usize, encoding: Encoding) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "sequences are nested more than {MAX_DEPTH} deep at {} {}",
                tag_name(sq.tag),
                self.at(sq.at)
            ));
        }
        let saved = self.encoding;
        self.encoding = encoding;
        let result = (|| loop {
            let h = self.header()?.ok_or_else(|| {
                format!("truncated inside {} {} (no sequence delimiter)", tag_name(sq.tag), self.at(sq.at))
            })?;
            match h.tag {
                SEQUENCE_END => return Ok(()),
                // `depth` is at most MAX_DEPTH here: the increments cannot overflow.
                ITEM if h.length == UNDEFINED => self.skip_item(&h, depth.saturating_add(1))?,
                ITEM => {
                    self.take(h.length, &h)?;
                }
                other => {
                    return Err(format!(
                        "expected an item inside {} {}, found {} {}",
                        tag_name(sq.tag),
                        self.at(sq.at),
                        tag_name(other),
                        self.at(h.at)
                    ))
                }
            }
        })();
        self.encoding = saved;
        result
    }

    /// Skips the elements of an item of undefined length, up to its delimiter.
    /// An item of an explicit VR little endian data set may be in implicit VR
    /// (PS3.5 6.2.2, as pydicom reads it): its first element says which.
    fn skip_item(&mut self, item: &Header, depth: usize) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences are nested more than {MAX_DEPTH} deep {}", self.at(item.at)));
        }
        let saved = self.encoding;
        if let Some(&[_, _, _, _, v0, v1]) = self.rest().first_chunk::<6>() {
            if saved == Encoding::ExplicitLittle && !looks_like_vr(v0, v1) {
                self.encoding = Encoding::ImplicitLittle;
            }
        }
        let result = self.skip_item_elements(item, depth);
        self.encoding = saved;
        result
    }

    fn skip_item_elements(&mut self, item: &Header, depth: usize) -> PResult<()> {
        loop {
            let h = self.header()?.ok_or_else(|| {
                format!("truncated inside the sequence item {} (no item delimiter)", self.at(item.at))
            })?;
            if h.tag == ITEM_END {
                return Ok(());
            }
            self.skip_value(h, depth)?;
        }
    }

    fn skip_value(&mut self, h: Header, depth: usize) -> PResult<()> {
        if h.length != UNDEFINED {
            self.take(h.length, &h)?;
            return Ok(());
        }
        // `depth` is at most MAX_DEPTH + 1 here: the increment cannot overflow.
        let deeper = depth.saturating_add(1);
        match (&h.vr, self.encoding) {
            (b"SQ", _) | (_, Encoding::ImplicitLittle) => self.skip_sequence(&h, deeper, self.encoding),
            // UN of undefined length holds a sequence in implicit VR little endian.
            (b"UN", _) => self.skip_sequence(&h, deeper, Encoding::ImplicitLittle),
            _ => Err(format!("{} {} has an undefined length but is not a sequence", tag_name(h.tag), self.at(h.at))),
        }
    }

    fn encapsulated(&mut self, pixel: &Header) -> PResult<PixelData<'a>> {
        // Items of encapsulated pixel data are always little endian.
        let saved = self.encoding;
        self.encoding = Encoding::ExplicitLittle;
        let result = (|| {
            let mut offset_table: Option<&'a [u8]> = None;
            let mut fragments = Vec::new();
            let mut first_fragment_at = None;
            loop {
                let h = self.header()?.ok_or_else(|| {
                    format!(
                        "truncated inside the encapsulated {} {} (no sequence delimiter)",
                        tag_name(pixel.tag),
                        self.at(pixel.at)
                    )
                })?;
                match h.tag {
                    SEQUENCE_END => break,
                    ITEM if h.length == UNDEFINED => {
                        return Err(format!("a Pixel Data fragment {} has an undefined length", self.at(h.at)))
                    }
                    ITEM => {
                        let bytes = self.take(h.length, &h)?;
                        if offset_table.is_none() {
                            offset_table = Some(bytes);
                        } else {
                            let start = *first_fragment_at.get_or_insert(h.at);
                            // `start` is the position of an earlier header: no underflow.
                            fragments.push(Fragment { offset: h.at.saturating_sub(start), bytes });
                        }
                    }
                    other => {
                        return Err(format!(
                            "expected a Pixel Data fragment {}, found {}",
                            self.at(h.at),
                            tag_name(other)
                        ))
                    }
                }
            }
            Ok(PixelData::Encapsulated { offset_table: offset_table.unwrap_or(&[]), fragments })
        })();
        self.encoding = saved;
        result
    }
}

/// Reads the top-level elements of a data set up to Pixel Data.
pub fn parse_dataset(data: &[u8], encoding: Encoding, origin: Origin) -> PResult<DataSet<'_>> {
    let mut reader = Reader::new(data, encoding, origin);
    let mut values = BTreeMap::new();
    let mut pixel_data = None;
    while let Some(h) = reader.header()? {
        if group(h.tag) == 0xFFFE {
            return Err(format!("unexpected {} {} of the data set", tag_name(h.tag), reader.at(h.at)));
        }
        if h.tag == PIXEL_DATA {
            if h.length == UNDEFINED {
                pixel_data = Some(reader.encapsulated(&h)?);
            } else {
                let bytes = reader.take(h.length, &h)?;
                pixel_data = Some(PixelData::Native { vr: h.vr, bytes, at: h.at });
            }
            // Nothing after Pixel Data is needed, but a truncated file should
            // not pass for a whole one: check the rest of the structure.
            while let Some(h) = reader.header()? {
                if group(h.tag) == 0xFFFE {
                    return Err(format!("unexpected {} {} of the data set", tag_name(h.tag), reader.at(h.at)));
                }
                reader.skip_value(h, 0)?;
            }
            break;
        }
        if h.length == UNDEFINED {
            reader.skip_value(h, 0)?;
            continue;
        }
        let bytes = reader.take(h.length, &h)?;
        if WANTED.contains(&h.tag) {
            values.entry(h.tag).or_insert(Value { vr: h.vr, bytes, at: h.at });
        }
    }
    Ok(DataSet { encoding, origin, values, pixel_data })
}

impl<'a> DataSet<'a> {
    pub fn get(&self, t: Tag) -> Option<Value<'a>> {
        self.values.get(&t).copied()
    }

    /// "Rows (0028,0010) at byte N": an element named with its position.
    pub fn describe(&self, t: Tag) -> String {
        match self.get(t) {
            Some(v) => format!("{} {}", tag_name(t), self.origin.at(v.at)),
            None => tag_name(t),
        }
    }

    /// A US/SS value of multiplicity 1.
    pub fn u16(&self, t: Tag) -> PResult<Option<u16>> {
        match self.get(t).map(|v| v.bytes) {
            None | Some([]) => Ok(None),
            Some(&[b0, b1]) => Ok(Some(u16_of([b0, b1], self.encoding.big_endian()))),
            Some(other) => Err(format!("{} has a value length of {} bytes, expected 2", self.describe(t), other.len())),
        }
    }

    /// 16-bit words of a US/SS/OW value.
    pub fn words(&self, t: Tag) -> PResult<Option<Vec<u16>>> {
        let Some(v) = self.get(t) else { return Ok(None) };
        let (words, odd) = v.bytes.as_chunks::<2>();
        if !odd.is_empty() {
            return Err(format!("{} has an odd value length of {} bytes", self.describe(t), v.bytes.len()));
        }
        let big = self.encoding.big_endian();
        Ok(Some(words.iter().map(|&w| u16_of(w, big)).collect()))
    }

    pub fn string(&self, t: Tag) -> Option<String> {
        self.get(t).map(|v| text(v.bytes)).filter(|s| !s.is_empty())
    }

    /// A DS value's numbers (backslash-separated decimal strings).
    pub fn decimals(&self, t: Tag) -> PResult<Option<Vec<f64>>> {
        let Some(s) = self.string(t) else { return Ok(None) };
        let mut out = Vec::new();
        for part in s.split('\\') {
            let part = part.trim_matches(|c: char| c == ' ' || c == '\0');
            if part.is_empty() {
                continue;
            }
            match part.parse::<f64>() {
                Ok(v) if v.is_finite() => out.push(v),
                _ => return Err(format!("{} holds {part:?}, which is not a decimal number", self.describe(t))),
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    /// The first of a DS value's numbers.
    pub fn decimal(&self, t: Tag) -> PResult<Option<f64>> {
        Ok(self.decimals(t)?.and_then(|v| v.first().copied()))
    }

    /// An IS value of multiplicity 1.
    pub fn integer(&self, t: Tag) -> PResult<Option<i64>> {
        let Some(s) = self.string(t) else { return Ok(None) };
        s.trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{} holds {s:?}, which is not an integer", self.describe(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An implicit VR little endian element.
    fn implicit(group: u16, element: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&group.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn data_sets_without_meta_are_recognised_by_a_plausible_first_element() {
        let mut ds = implicit(0x0008, 0x0000, &12u32.to_le_bytes());
        ds.extend(implicit(0x0008, 0x0060, b"CT"));
        ds.extend(implicit(0x0028, 0x0010, &1u16.to_le_bytes()));
        assert_eq!(start(&ds), Some(Start::DataSet(Encoding::ImplicitLittle)));
        // Explicit VR little endian.
        let explicit = [
            0x08, 0x00, 0x60, 0x00, b'C', b'S', 0x02, 0x00, b'C', b'T', 0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 1, 0,
        ];
        assert_eq!(start(&explicit), Some(Start::DataSet(Encoding::ExplicitLittle)));
        // Explicit VR big endian.
        let big = [
            0x00, 0x08, 0x00, 0x60, b'C', b'S', 0x00, 0x02, b'C', b'T', 0x00, 0x28, 0x00, 0x10, b'U', b'S', 0, 2, 0, 1,
        ];
        assert_eq!(start(&big), Some(Start::DataSet(Encoding::ExplicitBig)));
        // A file meta group without preamble.
        let meta = [0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00, 0, 0, 0, 0];
        assert_eq!(start(&meta), Some(Start::MetaWithoutPreamble));
    }

    #[test]
    fn implausible_starts_are_refused() {
        // Wrong group.
        assert_eq!(start(&implicit(0x0010, 0x0010, b"Doe^John")), None);
        // A group length that is not 4 bytes long.
        assert_eq!(start(&implicit(0x0008, 0x0000, b"12345678")), None);
        // A length beyond the bytes present.
        let mut long = implicit(0x0008, 0x0060, b"CT");
        long.truncate(9);
        assert_eq!(start(&long), None);
        // A second element whose tag goes backwards.
        let mut ds = implicit(0x0008, 0x0060, b"CT");
        ds.extend(implicit(0x0008, 0x0016, b"1.2"));
        assert_eq!(start(&ds), None);
        // Zeros, text, other image formats.
        assert_eq!(start(&[0u8; 300]), None);
        assert_eq!(start(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), None);
        assert_eq!(start(b"hello world, this is text"), None);
        assert_eq!(start(&[]), None);
        assert_eq!(start(&[0x08]), None);
    }
}
