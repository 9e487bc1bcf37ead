//! Random access to a weight file's bytes wherever they lie (in memory, a
//! file on disk, or a JavaScript array outside the wasm memory), so that a loader copies each
//! tensor once, straight into the allocation the model keeps, instead of
//! copying the whole file into memory first (wasm memory never shrinks, so a
//! whole-file copy would stay the page's peak for good).
//!
//! Offsets and lengths come from untrusted files: no panics (clippy denies
//! indexing, unwraps and unchecked arithmetic here).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable
)]

use std::io::{Error as IoError, ErrorKind, Read, Seek, SeekFrom};

/// A file's bytes, read by position.
pub trait ByteSource {
    /// The file's length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; an error when the file ends first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

fn past_end(offset: u64, n: usize, len: u64) -> IoError {
    IoError::new(ErrorKind::UnexpectedEof, format!("{n} bytes at offset {offset} run past the end ({len} bytes)"))
}

impl<S: ByteSource + ?Sized> ByteSource for &S {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| past_end(offset, buf.len(), ByteSource::len(self)))?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| past_end(offset, buf.len(), ByteSource::len(self)))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// A file on disk read by position (native): the loaders copy each tensor
/// from it once, into the allocation the model keeps, so a model's peak
/// memory is its weights, not its file plus its weights. The length is taken
/// when the file is opened; a file that shrinks later gives read errors.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileBytes {
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileBytes {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }

    /// The whole file in memory (for `kpl pack`, which reads every tensor anyway).
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let len = usize::try_from(self.len).map_err(|_| IoError::other("file too large for this platform"))?;
        let mut bytes = vec![0u8; len];
        self.read_at(0, &mut bytes)?;
        Ok(bytes)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileBytes {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(past_end(offset, buf.len(), self.len));
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            // seek_read may return fewer bytes than asked: loop until full.
            let (mut done, mut at) = (0usize, offset);
            while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
                let n = std::os::windows::fs::FileExt::seek_read(&self.file, rest, at)?;
                if n == 0 {
                    return Err(past_end(at, rest.len(), self.len));
                }
                done = done.saturating_add(n);
                at = at.saturating_add(n as u64);
            }
            Ok(())
        }
        #[cfg(not(any(unix, windows)))]
        {
            Err(IoError::new(ErrorKind::Unsupported, "reading a file by position"))
        }
    }
}

/// `Read + Seek` over a [`ByteSource`], copying only what is read (GGUF's
/// reader and the bundle's SHA-256 take a stream).
pub struct SourceReader<S> {
    source: S,
    pos: u64,
}

impl<S: ByteSource> SourceReader<S> {
    pub fn new(source: S) -> Self {
        Self { source, pos: 0 }
    }
}

impl<S: ByteSource> Read for SourceReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if let Some(part) = buf.get_mut(..n).filter(|p| !p.is_empty()) {
            self.source.read_at(self.pos, part)?;
            self.pos = self.pos.saturating_add(n as u64);
        }
        Ok(n)
    }
}

impl<S: ByteSource> Seek for SourceReader<S> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => i128::from(self.source.len()).saturating_add(i128::from(d)),
            SeekFrom::Current(d) => i128::from(self.pos).saturating_add(i128::from(d)),
        };
        self.pos = u64::try_from(target).map_err(|_| IoError::new(ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// Bytes copied per step by [`decode_le`]: small next to any real model (the
/// chunk adds to the peak), large enough that the per-call cost of a copy out
/// of a JS array stays negligible.
const CHUNK_BYTES: usize = 1 << 16;

/// Decodes `out.len()` little-endian values of `N` bytes each, stored at
/// `offset` in `source`, into `out` with `one`, copying a chunk of at most
/// 64 KiB at a time: a tensor goes from its file into its final allocation
/// without a whole copy in between. Allocate `out` before calling, so that
/// the chunk, freed last, returns to the top of the heap instead of leaving a
/// hole below the tensor.
pub fn decode_le<S, T, const N: usize>(source: &S, offset: u64, out: &mut [T], one: impl Fn([u8; N]) -> T) -> std::io::Result<()>
where
    S: ByteSource + ?Sized,
{
    let per_chunk = CHUNK_BYTES.checked_div(N).unwrap_or(1).clamp(1, out.len().max(1));
    let mut chunk = vec![0u8; per_chunk.saturating_mul(N)];
    let mut offset = offset;
    for part in out.chunks_mut(per_chunk) {
        let len = part.len().saturating_mul(N);
        let bytes = chunk.get_mut(..len).ok_or_else(|| IoError::other("chunk size"))?;
        source.read_at(offset, bytes)?;
        let (values, _) = bytes.as_chunks::<N>();
        for (value, raw) in part.iter_mut().zip(values) {
            *value = one(*raw);
        }
        offset = offset.checked_add(len as u64).ok_or_else(|| past_end(offset, len, source.len()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    fn reads_by_position_and_as_a_stream() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut buf = [0u8; 4];
        bytes.read_at(10, &mut buf).unwrap();
        assert_eq!(buf, [10, 11, 12, 13]);
        assert!(bytes.read_at(253, &mut buf).is_err(), "past the end");
        assert!(bytes.read_at(u64::MAX, &mut buf).is_err(), "offset overflow");

        let mut reader = SourceReader::new(bytes);
        reader.seek(SeekFrom::End(-3)).unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, [253, 254, 255]);
        assert!(reader.seek(SeekFrom::Current(-300)).is_err());
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    #[cfg(not(target_arch = "wasm32"))]
    fn reads_a_file_by_position() {
        let path = std::env::temp_dir().join(format!("kpl-file-bytes-{}", std::process::id()));
        std::fs::write(&path, (0..=255u8).collect::<Vec<_>>()).unwrap();
        let file = FileBytes::open(&path).unwrap();
        assert_eq!(file.len(), 256);
        let mut buf = [0u8; 4];
        file.read_at(252, &mut buf).unwrap();
        assert_eq!(buf, [252, 253, 254, 255]);
        assert!(file.read_at(253, &mut buf).is_err(), "past the end");
        assert!(file.read_at(u64::MAX, &mut buf).is_err(), "offset overflow");
        assert_eq!(file.to_vec().unwrap().len(), 256);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn decodes_in_chunks() {
        let values: Vec<u32> = (0..700_000).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![0u32; values.len() - 2];
        decode_le(&bytes, 8, &mut out, u32::from_le_bytes).unwrap();
        assert_eq!(out, values[2..]);
        assert!(decode_le(&bytes, 12, &mut out, u32::from_le_bytes).is_err(), "one value past the end");
        decode_le(&bytes, 0, &mut [] as &mut [u32], u32::from_le_bytes).unwrap();
    }
}
