//! A bounded, zero-copy reader for DICOM Part 10 files: the file meta group, then
//! the top-level elements of the data set up to and including Pixel Data.
//!
//! Every declared length is checked against the bytes that remain before it is
//! used, so a truncated file or a wrong value length is an error, never an
//! out-of-bounds read or an allocation sized by the file. Sequences are skipped
//! (their contents are never needed), with a nesting limit. Only the attributes in
//! [`WANTED`] are kept; patient-identifying ones are never even looked at.

use std::collections::BTreeMap;

pub type PResult<T> = std::result::Result<T, String>;

/// A tag as `(group << 16) | element`.
pub type Tag = u32;

pub const fn tag(group: u16, element: u16) -> Tag {
    ((group as u32) << 16) | element as u32
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
        RESCALE_INTERCEPT => "Rescale Intercept",
        RESCALE_SLOPE => "Rescale Slope",
        PIXEL_DATA => "Pixel Data",
        TRANSFER_SYNTAX => "Transfer Syntax UID",
        t if PALETTE_DESCRIPTORS.contains(&t) => "Palette Color Lookup Table Descriptor",
        t if PALETTE_DATA.contains(&t) => "Palette Color Lookup Table Data",
        _ => "element",
    };
    format!("{name} ({:04X},{:04X})", t >> 16, t & 0xFFFF)
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
}

/// One kept element: its VR (`b"  "` under implicit VR) and value bytes.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    pub vr: [u8; 2],
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone)]
pub enum PixelData<'a> {
    /// Native (uncompressed) pixel data, with its VR.
    Native { vr: [u8; 2], bytes: &'a [u8] },
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

/// The file meta information: the transfer syntax and where the data set starts.
#[derive(Debug, Clone)]
pub struct Meta {
    pub transfer_syntax: String,
    pub dataset_start: usize,
}

pub struct DataSet<'a> {
    pub encoding: Encoding,
    pub values: BTreeMap<Tag, Value<'a>>,
    pub pixel_data: Option<PixelData<'a>>,
}

/// Whether `bytes` carry the Part 10 marker "DICM" after the 128-byte preamble.
pub fn has_dicm_marker(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if big { u16::from_be_bytes(v) } else { u16::from_le_bytes(v) }
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big { u32::from_be_bytes(v) } else { u32::from_le_bytes(v) }
}

/// VRs whose explicit-VR header has two reserved bytes and a 32-bit length.
fn long_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    )
}

/// Reads the file meta group (always explicit VR little endian).
pub fn parse_meta(bytes: &[u8]) -> PResult<Meta> {
    if !has_dicm_marker(bytes) {
        return Err(if bytes.len() < 132 {
            format!("not a DICOM file: {} bytes, too short for the 128-byte preamble and \"DICM\" marker", bytes.len())
        } else {
            "not a DICOM file: no \"DICM\" marker at byte 128 (only DICOM Part 10 files are read)".to_string()
        });
    }
    let mut reader = Reader { data: bytes, pos: 132, encoding: Encoding::ExplicitLittle };
    let mut transfer_syntax = None;
    loop {
        // The meta group ends where group 0002 ends.
        if reader.remaining() < 2 || u16_at(bytes, reader.pos, false) != 0x0002 {
            break;
        }
        let header = reader.header()?.ok_or("the file meta information is truncated")?;
        if header.length == UNDEFINED {
            return Err(format!("the file meta element {} has an undefined length", tag_name(header.tag)));
        }
        let value = reader.take(header.length as usize, header.tag)?;
        if header.tag == TRANSFER_SYNTAX {
            transfer_syntax = Some(text(value));
        }
    }
    let transfer_syntax = transfer_syntax.filter(|s| !s.is_empty()).ok_or_else(|| {
        "the file meta information has no Transfer Syntax UID (0002,0010)".to_string()
    })?;
    if !transfer_syntax.bytes().all(|c| c.is_ascii_digit() || c == b'.') || transfer_syntax.len() > 64 {
        return Err("the Transfer Syntax UID (0002,0010) is not a valid UID".to_string());
    }
    Ok(Meta { transfer_syntax, dataset_start: reader.pos })
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
    pos: usize,
    encoding: Encoding,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The next element header, or `None` at the end of the buffer.
    fn header(&mut self) -> PResult<Option<Header>> {
        let at = self.pos;
        let rest = self.remaining();
        if rest == 0 {
            return Ok(None);
        }
        if rest < 8 {
            if self.data[at..].iter().all(|&b| b == 0) {
                // Trailing zero padding.
                self.pos = self.data.len();
                return Ok(None);
            }
            return Err(format!("truncated: {rest} stray bytes at the end where an element header should be"));
        }
        let big = self.encoding.big_endian();
        let group = u16_at(self.data, at, big);
        let element = u16_at(self.data, at + 2, big);
        let t = tag(group, element);
        if group == 0xFFFE {
            // Items and delimiters have no VR, in every encoding.
            let length = u32_at(self.data, at + 4, big);
            self.pos += 8;
            return Ok(Some(Header { tag: t, vr: *b"  ", length, at }));
        }
        match self.encoding {
            Encoding::ImplicitLittle => {
                let length = u32_at(self.data, at + 4, false);
                self.pos += 8;
                Ok(Some(Header { tag: t, vr: *b"  ", length, at }))
            }
            Encoding::ExplicitLittle | Encoding::ExplicitBig => {
                let vr = [self.data[at + 4], self.data[at + 5]];
                if !vr.iter().all(|c| c.is_ascii_uppercase()) {
                    return Err(format!(
                        "invalid value representation bytes {:02X} {:02X} for {} at byte {at} \
                         (corrupt file or wrong transfer syntax)",
                        vr[0],
                        vr[1],
                        tag_name(t)
                    ));
                }
                if long_vr(vr) {
                    if rest < 12 {
                        return Err(format!("truncated: the header of {} at byte {at} is cut off", tag_name(t)));
                    }
                    let length = u32_at(self.data, at + 8, big);
                    self.pos += 12;
                    Ok(Some(Header { tag: t, vr, length, at }))
                } else {
                    let length = u32::from(u16_at(self.data, at + 6, big));
                    self.pos += 8;
                    Ok(Some(Header { tag: t, vr, length, at }))
                }
            }
        }
    }

    /// The next `length` bytes, checked against what remains.
    fn take(&mut self, length: usize, t: Tag) -> PResult<&'a [u8]> {
        if length > self.remaining() {
            return Err(format!(
                "{} at byte {} declares a value length of {length} bytes but only {} remain \
                 (truncated file or wrong value length)",
                tag_name(t),
                self.pos,
                self.remaining()
            ));
        }
        let value = &self.data[self.pos..self.pos + length];
        self.pos += length;
        Ok(value)
    }

    /// Skips a sequence of undefined length (its header already read).
    fn skip_sequence(&mut self, depth: usize, encoding: Encoding) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences are nested more than {MAX_DEPTH} deep"));
        }
        let saved = self.encoding;
        self.encoding = encoding;
        let result = (|| loop {
            let h = self.header()?.ok_or("truncated inside a sequence (no sequence delimiter)")?;
            match h.tag {
                SEQUENCE_END => return Ok(()),
                ITEM if h.length == UNDEFINED => self.skip_item(depth + 1)?,
                ITEM => {
                    self.take(h.length as usize, h.tag)?;
                }
                other => {
                    return Err(format!(
                        "expected an item inside a sequence at byte {}, found {}",
                        h.at,
                        tag_name(other)
                    ))
                }
            }
        })();
        self.encoding = saved;
        result
    }

    /// Skips the elements of an item of undefined length, up to its delimiter.
    fn skip_item(&mut self, depth: usize) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences are nested more than {MAX_DEPTH} deep"));
        }
        loop {
            let h = self.header()?.ok_or("truncated inside a sequence item (no item delimiter)")?;
            if h.tag == ITEM_END {
                return Ok(());
            }
            self.skip_value(h, depth)?;
        }
    }

    fn skip_value(&mut self, h: Header, depth: usize) -> PResult<()> {
        if h.length != UNDEFINED {
            self.take(h.length as usize, h.tag)?;
            return Ok(());
        }
        match (&h.vr, self.encoding) {
            (b"SQ", _) | (_, Encoding::ImplicitLittle) => self.skip_sequence(depth + 1, self.encoding),
            // UN of undefined length holds a sequence in implicit VR little endian.
            (b"UN", _) => self.skip_sequence(depth + 1, Encoding::ImplicitLittle),
            _ => Err(format!("{} at byte {} has an undefined length but is not a sequence", tag_name(h.tag), h.at)),
        }
    }

    fn encapsulated(&mut self) -> PResult<PixelData<'a>> {
        // Items of encapsulated pixel data are always little endian.
        let saved = self.encoding;
        self.encoding = Encoding::ExplicitLittle;
        let result = (|| {
            let mut offset_table: Option<&'a [u8]> = None;
            let mut fragments = Vec::new();
            let mut first_fragment_at = None;
            loop {
                let h = self.header()?.ok_or("truncated inside the encapsulated Pixel Data (no sequence delimiter)")?;
                match h.tag {
                    SEQUENCE_END => break,
                    ITEM if h.length == UNDEFINED => {
                        return Err(format!("a Pixel Data fragment at byte {} has an undefined length", h.at))
                    }
                    ITEM => {
                        let bytes = self.take(h.length as usize, h.tag)?;
                        if offset_table.is_none() {
                            offset_table = Some(bytes);
                        } else {
                            let start = *first_fragment_at.get_or_insert(h.at);
                            fragments.push(Fragment { offset: h.at - start, bytes });
                        }
                    }
                    other => {
                        return Err(format!(
                            "expected a Pixel Data fragment at byte {}, found {}",
                            h.at,
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
pub fn parse_dataset(data: &[u8], encoding: Encoding) -> PResult<DataSet<'_>> {
    let mut reader = Reader { data, pos: 0, encoding };
    let mut values = BTreeMap::new();
    let mut pixel_data = None;
    while let Some(h) = reader.header()? {
        if h.tag >> 16 == 0xFFFE {
            return Err(format!("unexpected item or delimiter {} at byte {} of the data set", tag_name(h.tag), h.at));
        }
        if h.tag == PIXEL_DATA {
            if h.length == UNDEFINED {
                pixel_data = Some(reader.encapsulated()?);
            } else {
                let bytes = reader.take(h.length as usize, h.tag)?;
                pixel_data = Some(PixelData::Native { vr: h.vr, bytes });
            }
            // Nothing after Pixel Data is needed, but a truncated file should
            // not pass for a whole one: check the rest of the structure.
            while let Some(h) = reader.header()? {
                if h.tag >> 16 == 0xFFFE {
                    return Err(format!("unexpected item or delimiter at byte {} of the data set", h.at));
                }
                reader.skip_value(h, 0)?;
            }
            break;
        }
        if h.length == UNDEFINED {
            reader.skip_value(h, 0)?;
            continue;
        }
        let bytes = reader.take(h.length as usize, h.tag)?;
        if WANTED.contains(&h.tag) {
            values.entry(h.tag).or_insert(Value { vr: h.vr, bytes });
        }
    }
    Ok(DataSet { encoding, values, pixel_data })
}

impl<'a> DataSet<'a> {
    pub fn get(&self, t: Tag) -> Option<Value<'a>> {
        self.values.get(&t).copied()
    }

    /// A US/SS value of multiplicity 1.
    pub fn u16(&self, t: Tag) -> PResult<Option<u16>> {
        match self.get(t) {
            None => Ok(None),
            Some(v) if v.bytes.len() == 2 => Ok(Some(u16_at(v.bytes, 0, self.encoding.big_endian()))),
            Some(v) if v.bytes.is_empty() => Ok(None),
            Some(v) => Err(format!("{} has a value length of {} bytes, expected 2", tag_name(t), v.bytes.len())),
        }
    }

    /// 16-bit words of a US/SS/OW value.
    pub fn words(&self, t: Tag) -> PResult<Option<Vec<u16>>> {
        match self.get(t) {
            None => Ok(None),
            Some(v) if v.bytes.len() % 2 != 0 => {
                Err(format!("{} has an odd value length of {} bytes", tag_name(t), v.bytes.len()))
            }
            Some(v) => {
                let big = self.encoding.big_endian();
                Ok(Some((0..v.bytes.len() / 2).map(|i| u16_at(v.bytes, 2 * i, big)).collect()))
            }
        }
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
                _ => return Err(format!("{} holds {part:?}, which is not a decimal number", tag_name(t))),
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    /// An IS value of multiplicity 1.
    pub fn integer(&self, t: Tag) -> PResult<Option<i64>> {
        let Some(s) = self.string(t) else { return Ok(None) };
        s.trim().parse::<i64>().map(Some).map_err(|_| format!("{} holds {s:?}, which is not an integer", tag_name(t)))
    }
}
