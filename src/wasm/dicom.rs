//! DICOM in the page: the summary a result card shows (modality, body part, size,
//! frames, transfer syntax, the file's windows), and the window (VOI) an image is
//! rendered with and was rendered with. Only `DicomSummary`'s and `VoiUsed`'s
//! fields ever leave the decoder, never a patient-identifying attribute (see
//! `preprocess::dicom`).

use wasm_bindgen::prelude::*;

use crate::preprocess::dicom::{VoiChoice, VoiUsed};
use crate::preprocess::{dicom, DecodeLimits, PixelTensor};
use super::js_error;
use super::model::ClipModel;

/// A window choice as JavaScript gives it (www/protocol.js `DicomWindowChoice`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsWindow {
    Index { index: u32 },
    Window { center: f64, width: f64 },
}

/// `undefined` or `null`: the README's rule; `{index}`: the file's window
/// `index` (from 0); `{center, width}`: that window (finite, width at least 1).
fn voi_choice(value: &JsValue) -> Result<VoiChoice, String> {
    if value.is_undefined() || value.is_null() {
        return Ok(VoiChoice::Default);
    }
    let bad = || "the DICOM window must be {index} (a whole number from 0) or {center, width}".to_string();
    match serde_wasm_bindgen::from_value::<JsWindow>(value.clone()).map_err(|_| bad())? {
        JsWindow::Index { index } => Ok(VoiChoice::Index(index)),
        JsWindow::Window { center, width } => VoiChoice::window(center, width),
    }
}

impl ClipModel {
    /// Decodes and preprocesses an image with the window `voi` (see `voi_choice`),
    /// and keeps the window that decode used for `dicomWindowUsed`, so that the
    /// page learns it without decoding the file twice.
    pub(crate) fn prepare(&self, bytes: &[u8], name: &str, voi: &JsValue) -> Result<PixelTensor, JsError> {
        self.dicom_window_used.replace(None);
        let choice = voi_choice(voi).map_err(|e| JsError::new(&format!("{name}: {e}")))?;
        let (pixels, used) = self.pipeline.prepare_image_with(bytes, name, choice).map_err(js_error)?;
        self.dicom_window_used.replace(used);
        Ok(pixels)
    }

    pub(crate) fn new(pipeline: crate::pipeline::Pipeline) -> Self {
        Self { pipeline, dicom_window_used: Default::default() }
    }
}

#[wasm_bindgen]
impl ClipModel {
    /// The window the last `embedImage` / `preparePixels` rendered a greyscale
    /// DICOM image with, or `null` (another format, colour, or that call failed):
    /// `{kind: 'file', index, center, width, explanation}`, `{kind: 'given',
    /// center, width}` or `{kind: 'min-max', low, high}` (modality units, as
    /// `kpl decode`'s `voi`), plus `description`, the same in words
    /// (`VoiUsed::describe`, `kpl decode`'s `voi_description`).
    #[wasm_bindgen(getter, js_name = dicomWindowUsed)]
    pub fn dicom_window_used(&self) -> Result<JsValue, JsError> {
        let Some(used) = self.dicom_window_used.borrow().clone() else {
            return Ok(JsValue::NULL);
        };
        let mut value = serde_json::to_value(&used).map_err(js_error)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("description".into(), VoiUsed::describe(&used).into());
        }
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        serde::Serialize::serialize(&value, &serializer).map_err(js_error)
    }
}

/// The summary of a DICOM file's bytes, or `null` when the bytes are not DICOM
/// (no `.dcm` name, no `DICM` marker at byte 128, and no plausible data set
/// without a preamble: see `preprocess::dicom::is_dicom`).
///
/// Returns `{modality, body_part, rows, columns, frames, photometric_interpretation,
/// transfer_syntax, transfer_syntax_name, warnings, windows}` (`modality` and
/// `body_part` may be null; `warnings` a list of sentences, empty when the file reads
/// as it declares; `windows` the file's `{center, width, explanation}`, in order),
/// read from the data set without decoding the pixels, plus any field
/// `DicomSummary` gains later. Throws an `Error` naming the file when it is
/// DICOM but cannot be read. `maxMegapixels` bounds what the parser accepts
/// (default 100), as for decoding.
#[wasm_bindgen(js_name = dicomSummary)]
pub fn dicom_summary(
    bytes: &[u8],
    name: &str,
    max_megapixels: Option<f64>,
) -> Result<JsValue, JsError> {
    if !dicom::is_dicom(bytes, name) {
        return Ok(JsValue::NULL);
    }
    let mut limits = DecodeLimits::default();
    if let Some(mp) = max_megapixels {
        limits.max_pixels = (mp * 1e6).max(1.0) as u64;
    }
    let summary = dicom::summary(bytes, name, limits).map_err(|e| JsError::new(&e.to_string()))?;
    let mut value = serde_json::to_value(&summary).map_err(|e| JsError::new(&e.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "transfer_syntax_name".into(),
            summary.transfer_syntax_name().into(),
        );
    }
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    serde::Serialize::serialize(&value, &serializer).map_err(|e| JsError::new(&e.to_string()))
}

/// The 8-bit RGB rendering of an image or DICOM file's bytes, exactly what the
/// model's preprocessing starts from (before any resize): `{width, height, rgb}`,
/// `rgb` a `Uint8Array` of `width × height × 3` values, row by row. For DICOM the
/// rendering of `decode_rgb8` (middle frame, modality LUT, first VOI window, …).
/// Throws an `Error` naming the file when the bytes cannot be decoded;
/// `maxMegapixels` bounds the image as for embedding (default 100).
#[wasm_bindgen(js_name = decodeImage)]
pub fn decode_image(
    bytes: &[u8],
    name: &str,
    max_megapixels: Option<f64>,
) -> Result<JsValue, JsError> {
    let mut limits = DecodeLimits::default();
    if let Some(mp) = max_megapixels {
        limits.max_pixels = (mp * 1e6).max(1.0) as u64;
    }
    let image = crate::preprocess::decode_rgb8(bytes, name, limits)
        .map_err(|e| JsError::new(&e.to_string()))?;
    if image.channels != 3 || image.data.len() != image.width * image.height * 3 {
        return Err(JsError::new(&format!(
            "{name}: the decoder returned {} channels for {}×{} pixels",
            image.channels, image.width, image.height
        )));
    }
    let out = js_sys::Object::new();
    let set = |key: &str, value: JsValue| {
        js_sys::Reflect::set(&out, &JsValue::from_str(key), &value)
            .map(|_| ())
            .map_err(|_| JsError::new("decodeImage: cannot build the result object"))
    };
    set("width", JsValue::from(image.width as u32))?;
    set("height", JsValue::from(image.height as u32))?;
    set("rgb", js_sys::Uint8Array::from(image.data.as_slice()).into())?;
    Ok(out.into())
}
