//! DICOM in the page: the summary a result card shows (modality, body part, size,
//! frames, transfer syntax). Only `DicomSummary`'s fields ever leave the decoder,
//! never a patient-identifying attribute (see `preprocess::dicom`).

use wasm_bindgen::prelude::*;

use crate::preprocess::{dicom, DecodeLimits};

/// The summary of a DICOM file's bytes, or `null` when the bytes are not DICOM
/// (no `.dcm` name, no `DICM` marker at byte 128, and no plausible data set
/// without a preamble: see `preprocess::dicom::is_dicom`).
///
/// Returns `{modality, body_part, rows, columns, frames, transfer_syntax,
/// transfer_syntax_name, warnings}` (`modality` and `body_part` may be null;
/// `warnings` a list of sentences, empty when the file reads as it declares), plus any field
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
