//! `manifest.json` of a bundle (its layout is in the parent module's
//! documentation): parsed from untrusted bytes, and the size and SHA-256 check
//! of every file it lists.
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

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{newer_version, PackDtype, FORMAT_VERSION};
use crate::nn::hex;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub fingerprint: String,
    pub dtype: PackDtype,
    pub random_weights: bool,
    pub projection_dim: usize,
    pub image_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// A file name inside the bundle folder (no folders, no `..`).
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Files {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_encoder: Option<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder: Option<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeEntry {
    pub task: String,
    #[serde(default)]
    pub title: String,
    #[serde(flatten)]
    pub file: FileEntry,
    pub classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub model: ModelInfo,
    pub files: Files,
    #[serde(default)]
    pub knowledge: Vec<KnowledgeEntry>,
}

pub(crate) fn check_file_name(manifest_name: &str, path: &str) -> Result<()> {
    let plain = !path.is_empty()
        && !path.contains(['/', '\\', '\0'])
        && path != "."
        && path != ".."
        && !path.starts_with('.');
    if plain {
        Ok(())
    } else {
        Err(Error::model(manifest_name, format!("file {path:?} is not a plain file name inside the bundle folder")))
    }
}

impl Manifest {
    /// Parses `manifest.json`; `name` names it in errors. The format version is
    /// checked before anything else so that a newer bundle says so plainly.
    pub fn from_json(bytes: &[u8], name: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::model(name, format!("not a bundle manifest (invalid JSON: {e})")))?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::model(name, "not a bundle manifest (no format_version)"))?;
        if version > u64::from(FORMAT_VERSION) {
            return Err(newer_version(name, version));
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| Error::model(name, format!("not a usable bundle manifest: {e}")))?;
        for entry in manifest.files.image_encoder.iter().chain(&manifest.files.text_encoder) {
            check_file_name(name, &entry.path)?;
        }
        for entry in &manifest.knowledge {
            check_file_name(name, &entry.file.path)?;
        }
        if manifest.files.image_encoder.is_none() && manifest.files.text_encoder.is_none() {
            return Err(Error::model(name, "the bundle lists neither an image nor a text encoder"));
        }
        Ok(manifest)
    }

    /// The manifest as `kpl pack` writes it.
    #[allow(clippy::expect_used)] // plain structs with string keys always serialise
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the manifest serialises")
    }

    /// The entry of a file the manifest lists, by its path.
    pub fn entry(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .image_encoder
            .iter()
            .chain(&self.files.text_encoder)
            .chain(self.knowledge.iter().map(|k| &k.file))
            .find(|e| e.path == path)
    }
}

/// SHA-256 and length of everything `reader` yields from its start.
pub fn sha256_of<R: Read + Seek>(reader: &mut R) -> std::io::Result<(String, u64)> {
    reader.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        total = total.saturating_add(n as u64);
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Checks a file's size and SHA-256 against its manifest entry; `name` names it.
pub fn verify<R: Read + Seek>(reader: &mut R, name: &str, entry: &FileEntry) -> Result<()> {
    let (sha, len) = sha256_of(reader).map_err(|e| Error::io(name, e))?;
    if len != entry.bytes {
        return Err(Error::model(
            name,
            format!(
                "altered or truncated: {len} bytes where manifest.json says {} (download it again or re-run kpl pack)",
                entry.bytes
            ),
        ));
    }
    if sha != entry.sha256 {
        return Err(Error::model(
            name,
            "altered or truncated: its SHA-256 does not match manifest.json (download it again or re-run kpl pack)",
        ));
    }
    Ok(())
}

