//! A JavaScript `Uint8Array` as a [`ByteSource`]: a weight file the worker
//! fetched stays in its JS array, and the loaders copy out only the pieces they
//! read (a header, one tensor at a time, the chunks a SHA-256 streams), so the
//! file is never copied whole into wasm memory, which never shrinks.

use crate::io::byte_source::ByteSource;

pub(crate) struct JsBytes {
    array: js_sys::Uint8Array,
}

impl JsBytes {
    pub(crate) fn new(array: &js_sys::Uint8Array) -> Self {
        Self { array: array.clone() }
    }
}

impl ByteSource for JsBytes {
    fn len(&self) -> u64 {
        u64::from(self.array.length())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= self.len());
        let (Ok(start), Some(Ok(end))) = (u32::try_from(offset), end.map(u32::try_from)) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes at offset {offset} run past the end ({} bytes)", buf.len(), self.len()),
            ));
        };
        self.array.subarray(start, end).copy_to(buf);
        Ok(())
    }
}
