//! The knowledge embedding base file (`.kplkb`): a task's descriptions embedded
//! by one model's text encoder, so classification needs no text encoder.
//!
//! Layout (all integers little-endian), format version 1:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `KPLKB\r\n\x1a` (a text-mode transfer that rewrites line ends breaks it visibly) |
//! | 4 | format version, u32 |
//! | 4 | header length H, u32 |
//! | H | header, UTF-8 JSON (`Header` below) |
//! | rest | payload: the sections the header lists, in order, row-major |
//!
//! Sections: `descriptions` (one row per description, classes in order),
//! `class_prompts` (one row per class: "a photo of a {class}."), and after
//! `kpl fit` also `proxies` (one learned proxy per class, always f32).
//! The header carries the SHA-256 of the payload and the fingerprint of the
//! model that made it; loading checks both.
//!
//! No file may panic the reader: indexing, `unwrap`/`expect` and unchecked
//! integer arithmetic are denied by clippy in this module (`make test` runs clippy).
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

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::task::{Task, TaskClass};
use crate::models::Family;
use crate::nn::hex;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"KPLKB\r\n\x1a";
pub const FORMAT_VERSION: u32 = 1;
/// A header larger than this is not a header (protects against absurd lengths).
const MAX_HEADER: usize = 64 << 20;
/// Magic, format version and header length.
const PREFIX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDtype {
    F16,
    F32,
}

impl StorageDtype {
    fn bytes(self) -> usize {
        match self {
            StorageDtype::F16 => 2,
            StorageDtype::F32 => 4,
        }
    }
}

/// Which model made a base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStamp {
    pub fingerprint: String,
    pub name: String,
    pub random_weights: bool,
    /// The model's family; bases written before SigLIP carry none and are CLIP's.
    #[serde(default = "clip_family")]
    pub family: Family,
}

fn clip_family() -> Family {
    Family::Clip
}

/// Proxies learned by `kpl fit` on an unlabelled pool, for inductive use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitInfo {
    pub method: String,
    pub pool_size: usize,
    pub k: usize,
    pub params: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Section {
    name: String,
    rows: usize,
    dtype: StorageDtype,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    task: String,
    #[serde(default)]
    title: String,
    prompt_template: String,
    classes: Vec<TaskClass>,
    dim: usize,
    model: ModelStamp,
    sections: Vec<Section>,
    #[serde(default)]
    fit: Option<FitInfo>,
    payload_sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeBase {
    pub task: String,
    pub title: String,
    pub prompt_template: String,
    pub classes: Vec<TaskClass>,
    pub dim: usize,
    pub model: ModelStamp,
    /// Rows in class order, `class_of[i]` the class of row i.
    pub descriptions: Vec<f32>,
    pub class_of: Vec<usize>,
    pub class_prompts: Vec<f32>,
    pub proxies: Option<(Vec<f32>, FitInfo)>,
    pub dtype: StorageDtype,
}

/// The class of each description row, classes in order.
fn class_of_rows(classes: &[TaskClass]) -> Vec<usize> {
    classes
        .iter()
        .enumerate()
        .flat_map(|(c, class)| std::iter::repeat_n(c, class.descriptions.len()))
        .collect()
}

fn encode(values: &[f32], dtype: StorageDtype, out: &mut Vec<u8>) {
    match dtype {
        StorageDtype::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        StorageDtype::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes())),
    }
}

fn decode(bytes: &[u8], dtype: StorageDtype) -> Vec<f32> {
    match dtype {
        StorageDtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(array(c))).collect(),
        StorageDtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes(array(c))).to_f32()).collect(),
    }
}

/// The first `N` bytes of `bytes` (zeros where it is shorter; callers pass exact chunks).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.iter_mut().zip(bytes).for_each(|(o, b)| *o = *b);
    out
}

/// The first 12 characters of a fingerprint, for messages (any string is safe).
fn short(fingerprint: &str) -> String {
    fingerprint.chars().take(12).collect()
}

impl KnowledgeBase {
    pub fn from_task_embeddings(
        task: &Task,
        model: ModelStamp,
        dim: usize,
        descriptions: Vec<f32>,
        class_prompts: Vec<f32>,
        dtype: StorageDtype,
    ) -> Self {
        let class_of = class_of_rows(&task.classes);
        Self {
            task: task.name.clone(),
            title: task.title.clone(),
            prompt_template: task.prompt_template.clone(),
            classes: task.classes.clone(),
            dim,
            model,
            descriptions,
            class_of,
            class_prompts,
            proxies: None,
            dtype,
        }
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// The text of description row `row` ("" for a row the base does not have).
    pub fn description_text(&self, row: usize) -> &str {
        let Some(&class) = self.class_of.get(row) else { return "" };
        let first = self.class_of.iter().position(|&c| c == class).unwrap_or(0);
        self.classes
            .get(class)
            .and_then(|c| c.descriptions.get(row.saturating_sub(first)))
            .map_or("", String::as_str)
    }

    /// The embeddings in the form the KPL engine takes.
    pub fn engine_embeddings(&self) -> std::result::Result<kpl_core::KnowledgeEmbeddings, kpl_core::KplError> {
        kpl_core::KnowledgeEmbeddings::new(self.dim, self.class_names(), self.descriptions.clone(), self.class_of.clone())
    }

    /// An error unless the model of this `fingerprint` and `family` built this base.
    pub fn check_model(&self, fingerprint: &str, family: Family, base_name: &str, model_name: &str) -> Result<()> {
        if self.model.family != family {
            return Err(Error::model(
                base_name,
                format!(
                    "this knowledge base was built with a {} model ({}), not with a {family} model like {model_name}: \
                     their embeddings are in different spaces; rebuild it with `kpl build-kb --model {model_name}`",
                    self.model.family, self.model.name
                ),
            ));
        }
        if self.model.fingerprint != fingerprint {
            return Err(Error::model(
                base_name,
                format!(
                    "this knowledge base was built with another model ({}, fingerprint {}…), not with {model_name} \
                     (fingerprint {}…); rebuild it with `kpl build-kb --model {model_name}`",
                    self.model.name,
                    short(&self.model.fingerprint),
                    short(fingerprint)
                ),
            ));
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sections = vec![
            Section { name: "descriptions".into(), rows: self.class_of.len(), dtype: self.dtype },
            Section { name: "class_prompts".into(), rows: self.classes.len(), dtype: self.dtype },
        ];
        let mut payload = Vec::new();
        encode(&self.descriptions, self.dtype, &mut payload);
        encode(&self.class_prompts, self.dtype, &mut payload);
        if let Some((proxies, _)) = &self.proxies {
            sections.push(Section { name: "proxies".into(), rows: self.classes.len(), dtype: StorageDtype::F32 });
            encode(proxies, StorageDtype::F32, &mut payload);
        }
        let header = Header {
            task: self.task.clone(),
            title: self.title.clone(),
            prompt_template: self.prompt_template.clone(),
            classes: self.classes.clone(),
            dim: self.dim,
            model: self.model.clone(),
            sections,
            fit: self.proxies.as_ref().map(|(_, info)| info.clone()),
            payload_sha256: hex(&Sha256::digest(&payload)),
        };
        #[allow(clippy::expect_used)] // plain structs with string keys always serialise
        let header = serde_json::to_vec(&header).expect("serialisable header");
        let mut out = Vec::with_capacity(PREFIX.saturating_add(header.len()).saturating_add(payload.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        // A header is a few hundred kB at most: far below u32::MAX.
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload);
        out
    }

    /// Parses and verifies a base; `name` names the file in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let bad = |m: String| Error::model(name, m);
        let (Some(magic), Some(version), Some(header_len), Some(rest)) =
            (bytes.get(..8), bytes.get(8..12), bytes.get(12..PREFIX), bytes.get(PREFIX..))
        else {
            return Err(bad("not a KPL knowledge base (.kplkb): wrong magic bytes".into()));
        };
        if magic != MAGIC {
            return Err(bad("not a KPL knowledge base (.kplkb): wrong magic bytes".into()));
        }
        let version = u32::from_le_bytes(array(version));
        if version > FORMAT_VERSION {
            return Err(bad(format!(
                "knowledge base format version {version} is newer than this kpl reads ({FORMAT_VERSION}); update kpl"
            )));
        }
        if version == 0 {
            return Err(bad("knowledge base format version 0 does not exist".into()));
        }
        let header_len = u32::from_le_bytes(array(header_len)) as usize;
        let (Some(header), Some(payload)) = (rest.get(..header_len), rest.get(header_len..)) else {
            return Err(bad(format!("truncated: the header claims {header_len} bytes, the file has {}", bytes.len())));
        };
        if header_len > MAX_HEADER {
            return Err(bad(format!("the header claims {header_len} bytes, more than a header can be ({MAX_HEADER})")));
        }
        let header: Header = serde_json::from_slice(header).map_err(|e| bad(format!("malformed header: {e}")))?;
        if hex(&Sha256::digest(payload)) != header.payload_sha256 {
            return Err(bad("corrupt or truncated: the payload's SHA-256 does not match the header".into()));
        }
        let dim = header.dim;
        let total_descriptions =
            header.classes.iter().try_fold(0usize, |n, c| n.checked_add(c.descriptions.len())).unwrap_or(usize::MAX);
        if dim == 0 || header.classes.is_empty() {
            return Err(bad("the header has no classes or a zero embedding dimension".into()));
        }
        let mut rest = payload;
        let mut descriptions = None;
        let mut class_prompts = None;
        let mut proxies = None;
        for section in &header.sections {
            let section_bytes = section
                .rows
                .checked_mul(dim)
                .and_then(|n| n.checked_mul(section.dtype.bytes()))
                .and_then(|n| rest.get(..n).zip(rest.get(n..)));
            let Some((section_bytes, after)) = section_bytes else {
                return Err(bad(format!("section {} does not fit the payload", section.name)));
            };
            let values = decode(section_bytes, section.dtype);
            rest = after;
            let expected_rows = if section.name == "descriptions" { total_descriptions } else { header.classes.len() };
            if section.rows != expected_rows {
                return Err(bad(format!(
                    "section {} has {} rows, expected {expected_rows}",
                    section.name, section.rows
                )));
            }
            match section.name.as_str() {
                "descriptions" => descriptions = Some((values, section.dtype)),
                "class_prompts" => class_prompts = Some(values),
                "proxies" => proxies = Some(values),
                _ => {} // Unknown sections from a compatible writer are skipped.
            }
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} bytes after the last section", rest.len())));
        }
        let (descriptions, dtype) = descriptions.ok_or_else(|| bad("no descriptions section".into()))?;
        let class_prompts = class_prompts.ok_or_else(|| bad("no class_prompts section".into()))?;
        if descriptions.iter().chain(&class_prompts).any(|v| !v.is_finite()) {
            return Err(bad("embeddings contain NaN or infinite values".into()));
        }
        let proxies = match (proxies, header.fit) {
            (Some(p), Some(info)) => Some((p, info)),
            (None, None) => None,
            _ => return Err(bad("proxies and their fit information must come together".into())),
        };
        let class_of = class_of_rows(&header.classes);
        Ok(Self {
            task: header.task,
            title: header.title,
            prompt_template: header.prompt_template,
            classes: header.classes,
            dim,
            model: header.model,
            descriptions,
            class_of,
            class_prompts,
            proxies,
            dtype,
        })
    }
}
