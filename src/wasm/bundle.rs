//! `kpl pack` bundles in the browser: `ClipModel.loadBundle` and
//! `addTextEncoder`, and `verifyBundleFile`; every file is checked against the
//! manifest's size and SHA-256 before it is parsed, streamed from its JS array.

use wasm_bindgen::prelude::*;

use super::js_bytes::JsBytes;
use super::js_error;
use super::model::ClipModel;
use crate::io::byte_source::SourceReader;

/// Checks an encoder's bytes against its manifest entry (streamed from the JS
/// array), then opens it: its tensors are copied out of the array one at a
/// time as the model takes them (`EncoderFile::open`).
fn read_encoder(
    entry: Option<&crate::bundle::FileEntry>,
    bytes: &js_sys::Uint8Array,
    what: &str,
) -> Result<crate::bundle::EncoderFile, JsError> {
    let entry = entry.ok_or_else(|| JsError::new(&format!("manifest.json lists no {what}")))?;
    let bytes = JsBytes::new(bytes);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, SourceReader::new(&bytes));
    crate::bundle::verify(&mut reader, &entry.path, entry).map_err(js_error)?;
    crate::bundle::EncoderFile::open(bytes, &entry.path).map_err(js_error)
}

#[wasm_bindgen]
impl ClipModel {
    /// Loads a `kpl pack` bundle: `manifest` is the text of its manifest.json,
    /// `imageEncoder` the bytes of image_encoder.gguf and `textEncoder` (optional:
    /// fetch it only for custom labels, then call `addTextEncoder`) those of
    /// text_encoder.gguf. Each file is checked against the manifest's size and
    /// SHA-256 first; an altered or truncated file throws an error naming it.
    #[wasm_bindgen(js_name = loadBundle)]
    pub fn load_bundle(
        manifest: &str,
        image_encoder: Option<js_sys::Uint8Array>,
        text_encoder: Option<js_sys::Uint8Array>,
    ) -> Result<ClipModel, JsError> {
        let m = crate::bundle::Manifest::from_json(manifest.as_bytes(), "manifest.json").map_err(js_error)?;
        let image = image_encoder
            .map(|b| read_encoder(m.files.image_encoder.as_ref(), &b, "image encoder"))
            .transpose()?;
        let text = text_encoder
            .map(|b| read_encoder(m.files.text_encoder.as_ref(), &b, "text encoder"))
            .transpose()?;
        let pipeline = crate::bundle::load_pipeline(&m, &m.model.name, image, text).map_err(js_error)?;
        Ok(ClipModel::new(pipeline))
    }

    /// Adds the bundle's text encoder (text_encoder.gguf) to a model loaded
    /// with `loadBundle` without it.
    #[wasm_bindgen(js_name = addTextEncoder)]
    pub fn add_text_encoder(&mut self, manifest: &str, text_encoder: js_sys::Uint8Array) -> Result<(), JsError> {
        let m = crate::bundle::Manifest::from_json(manifest.as_bytes(), "manifest.json").map_err(js_error)?;
        let text = read_encoder(m.files.text_encoder.as_ref(), &text_encoder, "text encoder")?;
        crate::bundle::attach_text_encoder(&mut self.pipeline, &m, text).map_err(js_error)
    }

    #[wasm_bindgen(getter, js_name = hasImageEncoder)]
    pub fn has_image_encoder(&self) -> bool {
        self.pipeline.model.has_vision()
    }

    #[wasm_bindgen(getter, js_name = hasTextEncoder)]
    pub fn has_text_encoder(&self) -> bool {
        self.pipeline.model.has_text()
    }
}

/// Throws unless `bytes` match the size and SHA-256 that the bundle manifest
/// (`manifest`, its JSON text) lists for `path` (e.g. a knowledge base).
#[wasm_bindgen(js_name = verifyBundleFile)]
pub fn verify_bundle_file(manifest: &str, path: &str, bytes: &js_sys::Uint8Array) -> Result<(), JsError> {
    let m = crate::bundle::Manifest::from_json(manifest.as_bytes(), "manifest.json").map_err(js_error)?;
    let entry = m.entry(path).ok_or_else(|| JsError::new(&format!("manifest.json does not list {path}")))?;
    crate::bundle::verify(&mut SourceReader::new(JsBytes::new(bytes)), path, entry).map_err(js_error)
}
