//! The tensor list of a random checkpoint and its safetensors file: names and
//! shapes added layer by layer from a family's name table, values drawn per
//! tensor from a seeded normal stream, written as f32 one tensor at a time.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::nn::transformer::{LayerNames, QkvNames};

/// How a tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// normal(0, std) from the tensor's own stream.
    Normal,
    Constant(f32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl TensorSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The tensor's values for this seed and std.
    pub fn values(&self, seed: u64, std: f32) -> Vec<f32> {
        match self.init {
            Init::Constant(c) => vec![c; self.numel()],
            Init::Normal => {
                let mut rng = Normal::new(seed ^ fnv1a(self.name.as_bytes()));
                (0..self.numel()).map(|_| std * rng.next()).collect()
            }
        }
    }
}

/// A checkpoint's tensor list, built from the names of the family's table.
#[derive(Debug, Default)]
pub(crate) struct Specs(pub(crate) Vec<TensorSpec>);

impl Specs {
    pub(crate) fn add(&mut self, name: impl Into<String>, shape: Vec<usize>, init: Init) {
        self.0.push(TensorSpec { name: name.into(), shape, init });
    }

    /// `{prefix}.weight` [out, in] and, with `bias`, `{prefix}.bias` [out] (random).
    pub(crate) fn linear(&mut self, prefix: &str, input: usize, output: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), vec![output, input], Init::Normal);
        if bias {
            self.add(format!("{prefix}.bias"), vec![output], Init::Normal);
        }
    }

    /// `{prefix}.weight` = 1 and `{prefix}.bias` = 0, [hidden].
    pub(crate) fn layer_norm(&mut self, prefix: &str, hidden: usize) {
        self.add(format!("{prefix}.weight"), vec![hidden], Init::Constant(1.0));
        self.add(format!("{prefix}.bias"), vec![hidden], Init::Constant(0.0));
    }

    /// The blocks of an encoder at `prefix` as `names` spells them.
    pub(crate) fn encoder(&mut self, prefix: &str, names: &LayerNames, hidden: usize, intermediate: usize, layers: usize) {
        for i in 0..layers {
            let p = format!("{prefix}.{}.{i}", names.layers);
            match names.qkv {
                QkvNames::Separate { q, k, v } => {
                    for proj in [q, k, v] {
                        self.linear(&format!("{p}.{proj}"), hidden, hidden, true);
                    }
                }
                QkvNames::Fused { weight, bias } => {
                    self.add(format!("{p}.{weight}"), vec![3 * hidden, hidden], Init::Normal);
                    self.add(format!("{p}.{bias}"), vec![3 * hidden], Init::Normal);
                }
            }
            self.linear(&format!("{p}.{}", names.out), hidden, hidden, true);
            self.layer_norm(&format!("{p}.{}", names.norm1), hidden);
            self.layer_norm(&format!("{p}.{}", names.norm2), hidden);
            self.linear(&format!("{p}.{}", names.fc1), hidden, intermediate, true);
            self.linear(&format!("{p}.{}", names.fc2), intermediate, hidden, true);
        }
    }

    /// The list sorted by name (the order the file stores them in).
    pub(crate) fn sorted(mut self) -> Vec<TensorSpec> {
        self.0.sort_by(|a, b| a.name.cmp(&b.name));
        self.0
    }
}

/// Size in bytes of the safetensors file [`write_safetensors`] writes.
pub fn safetensors_len(specs: &[TensorSpec]) -> u64 {
    let (header, data) = safetensors_header(specs);
    8 + header.len() as u64 + data
}

/// Streams `specs` as a safetensors file (all f32, in the given order).
pub fn write_safetensors(w: &mut impl Write, specs: &[TensorSpec], seed: u64, std: f32) -> io::Result<()> {
    let (header, _) = safetensors_header(specs);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(&header)?;
    let mut bytes = Vec::new();
    for spec in specs {
        bytes.clear();
        bytes.extend(spec.values(seed, std).iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&bytes)?;
    }
    Ok(())
}

/// The JSON header (padded with spaces to a multiple of 8 bytes) and the data size.
fn safetensors_header(specs: &[TensorSpec]) -> (Vec<u8>, u64) {
    let mut map = serde_json::Map::new();
    map.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for spec in specs {
        let end = offset + 4 * spec.numel() as u64;
        map.insert(spec.name.clone(), json!({"dtype": "F32", "shape": spec.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(map)).expect("JSON values serialise");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    (header, offset)
}

/// A random checkpoint folder's contents: its tensors and the files beside them.
pub(crate) struct RandomFolder<'a> {
    pub(crate) tensors: &'a [TensorSpec],
    pub(crate) seed: u64,
    pub(crate) std: f32,
    /// `config.json`: written last, so a folder that has it is complete.
    pub(crate) config: Value,
    /// Other JSON files (`preprocessor_config.json`, …), by name.
    pub(crate) json: Vec<(&'static str, Value)>,
    /// Files copied in (source, name in the folder), e.g. a tokenizer.
    pub(crate) copies: Vec<(PathBuf, &'static str)>,
}

/// A family's `config.json` object with the marks of a random checkpoint:
/// `kpl_random_weights` (every output then says the weights are random), the
/// seed and the std (so that a folder can be recognised and reused).
pub(crate) fn stamp_random(mut config: Value, seed: u64, std: f32) -> Value {
    if let Value::Object(map) = &mut config {
        map.insert("kpl_random_weights".into(), json!(true));
        map.insert("kpl_random_seed".into(), json!(seed));
        map.insert("kpl_random_std".into(), json!(std));
    }
    config
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("JSON values serialise")
}

impl RandomFolder<'_> {
    /// Writes the folder into `dir` (created if needed); the weights are streamed
    /// to `model.safetensors` one tensor at a time.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (src, name) in &self.copies {
            std::fs::copy(src, dir.join(name))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
        }
        let weights = dir.join("model.safetensors");
        let mut file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&weights)?);
        write_safetensors(&mut file, self.tensors, self.seed, self.std)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        for (name, value) in &self.json {
            std::fs::write(dir.join(name), pretty(value))?;
        }
        std::fs::write(dir.join("config.json"), pretty(&self.config))
    }

    /// True when `dir` already holds exactly this folder (same `config.json`,
    /// weights of the right size, the copied files present), so callers can
    /// reuse it instead of regenerating hundreds of megabytes.
    pub(crate) fn exists_in(&self, dir: &Path) -> bool {
        let Ok(existing) = std::fs::read(dir.join("config.json")) else { return false };
        let weights_ok = std::fs::metadata(dir.join("model.safetensors"))
            .is_ok_and(|m| m.len() == safetensors_len(self.tensors));
        let copies_ok = self.copies.iter().all(|(_, name)| dir.join(name).is_file());
        existing == pretty(&self.config) && weights_ok && copies_ok
    }
}

/// FNV-1a, to give each tensor its own stream.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Standard normal numbers: xorshift64* uniforms through Box–Muller.
struct Normal {
    state: u64,
    spare: Option<f32>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        // splitmix64 once, so that nearby seeds start far apart (and never at 0).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self { state: if z == 0 { 1 } else { z }, spare: None }
    }

    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1]: never 0, so the logarithm below is finite.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt();
        let angle = std::f64::consts::TAU * self.uniform();
        self.spare = Some((radius * angle.sin()) as f32);
        (radius * angle.cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_stream_has_the_asked_moments() {
        let spec = TensorSpec { name: "w".into(), shape: vec![200_000], init: Init::Normal };
        let values = spec.values(7, 0.02);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 2e-4, "mean {mean}");
        assert!((std - 0.02).abs() < 2e-4, "std {std}");
        assert_eq!(values, spec.values(7, 0.02), "deterministic");
        assert_ne!(values, spec.values(8, 0.02), "the seed matters");
    }
}
