//! JPEG marker segments (ITU-T T.81 Annex B): finding markers, splitting
//! segments, and reading the frame header (B.2.2), the scan header (B.2.3),
//! quantisation tables (B.2.4.1), Huffman tables (B.2.4.2), the restart
//! interval (B.2.4.4), and the JFIF / Adobe APPn segments libjpeg uses to pick
//! the colour space (libjpeg-turbo jdmarker.c `examine_app0` / `examine_app14`).
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

/// Errors of this module and its siblings: a sentence naming the problem.
pub type JResult<T> = std::result::Result<T, String>;

/// One marker segment of a JPEG stream, after its marker: its contents (without
/// the length bytes) and the bytes that follow it (T.81 B.1.1.4).
pub fn marker_segment(rest: &[u8]) -> JResult<(&[u8], &[u8])> {
    let Some((&length, _)) = rest.split_first_chunk::<2>() else {
        return Err("the JPEG data ends inside a marker segment".into());
    };
    let length = usize::from(u16::from_be_bytes(length));
    match rest.split_at_checked(length) {
        Some((segment, after)) if length >= 2 => Ok((segment.get(2..).unwrap_or_default(), after)),
        _ => Err("a JPEG marker segment is truncated".into()),
    }
}

/// The next marker of a JPEG stream (after fill bytes) and the bytes after it,
/// or `None` when the bytes do not start with one.
pub fn next_marker(mut rest: &[u8]) -> Option<(u8, &[u8])> {
    while let [0xFF, tail @ ..] = rest {
        if !tail.starts_with(&[0xFF]) {
            break;
        }
        rest = tail;
    }
    match rest {
        [0xFF, marker, tail @ ..] => Some((*marker, tail)),
        _ => None,
    }
}

/// The next marker at or after the start of `rest`, skipping bytes that are
/// not one as libjpeg does (jdmarker.c `next_marker`, warning
/// JWRN_EXTRANEOUS_DATA); `None` at the end of the data.
pub fn seek_marker(rest: &[u8]) -> Option<(u8, &[u8])> {
    let mut at = rest;
    loop {
        let start = at.iter().position(|&b| b == 0xFF)?;
        at = at.get(start..)?;
        match next_marker(at) {
            // FF 00 is stuffing, not a marker: keep looking after it.
            Some((0, tail)) => at = tail,
            Some(found) => return Some(found),
            None => return None,
        }
    }
}

/// The coding process a start-of-frame marker names (T.81 B.1.1.3, table B.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// SOF0 baseline and SOF1 extended sequential, Huffman coding.
    Sequential,
    /// SOF2 progressive, Huffman coding.
    Progressive,
    /// SOF3 lossless, SOF5–7 hierarchical, SOF9–15 arithmetic coding: not
    /// decoded here (the marker's number is kept for the message).
    Other(u8),
}

/// A frame component specification (T.81 B.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub id: u8,
    /// Horizontal and vertical sampling factors, 1 to 4.
    pub h: usize,
    pub v: usize,
    /// Quantisation table destination, 0 to 3.
    pub tq: usize,
}

/// The frame header (T.81 B.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub process: Process,
    pub precision: u8,
    /// Number of lines; 0 means a DNL marker gives it later (not supported).
    pub height: u16,
    pub width: u16,
    pub components: Vec<Component>,
}

impl Frame {
    /// Reads an SOFn segment (n = `marker & 15`).
    pub fn parse(marker: u8, segment: &[u8]) -> JResult<Self> {
        let &[precision, h0, h1, w0, w1, count, ref specs @ ..] = segment else {
            return Err("the JPEG frame header is truncated".into());
        };
        let process = match marker {
            0xC0 | 0xC1 => Process::Sequential,
            0xC2 => Process::Progressive,
            other => Process::Other(other & 0x0F),
        };
        let (specs, _) = specs.as_chunks::<3>();
        let specs = specs.get(..usize::from(count)).ok_or("the JPEG frame header is truncated")?;
        if count == 0 {
            return Err("the JPEG frame has no components".into());
        }
        let mut components = Vec::with_capacity(specs.len());
        for &[id, hv, tq] in specs {
            let (h, v) = (usize::from(hv >> 4), usize::from(hv & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                return Err(format!("JPEG component {id} has sampling factors {h}×{v} (1 to 4 allowed)"));
            }
            if tq > 3 {
                return Err(format!("JPEG component {id} names quantisation table {tq} (0 to 3 allowed)"));
            }
            if components.iter().any(|c: &Component| c.id == id) {
                return Err(format!("the JPEG frame names component {id} twice"));
            }
            components.push(Component { id, h, v, tq: usize::from(tq) });
        }
        Ok(Self {
            process,
            precision,
            height: u16::from_be_bytes([h0, h1]),
            width: u16::from_be_bytes([w0, w1]),
            components,
        })
    }
}

/// A scan header (T.81 B.2.3): the frame components it codes (indices into
/// [`Frame::components`]) with their DC and AC Huffman table destinations, and
/// the spectral selection and successive approximation parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanHeader {
    pub components: Vec<ScanComponent>,
    pub ss: u8,
    pub se: u8,
    pub ah: u8,
    pub al: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanComponent {
    /// Index into the frame's components.
    pub index: usize,
    pub td: usize,
    pub ta: usize,
}

impl ScanHeader {
    pub fn parse(segment: &[u8], frame: &Frame) -> JResult<Self> {
        let Some((&count, rest)) = segment.split_first() else {
            return Err("the JPEG scan header is truncated".into());
        };
        if !(1..=4).contains(&count) {
            return Err(format!("a JPEG scan codes {count} components (1 to 4 allowed)"));
        }
        let (specs, tail) = rest.split_at_checked(usize::from(count).saturating_mul(2)).ok_or("the JPEG scan header is truncated")?;
        let &[ss, se, ahl, ..] = tail else {
            return Err("the JPEG scan header is truncated".into());
        };
        let mut components = Vec::with_capacity(specs.len() / 2);
        for &[id, tables] in specs.as_chunks::<2>().0 {
            let index = frame
                .components
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| format!("a JPEG scan codes component {id}, which the frame does not have"))?;
            if components.iter().any(|c: &ScanComponent| c.index == index) {
                return Err(format!("a JPEG scan codes component {id} twice"));
            }
            let (td, ta) = (usize::from(tables >> 4), usize::from(tables & 15));
            if td > 3 || ta > 3 {
                return Err("a JPEG scan names a Huffman table above 3".into());
            }
            components.push(ScanComponent { index, td, ta });
        }
        Ok(Self { components, ss, se, ah: ahl >> 4, al: ahl & 15 })
    }
}

/// Reads a DQT segment (T.81 B.2.4.1) into `tables`, each in natural (row-major)
/// order. 16-bit entries are accepted for 8-bit data, as libjpeg does.
pub fn read_quantisation(mut segment: &[u8], tables: &mut [Option<[u16; 64]>; 4]) -> JResult<()> {
    while let Some((&pq_tq, body)) = segment.split_first() {
        let (pq, tq) = (pq_tq >> 4, usize::from(pq_tq & 15));
        let slot = tables.get_mut(tq).filter(|_| pq <= 1).ok_or("a JPEG quantisation table is invalid")?;
        let mut table = [0u16; 64];
        let truncated = "a JPEG quantisation table is truncated";
        let mut zigzag = [0u16; 64];
        segment = if pq == 0 {
            let (entries, tail) = body.split_first_chunk::<64>().ok_or(truncated)?;
            zigzag.iter_mut().zip(entries).for_each(|(q, &e)| *q = u16::from(e));
            tail
        } else {
            let (entries, tail) = body.split_first_chunk::<128>().ok_or(truncated)?;
            zigzag.iter_mut().zip(entries.as_chunks::<2>().0).for_each(|(q, &e)| *q = u16::from_be_bytes(e));
            tail
        };
        for (&q, &natural) in zigzag.iter().zip(&ZIGZAG) {
            if let Some(t) = table.get_mut(natural) {
                *t = q;
            }
        }
        *slot = Some(table);
    }
    Ok(())
}

/// A Huffman table specification (T.81 B.2.4.2): the number of codes of each
/// length 1 to 16 and the symbols in code order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanSpec {
    pub counts: [u8; 16],
    pub values: Vec<u8>,
}

/// Reads a DHT segment into the DC (class 0) and AC (class 1) tables.
pub fn read_huffman(mut segment: &[u8], dc: &mut [Option<HuffmanSpec>; 4], ac: &mut [Option<HuffmanSpec>; 4]) -> JResult<()> {
    while let Some((&tc_th, body)) = segment.split_first() {
        let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
        let tables = match class {
            0 => &mut *dc,
            1 => &mut *ac,
            _ => return Err(format!("a JPEG Huffman table has class {class} (0 or 1 allowed)")),
        };
        let slot = tables.get_mut(id).ok_or_else(|| format!("a JPEG Huffman table has destination {id} (0 to 3 allowed)"))?;
        let (counts, body) = body.split_first_chunk::<16>().ok_or("a JPEG Huffman table is truncated")?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 {
            return Err("a JPEG Huffman table has more than 256 codes".into());
        }
        let (values, tail) = body.split_at_checked(total).ok_or("a JPEG Huffman table is truncated")?;
        *slot = Some(HuffmanSpec { counts: *counts, values: values.to_vec() });
        segment = tail;
    }
    Ok(())
}

/// The restart interval of a DRI segment (T.81 B.2.4.4), in MCUs; 0 = none.
pub fn read_restart_interval(segment: &[u8]) -> JResult<usize> {
    match segment {
        &[r0, r1, ..] => Ok(usize::from(u16::from_be_bytes([r0, r1]))),
        _ => Err("a JPEG restart interval segment is truncated".into()),
    }
}

/// Whether an APP0 segment is a JFIF header as libjpeg recognises it
/// (jdmarker.c `examine_app0`: "JFIF\0" and at least 14 bytes).
pub fn is_jfif(segment: &[u8]) -> bool {
    segment.len() >= 14 && segment.starts_with(b"JFIF\0")
}

/// The EXIF data of an APP1 segment: what follows its `Exif\0\0` identifier (a
/// TIFF header and its IFDs), as Pillow keeps it (JpegImagePlugin `APP`);
/// `None` for any other APP1 (XMP, …).
pub fn exif_payload(segment: &[u8]) -> Option<&[u8]> {
    segment.strip_prefix(b"Exif\0\0")
}

/// The transform flag of an Adobe APP14 segment as libjpeg reads it
/// (jdmarker.c `examine_app14`: "Adobe" and at least 12 bytes; byte 11).
pub fn adobe_transform(segment: &[u8]) -> Option<u8> {
    if segment.len() >= 12 && segment.starts_with(b"Adobe") {
        segment.get(11).copied()
    } else {
        None
    }
}

/// The zig-zag sequence (T.81 figure A.6): `ZIGZAG[k]` is the natural (row-major)
/// index of the k-th coefficient, followed by 16 entries of 63 so that a run
/// past the end of a block lands where libjpeg's `jpeg_natural_order` (jutils.c,
/// with its safety entries) puts it.
pub const ZIGZAG: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
];
