//! The `.npz` of precomputed embeddings that `kpl eval-embeddings` reads, parsed
//! and validated from any reader (a file natively, a byte slice in the fuzz
//! target `fuzz/fuzz_targets/npz.rs`), so the parser of these untrusted bytes
//! can be tested apart from the command line.
//!
//! Arrays: `image_embeddings` (n×d float32), `description_embeddings` (m×d
//! float32), `description_class` (m int64) and optionally `labels` (n int64).
//!
//! Before ndarray-npy reads an array it allocates the element count its npy
//! header declares, so a 300-byte file declaring 100000×100000 floats aborted
//! the process ("memory allocation of 40000000000 bytes failed"; found by the
//! `npz` fuzz target, input in `tests/fuzz_regressions/npz/`). [`check_sizes`]
//! therefore reads the zip's central directory and each wanted array's npy header
//! first, and refuses a shape with more elements than the entry's bytes, and an
//! entry larger than its compressed bytes can expand to: no allocation is then
//! larger than a fixed multiple of the bytes present.
//!
//! No input may panic here: indexing, `unwrap`/`expect` and unchecked integer
//! arithmetic are denied by clippy in this module (`make test` runs clippy).
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

use ndarray::{Array1, Array2};
use ndarray_npy::NpzReader;

use crate::error::{Error, Result};

/// The validated content of an embeddings `.npz`: rows L2-normalised, classes
/// numbered 0..`num_classes` with at least one description each.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalEmbeddings {
    pub dim: usize,
    pub images: Vec<Vec<f32>>,
    pub descriptions: Vec<Vec<f32>>,
    pub description_class: Vec<usize>,
    pub num_classes: usize,
    pub labels: Option<Vec<usize>>,
}

fn npz_error(name: &str, array: &str, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("{name}: array {array}: {e}"))
}

fn has_array<R: Read + Seek>(npz: &mut NpzReader<R>, name: &str) -> bool {
    npz.names().map(|names| names.iter().any(|n| n == name || n == &format!("{name}.npy"))).unwrap_or(false)
}

fn matrix<R: Read + Seek>(npz: &mut NpzReader<R>, file: &str, name: &str) -> Result<Array2<f32>> {
    if !has_array(npz, name) {
        return Err(npz_error(file, name, "missing"));
    }
    npz.by_name(name)
        .or_else(|_| npz.by_name(&format!("{name}.npy")))
        .map_err(|e| npz_error(file, name, format!("expected a 2-D float32 array ({e})")))
}

fn vector<R: Read + Seek>(npz: &mut NpzReader<R>, file: &str, name: &str) -> Result<Option<Array1<i64>>> {
    if !has_array(npz, name) {
        return Ok(None);
    }
    npz.by_name(name)
        .or_else(|_| npz.by_name(&format!("{name}.npy")))
        .map(Some)
        .map_err(|e| npz_error(file, name, format!("expected a 1-D int64 array ({e})")))
}

fn rows_normalized(array: &Array2<f32>, file: &str, name: &str) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(array.nrows());
    for (i, row) in array.rows().into_iter().enumerate() {
        let mut v: Vec<f32> = row.to_vec();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(npz_error(file, name, format!("row {i} contains NaN or infinity")));
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(npz_error(file, name, format!("row {i} is all zeros or too large and cannot be normalised")));
        }
        v.iter_mut().for_each(|x| *x /= norm);
        rows.push(v);
    }
    Ok(rows)
}

/// The arrays read (a zip entry may add `.npy` to the name).
const ARRAYS: [&str; 4] = ["image_embeddings", "description_embeddings", "description_class", "labels"];
/// How much of an entry's start is inflated to read its npy header.
const HEADER_PREFIX: usize = 1 << 20;
/// Deflate's largest expansion: a 258-byte match in two bits.
const MAX_DEFLATE_RATIO: u64 = 1032;

struct ZipEntry {
    name: String,
    method: u16,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

/// The little-endian integer of `n` (at most 8) bytes at `at`.
fn le(bytes: &[u8], at: usize, n: usize) -> std::result::Result<u64, String> {
    let b = at.checked_add(n).and_then(|end| bytes.get(at..end)).ok_or("truncated zip structure")?;
    let mut wide = [0u8; 8];
    wide.get_mut(..b.len()).ok_or("a zip field wider than 8 bytes")?.copy_from_slice(b);
    Ok(u64::from_le_bytes(wide))
}

/// `le` for the 2-byte fields that are lengths inside a buffer.
fn le_len(bytes: &[u8], at: usize) -> std::result::Result<usize, String> {
    le(bytes, at, 2).map(|v| usize::from(v as u16))
}

/// `a + b + …` for offsets inside a buffer, or an error when it overflows.
fn offset(parts: &[usize]) -> std::result::Result<usize, String> {
    parts.iter().try_fold(0usize, |sum, &p| sum.checked_add(p)).ok_or_else(|| "a zip offset overflows".to_string())
}

fn read_at<R: Read + Seek>(r: &mut R, at: u64, n: usize) -> std::result::Result<Vec<u8>, String> {
    r.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    r.take(n as u64).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// The entries of the zip's central directory (zip64 included).
fn zip_entries<R: Read + Seek>(r: &mut R, len: u64) -> std::result::Result<Vec<ZipEntry>, String> {
    // The end-of-central-directory record: 22 bytes and a comment of at most 65535.
    let tail_len = len.min(22 + 65535);
    let tail_start = len.saturating_sub(tail_len);
    let tail = read_at(r, tail_start, tail_len as usize)?;
    let eocd = (0..=tail.len().saturating_sub(22))
        .rev()
        .find(|&i| tail.get(i..).is_some_and(|t| t.starts_with(b"PK\x05\x06")))
        .ok_or("no zip end-of-central-directory record")?;
    let field = |at: usize, n: usize| le(&tail, offset(&[eocd, at])?, n);
    let (mut count, mut cd_size, mut cd_offset) = (field(10, 2)?, field(12, 4)?, field(16, 4)?);
    if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        let locator = tail_start.checked_add(eocd as u64).and_then(|at| at.checked_sub(20)).ok_or("no zip64 locator")?;
        let loc = read_at(r, locator, 20)?;
        if !loc.starts_with(b"PK\x06\x07") {
            return Err("no zip64 end-of-central-directory locator".into());
        }
        let record = read_at(r, le(&loc, 8, 8)?, 56)?;
        if !record.starts_with(b"PK\x06\x06") {
            return Err("no zip64 end-of-central-directory record".into());
        }
        (count, cd_size, cd_offset) = (le(&record, 32, 8)?, le(&record, 40, 8)?, le(&record, 48, 8)?);
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err("the central directory lies outside the file".into());
    }
    let cd = read_at(r, cd_offset, cd_size as usize)?;
    let mut entries = Vec::new();
    // Each entry: 46 fixed bytes, then its name, extra field and comment.
    let mut rest = cd.as_slice();
    while (entries.len() as u64) < count && rest.len() >= 46 {
        if !rest.starts_with(b"PK\x01\x02") {
            return Err("a corrupt central directory entry".into());
        }
        let (n, e, c) = (le_len(rest, 28)?, le_len(rest, 30)?, le_len(rest, 32)?);
        let name_end = offset(&[46, n])?;
        let extra_end = offset(&[name_end, e])?;
        let name = String::from_utf8_lossy(rest.get(46..name_end).ok_or("truncated zip structure")?).into_owned();
        let mut entry = ZipEntry {
            name,
            method: le(rest, 10, 2)? as u16,
            compressed: le(rest, 20, 4)?,
            uncompressed: le(rest, 24, 4)?,
            offset: le(rest, 42, 4)?,
        };
        // zip64 extra field: the 64-bit values of the fields saturated above, in order.
        let mut extra = rest.get(name_end..extra_end).ok_or("truncated zip structure")?;
        while extra.len() >= 4 {
            let (id, size) = (le(extra, 0, 2)?, le_len(extra, 2)?);
            let body = extra.get(4..).unwrap_or_default();
            let body = body.get(..size).unwrap_or(body);
            if id == 1 {
                let mut values = body.chunks_exact(8);
                for field in [&mut entry.uncompressed, &mut entry.compressed, &mut entry.offset] {
                    if *field == 0xffff_ffff {
                        if let Some(v) = values.next() {
                            *field = le(v, 0, 8)?;
                        }
                    }
                }
            }
            extra = extra.get(offset(&[4, size])?..).unwrap_or_default();
        }
        entries.push(entry);
        rest = rest.get(offset(&[extra_end, c])?..).unwrap_or_default();
    }
    Ok(entries)
}

/// Refuses arrays whose npy header declares more elements than the bytes that
/// can be there (see the module documentation).
fn check_sizes<R: Read + Seek>(r: &mut R, file: &str) -> Result<()> {
    let unreadable = |e: String| Error::Input(format!("{file}: not a readable .npz: {e}"));
    let len = r.seek(SeekFrom::End(0)).map_err(|e| unreadable(e.to_string()))?;
    for entry in zip_entries(r, len).map_err(unreadable)? {
        let array = entry.name.strip_suffix(".npy").unwrap_or(&entry.name).to_string();
        if !ARRAYS.contains(&array.as_str()) {
            continue;
        }
        let bad = |m: String| npz_error(file, &array, m);
        let expandable = match entry.method {
            0 => entry.compressed,
            8 => entry.compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024),
            m => return Err(bad(format!("zip compression method {m} is not supported (stored or deflated only)"))),
        };
        if entry.uncompressed > expandable {
            return Err(bad(format!(
                "{} bytes cannot come from {} compressed bytes",
                entry.uncompressed, entry.compressed
            )));
        }
        let local = read_at(r, entry.offset, 30).map_err(unreadable)?;
        if !local.starts_with(b"PK\x03\x04") {
            return Err(bad("its zip local header is missing".into()));
        }
        let name_and_extra = le(&local, 26, 2).map_err(unreadable)?.saturating_add(le(&local, 28, 2).map_err(unreadable)?);
        let data = entry.offset.saturating_add(30).saturating_add(name_and_extra);
        if data.checked_add(entry.compressed).is_none_or(|end| end > len) {
            return Err(bad("its data runs past the end of the file".into()));
        }
        let stored = read_at(r, data, (entry.compressed as usize).min(HEADER_PREFIX)).map_err(unreadable)?;
        let prefix = if entry.method == 8 {
            miniz_oxide::inflate::decompress_to_vec_with_limit(&stored, HEADER_PREFIX).unwrap_or_else(|e| e.output)
        } else {
            stored
        };
        let preamble = match prefix.get(6) {
            Some(1) => 10,
            Some(2 | 3) => 12,
            _ => continue, // not npy, or a version ndarray-npy refuses before allocating
        };
        let header_len = match preamble {
            10 => le(&prefix, 8, 2),
            _ => le(&prefix, 8, 4),
        }
        .unwrap_or(u64::MAX);
        if (preamble as u64).saturating_add(header_len) > prefix.len() as u64 {
            return Err(bad("its npy header is truncated or larger than 1 MB".into()));
        }
        let Ok(header) = ndarray_npy::npy::header::Header::from_reader(&mut prefix.as_slice()) else {
            continue; // ndarray-npy reports it, before allocating
        };
        let elements = header.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        if elements.is_none_or(|n| n > entry.uncompressed) {
            return Err(bad(format!(
                "its header declares shape {:?}, more values than its {} bytes hold",
                header.shape, entry.uncompressed
            )));
        }
    }
    r.seek(SeekFrom::Start(0)).map_err(|e| unreadable(e.to_string()))?;
    Ok(())
}

/// Reads and validates an embeddings `.npz`; `file` names it in errors.
pub fn read_eval_npz<R: Read + Seek>(mut reader: R, file: &str) -> Result<EvalEmbeddings> {
    check_sizes(&mut reader, file)?;
    let mut npz = NpzReader::new(reader).map_err(|e| Error::Input(format!("{file}: not a readable .npz: {e}")))?;
    let images = matrix(&mut npz, file, "image_embeddings")?;
    let descriptions = matrix(&mut npz, file, "description_embeddings")?;
    let classes = vector(&mut npz, file, "description_class")?
        .ok_or_else(|| npz_error(file, "description_class", "missing"))?;
    let labels = vector(&mut npz, file, "labels")?;
    let d = images.ncols();
    if descriptions.ncols() != d {
        return Err(Error::Input(format!(
            "{file}: image_embeddings have d = {d} but description_embeddings have d = {}",
            descriptions.ncols()
        )));
    }
    if d == 0 || images.nrows() == 0 || descriptions.nrows() == 0 {
        return Err(Error::Input(format!("{file}: no images, no descriptions or zero-length embeddings")));
    }
    if classes.len() != descriptions.nrows() {
        return Err(npz_error(
            file,
            "description_class",
            format!("has {} entries for {} descriptions", classes.len(), descriptions.nrows()),
        ));
    }
    if let Some(bad) = classes.iter().find(|&&c| c < 0) {
        return Err(npz_error(file, "description_class", format!("negative class index {bad}")));
    }
    // Indices are ≥ 0 (checked above); one past the largest is the class count.
    let num_classes = classes.iter().map(|&c| (c as usize).saturating_add(1)).max().unwrap_or(0);
    for c in 0..num_classes {
        if !classes.iter().any(|&x| x as usize == c) {
            return Err(npz_error(file, "description_class", format!("class {c} has no descriptions")));
        }
    }
    let labels: Option<Vec<usize>> = match labels {
        None => None,
        Some(l) => {
            if l.len() != images.nrows() {
                return Err(npz_error(file, "labels", format!("has {} entries for {} images", l.len(), images.nrows())));
            }
            if let Some(bad) = l.iter().find(|&&x| x < 0 || x as usize >= num_classes) {
                return Err(npz_error(file, "labels", format!("label {bad} is not a class (0..{})", num_classes.saturating_sub(1))));
            }
            Some(l.iter().map(|&x| x as usize).collect())
        }
    };
    Ok(EvalEmbeddings {
        dim: d,
        images: rows_normalized(&images, file, "image_embeddings")?,
        descriptions: rows_normalized(&descriptions, file, "description_embeddings")?,
        description_class: classes.iter().map(|&c| c as usize).collect(),
        num_classes,
        labels,
    })
}
