//! What each fuzz target does with its input, in one place: the targets in
//! `fuzz_targets/` call these functions, and `tests/fuzz_regressions.rs`
//! includes this file (`#[path]`) to feed every committed crash input to the
//! same function. Each returns the library's `Result`; the only failure is a
//! panic, an abort, a hang or an allocation beyond the limits.
//!
//! `dicom_structured` is the exception: its input is not a file but the choices
//! of the DICOM generator `dicom_gen.rs` (that module needs the `arbitrary`
//! crate, so it and `dicom_structured` are left out of the regression test,
//! `cfg(test)`); the regression inputs of what it finds are the generated files,
//! replayed by `dicom` (`scripts/fuzz.sh` writes them).
//!
//! The inputs go through the same library calls the CLI and the wasm API make
//! with untrusted bytes. The pixel limit is 4 MP instead of the default 100 MP
//! so that one execution stays fast (the check and the code path are the same).
#![allow(dead_code)]

#[cfg(not(test))]
pub mod dicom_gen;

use std::cell::RefCell;
use std::io::Cursor;

use kpl::bundle::{load_pipeline, EncoderFile, EncoderKind, FileEntry, Files, Manifest, ModelInfo, PackDtype};
use kpl::classifier::classify_embeddings;
use kpl::knowledge::base::KnowledgeBase;
use kpl::preprocess::{dicom, DecodeLimits, PixelTensor};
use kpl::{Pipeline, ModelFiles};

/// The pixel limit of the targets (the CLI's default is 100 MP).
pub const MAX_PIXELS: u64 = 4_000_000;

const CONFIG: &[u8] = include_bytes!("../../tests/fixtures/tiny-quickgelu-f32/config.json");
const PREPROCESSOR: &[u8] = include_bytes!("../../tests/fixtures/tiny-quickgelu-f32/preprocessor_config.json");
const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/tiny-quickgelu-f32/model.safetensors");

fn limits() -> DecodeLimits {
    DecodeLimits { max_pixels: MAX_PIXELS }
}

thread_local! {
    /// The tiny fixture model, loaded once per thread: image bytes go through
    /// its `prepare_image`, exactly as `kpl embed-image`/`classify` and the
    /// wasm `embedImage` do.
    static PIPELINE: RefCell<Option<Pipeline>> = const { RefCell::new(None) };
}

fn with_pipeline<T>(f: impl FnOnce(&Pipeline) -> T) -> T {
    PIPELINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let pipeline = slot.get_or_insert_with(|| {
            let mut p = Pipeline::load(ModelFiles {
                config: ("config.json".into(), CONFIG.to_vec()),
                weights: ("model.safetensors".into(), WEIGHTS.to_vec()),
                tokenizer: None,
                preprocessor: Some(("preprocessor_config.json".into(), PREPROCESSOR.to_vec())),
            })
            .expect("the fixture model loads");
            p.limits = limits();
            p
        });
        f(pipeline)
    })
}

/// `image_decode`: bytes → RGB8 (PNG, JPEG, WebP, BMP, TIFF, or DICOM by its
/// marker) with the pixel limit checked from the header → resize, crop,
/// normalise to the model's pixel tensor (`Pipeline::prepare_image`).
pub fn image_decode(data: &[u8]) -> kpl::Result<()> {
    let pixels = with_pipeline(|p| p.prepare_image(data, "fuzz-input.png"))?;
    assert_eq!(pixels.data.len(), 3 * pixels.height * pixels.width);
    Ok(())
}

/// `dicom`: the DICOM parser, codecs and rendering (`dicom::summary`, then
/// `dicom::decode` of the middle frame and of frame 0), then preprocessing.
pub fn dicom(data: &[u8]) -> kpl::Result<()> {
    let summary = dicom::summary(data, "fuzz.dcm", limits())?;
    let decoded = dicom::decode(data, "fuzz.dcm", limits(), None)?;
    assert!(decoded.frame < summary.frames.max(1));
    let image = &decoded.image;
    assert_eq!(image.data.len(), image.width * image.height * image.channels);
    if decoded.frame != 0 {
        dicom::decode(data, "fuzz.dcm", limits(), Some(0))?;
    }
    with_pipeline(|p| p.prepare_rgb(image, "fuzz.dcm"))?;
    Ok(())
}

/// Decode only: `dicom::decode` of the middle frame, then of the first and the
/// last (parse, pixel data codecs, rendering to 8-bit RGB; no resizing, no
/// model). Every frame `Ok` must have the size the summary gives.
pub fn dicom_decode(data: &[u8]) -> kpl::Result<()> {
    let decoded = dicom::decode(data, "fuzz.dcm", limits(), None)?;
    let frames = decoded.summary.frames;
    let check = |d: &dicom::DicomImage| {
        let image = &d.image;
        assert_eq!((image.width, image.height), (d.summary.columns as usize, d.summary.rows as usize));
        assert_eq!(image.data.len(), image.width * image.height * image.channels);
        assert_eq!(image.channels, 3);
    };
    check(&decoded);
    assert!(decoded.frame < frames.max(1));
    let last = frames.saturating_sub(1);
    for frame in [0, last] {
        if frame != decoded.frame {
            check(&dicom::decode(data, "fuzz.dcm", limits(), Some(frame))?);
        }
    }
    Ok(())
}

/// What `dicom_structured` does with one generated file, from the environment:
/// `KPL_DICOM_OUT=PATH` writes the (mutated) file to PATH and its parameters to
/// PATH.params.txt (how `scripts/fuzz.sh` turns a crash input into a regression
/// file); `KPL_FUZZ_STRICT=1` makes an unmutated, conforming file that does
/// not decode a crash (the generator's own check, and a decoder's refusal of a
/// valid file), except refusals whose message contains one of the
/// `|`-separated strings of `KPL_FUZZ_STRICT_SKIP` (known ones).
#[cfg(not(test))]
struct StructuredEnv {
    out: Option<std::path::PathBuf>,
    strict: bool,
    skip: Vec<String>,
}

#[cfg(not(test))]
fn structured_env() -> &'static StructuredEnv {
    static ENV: std::sync::OnceLock<StructuredEnv> = std::sync::OnceLock::new();
    ENV.get_or_init(|| StructuredEnv {
        out: std::env::var_os("KPL_DICOM_OUT").map(Into::into),
        strict: std::env::var_os("KPL_FUZZ_STRICT").is_some_and(|v| v == "1"),
        skip: std::env::var("KPL_FUZZ_STRICT_SKIP")
            .map(|v| v.split('|').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default(),
    })
}

/// `dicom_structured`: the input chooses a DICOM file's parameters
/// (`dicom_gen::DicomParams`: transfer syntax, sizes, bits, photometric
/// interpretation, palette, codec options, …) and then a few byte mutations
/// of the file `dicom_gen::write` makes; the file goes through [`dicom_decode`].
#[cfg(not(test))]
pub fn dicom_structured(data: &[u8]) -> kpl::Result<()> {
    let Some((params, file, mutations)) = dicom_gen::from_fuzz_input(data) else {
        return Ok(());
    };
    let env = structured_env();
    if let (Some(path), false) = (&env.out, data.is_empty()) {
        std::fs::write(path, &file).expect("KPL_DICOM_OUT is writable");
        let mut notes = path.clone().into_os_string();
        notes.push(".params.txt");
        std::fs::write(notes, format!("{params:#?}\nmutations: {mutations:?}\n")).expect("KPL_DICOM_OUT is writable");
    }
    let result = dicom_decode(&file);
    if env.strict && mutations.is_empty() && params.should_decode() {
        if let Err(e) = &result {
            let message = e.to_string();
            if !env.skip.iter().any(|s| message.contains(s.as_str())) {
                panic!("a valid generated file does not decode: {message}\n{params:#?}");
            }
        }
    }
    result
}

/// A zero pixel tensor of the model's input size.
fn blank_pixels(pipeline: &Pipeline) -> PixelTensor {
    let size = pipeline.model.image_size();
    PixelTensor { height: size, width: size, data: vec![0.0; 3 * size * size] }
}

/// Runs whichever towers a model loaded from fuzzed bytes has, once, on a
/// blank image and a two-token text: a model that loads must not panic when used.
fn exercise(pipeline: &Pipeline) -> kpl::Result<()> {
    let size = pipeline.model.image_size();
    if pipeline.model.has_vision() && size <= 1024 {
        pipeline.embed_pixels(&[blank_pixels(pipeline)], true)?;
    }
    if pipeline.model.has_text() {
        let last = (pipeline.model.vocab_size().max(1) - 1) as u32;
        pipeline.embed_ids(&[0, last], true)?;
    }
    Ok(())
}

/// `gguf_bundle`: a bundle's `manifest.json` (`Manifest::from_json`) and an
/// encoder GGUF (`EncoderFile::read`, its metadata, tensors, embedded
/// config/preprocessor/tokenizer JSON, `load_pipeline`), as `kpl`'s bundle
/// loader and the wasm `loadBundle` read them. The same input is tried as both.
pub fn gguf_bundle(data: &[u8]) -> kpl::Result<()> {
    let manifest = Manifest::from_json(data, "manifest.json");
    if let Ok(m) = &manifest {
        let _ = m.to_json();
        for path in [kpl::bundle::IMAGE_ENCODER, kpl::bundle::TEXT_ENCODER] {
            if let Some(entry) = m.entry(path) {
                let _ = kpl::bundle::verify(&mut Cursor::new(data), path, entry);
            }
        }
    }
    let file = EncoderFile::read(&mut Cursor::new(data), "encoder.gguf")?;
    let (sha256, bytes) = kpl::bundle::sha256_of(&mut Cursor::new(data)).expect("in memory");
    let entry = FileEntry { path: file.kind.as_str().to_string() + ".gguf", bytes, sha256 };
    let manifest = Manifest {
        format_version: kpl::bundle::FORMAT_VERSION,
        model: ModelInfo {
            name: "fuzz".into(),
            fingerprint: file.fingerprint.clone(),
            dtype: PackDtype::Q8,
            random_weights: true,
            projection_dim: 0,
            image_size: 0,
        },
        files: match file.kind {
            EncoderKind::Image => Files { image_encoder: Some(entry), text_encoder: None },
            EncoderKind::Text => Files { image_encoder: None, text_encoder: Some(entry) },
        },
        knowledge: Vec::new(),
    };
    let (image, text) = match file.kind {
        EncoderKind::Image => (Some(file), None),
        EncoderKind::Text => (None, Some(file)),
    };
    let pipeline = load_pipeline(&manifest, "manifest.json", image, text)?;
    exercise(&pipeline)
}

/// `safetensors`: a Hugging Face checkpoint's `model.safetensors` (header,
/// dtypes, shapes, data) with the fixture's config, through
/// `Pipeline::load`, the path `kpl --model DIR` and the wasm `ClipModel.load` take.
pub fn safetensors(data: &[u8]) -> kpl::Result<()> {
    let pipeline = Pipeline::load(ModelFiles {
        config: ("config.json".into(), CONFIG.to_vec()),
        weights: ("model.safetensors".into(), data.to_vec()),
        tokenizer: None,
        preprocessor: Some(("preprocessor_config.json".into(), PREPROCESSOR.to_vec())),
    })?;
    exercise(&pipeline)
}

/// `kplkb`: `KnowledgeBase::from_bytes` (magic, version, header JSON, sections,
/// SHA-256, finiteness), then what loading a base leads to: the model check,
/// the engine's embeddings, one image classified with evidence, and a
/// write/read round trip that must give the same base.
pub fn kplkb(data: &[u8]) -> kpl::Result<()> {
    let kb = KnowledgeBase::from_bytes(data, "fuzz.kplkb")?;
    let _ = kb.check_model("0123456789abcdef", kpl::models::Family::Clip, "fuzz.kplkb", "model");
    for row in 0..kb.class_of.len() {
        let _ = kb.description_text(row);
    }
    let again = KnowledgeBase::from_bytes(&kb.to_bytes(), "again.kplkb").expect("a base it wrote reads back");
    assert_eq!(again, kb, "write/read round trip");
    // A wrong-length embedding is an error, never a panic.
    let _ = classify_embeddings(&kb, &[vec![1.0; 3]], &Default::default(), 100.0, kpl::models::Scoring::Softmax, 5);
    if kb.dim <= 4096 {
        let image = vec![1.0 / (kb.dim as f32).sqrt(); kb.dim];
        classify_embeddings(&kb, &[image], &Default::default(), 100.0, kpl::models::Scoring::Softmax, 5)?;
    }
    Ok(())
}

/// `npz` (needs the `cli` feature): the embeddings `.npz` of `kpl eval-embeddings` (zip container, npy
/// headers, dtypes, shapes, class indices, NaN), `kpl::npz::read_eval_npz`.
#[cfg(feature = "cli")]
pub fn npz(data: &[u8]) -> kpl::Result<()> {
    let e = kpl::npz::read_eval_npz(Cursor::new(data), "fuzz.npz")?;
    assert!(e.images.iter().chain(&e.descriptions).all(|r| r.len() == e.dim));
    assert_eq!(e.description_class.len(), e.descriptions.len());
    Ok(())
}

/// `sentencepiece`: a `spiece.model` (`SentencePiece::from_bytes`: protobuf,
/// pieces, byte pieces, precompiled charsmap), then encoding through the
/// charsmap trie and the unigram Viterbi, plain and with the SigLIP tokenizer
/// rules (when the model has `</s>` and `<unk>`). Every id must be in range.
pub fn sentencepiece(data: &[u8]) -> kpl::Result<()> {
    use kpl::text::sentencepiece::SentencePiece;
    use kpl::text::siglip_tokenizer::SiglipTokenizer;
    const TEXTS: [&str; 4] = ["a photo of a chest x-ray", "  ＡＢＣ ﬁbrosis  肺炎 🫁 </s> <unk>", "\u{2581}\u{2581} x", ""];
    let sp = SentencePiece::from_bytes(data, "fuzz.model")?;
    for text in TEXTS {
        assert!(sp.encode(text).iter().all(|&id| (id as usize) < sp.len()), "id out of range");
    }
    let tok = SiglipTokenizer::new(sp, None, Some(16))?;
    for text in TEXTS {
        let out = tok.encode(text);
        assert_eq!(out.ids.len(), 16);
        assert!(out.ids.iter().all(|&id| (id as usize) < tok.vocab_size()), "id out of range");
    }
    Ok(())
}

/// `jpeg_ls`: the JPEG-LS decoder (`dicom::jpeg_ls::decode`) on a raw
/// codestream of at most 2^20 samples: every sample it returns lies within the
/// frame's precision, and the count is the frame's.
pub fn jpeg_ls(data: &[u8]) -> kpl::Result<()> {
    let decoded = dicom::jpeg_ls::decode(data, 1 << 20).map_err(|e| kpl::Error::image("fuzz.jls", e))?;
    assert_eq!(decoded.samples.len(), decoded.width * decoded.height * decoded.components);
    assert!(decoded.samples.iter().all(|&v| u32::from(v) < 1 << decoded.precision));
    Ok(())
}

/// The storages `pytorch_pickle` puts next to a fuzzed `data.pkl`: entries
/// `archive/data/0` … `archive/data/3`, 64 bytes each (16 f32, 32 f16/bf16,
/// 8 i64/f64 or 64 u8 elements).
const PICKLE_STORAGES: usize = 4;

/// A zip archive of stored entries (CRCs left 0: the reader slices stored
/// entries and never checks them), as `torch.save` lays one out.
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let (n, len) = (name.len() as u16, data.len() as u32);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date, crc
        for v in [len, len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // versions, flags, method, time, date, crc
        for v in [len, len] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&n.to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let (cd_offset, cd_len, count) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// `pytorch_pickle`: `StateDict::from_bytes` (zip directory, the restricted
/// unpickler, storages, strided views) then `into_weights` and one tensor read
/// through it. The first byte chooses what the rest is: odd, the `data.pkl` of
/// an archive that also holds [`PICKLE_STORAGES`] storages (so the fuzzer
/// works on the pickle itself); even, a whole checkpoint file. Every tensor
/// must have its shape's element count.
pub fn pytorch_pickle(data: &[u8]) -> kpl::Result<()> {
    use kpl::io::pytorch::StateDict;
    let Some((&selector, rest)) = data.split_first() else { return Ok(()) };
    let wrapped;
    let file = if selector & 1 == 1 {
        let storage: Vec<u8> = (0..64u8).collect();
        let names: Vec<String> = (0..PICKLE_STORAGES).map(|i| format!("archive/data/{i}")).collect();
        let mut entries: Vec<(&str, &[u8])> = vec![("archive/data.pkl", rest)];
        entries.extend(names.iter().map(|n| (n.as_str(), storage.as_slice())));
        wrapped = stored_zip(&entries);
        wrapped.as_slice()
    } else {
        rest
    };
    let sd = StateDict::from_bytes(file, "fuzz.bin")?;
    let first = sd.names().next().map(str::to_owned);
    for name in sd.names() {
        let t = sd.get(name).expect("listed tensors are present");
        assert_eq!(t.elem_count(), t.dims().iter().product::<usize>());
    }
    if let Some(name) = first {
        let shape = sd.shape(&name).expect("present").to_vec();
        let _ = sd.into_weights().get(shape, &name);
    }
    Ok(())
}

/// `jpeg`: the Pillow-exact JPEG decoder (`preprocess::jpeg::decode`: markers,
/// Huffman tables, sequential and progressive scans, restarts, IDCT,
/// upsampling, colour conversion) with the targets' pixel limit: an image it
/// returns has 1 or 3 channels and exactly its size in bytes; a refusal
/// (invalid, unsupported, too large) is an `Err`. Then `decode_rgb8` on the same
/// bytes, which reads and applies the EXIF orientation of the APP1 segments the
/// decoder returned: the same pixels, maybe transposed.
pub fn jpeg(data: &[u8]) -> kpl::Result<()> {
    let decoded = kpl::preprocess::jpeg::decode(data, MAX_PIXELS).map_err(|e| kpl::Error::image("fuzz.jpg", e.to_string()))?;
    assert!(matches!(decoded.channels, 1 | 3));
    assert_eq!(decoded.data.len(), decoded.width * decoded.height * decoded.channels);
    // Then what `decode_rgb8` adds: the EXIF orientation read from the APP1 data the
    // decoder returned, and applied (the same pixels, maybe transposed).
    let rgb = kpl::preprocess::decode_rgb8(data, "fuzz.jpg", limits())?;
    let (w, h) = (decoded.width, decoded.height);
    assert!((rgb.width, rgb.height) == (w, h) || (rgb.width, rgb.height) == (h, w));
    assert_eq!(rgb.data.len(), 3 * w * h);
    Ok(())
}

/// The targets by name, for the regression test and `scripts/fuzz.sh`
/// (`dicom_structured` is not here: its inputs are replayed as the files they
/// generate, by `dicom`).
pub const TARGETS: &[(&str, fn(&[u8]) -> kpl::Result<()>)] = &[
    ("image_decode", image_decode),
    ("dicom", dicom),
    ("gguf_bundle", gguf_bundle),
    ("safetensors", safetensors),
    ("kplkb", kplkb),
    ("jpeg_ls", jpeg_ls),
    ("jpeg", jpeg),
    ("sentencepiece", sentencepiece),
    ("pytorch_pickle", pytorch_pickle),
    #[cfg(feature = "cli")]
    ("npz", npz),
];
