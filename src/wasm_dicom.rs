//! DICOM in the page: the summary a result card shows (modality, body part, size,
//! frames, transfer syntax). Only `DicomSummary`'s fields ever leave the decoder,
//! never a patient-identifying attribute (see `preprocess::dicom`).

use wasm_bindgen::prelude::*;

use crate::preprocess::{dicom, DecodeLimits};

/// The summary of a DICOM file's bytes, or `null` when the bytes are not DICOM
/// (no `.dcm` name and no `DICM` marker at byte 128).
///
/// Returns `{modality, body_part, rows, columns, frames, transfer_syntax,
/// transfer_syntax_name}` (`modality` and `body_part` may be null), plus any field
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
