//! The WebGPU engine for JavaScript. Decoding and preprocessing stay on the
//! CPU (ClipModel.preparePixels, which throws for a bad file at once); only
//! the encoder's forward pass runs on the GPU, so a rejected promise from
//! this class always means the GPU failed and the caller may rerun the same
//! pixels on the CPU (ClipModel.embedPixels).

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::gpu::{l2_normalize_rows, GpuClip};
use super::js_error;
use super::model::ClipModel;

#[wasm_bindgen]
impl ClipModel {
    /// An image file's bytes decoded and preprocessed: [3, size, size] floats.
    /// `voi` (optional): the window of a greyscale DICOM file, as for `embedImage`.
    #[wasm_bindgen(js_name = preparePixels)]
    pub fn prepare_pixels(&self, bytes: &[u8], name: &str, voi: JsValue) -> Result<Vec<f32>, JsError> {
        Ok(self.prepare(bytes, name, &voi)?.data)
    }

    /// The L2-normalised embedding of one preprocessed image, on the CPU.
    #[wasm_bindgen(js_name = embedPixels)]
    pub fn embed_pixels(&self, pixels: Vec<f32>) -> Result<Vec<f32>, JsError> {
        let size = self.pipeline.model.image_size();
        let tensor = crate::preprocess::PixelTensor { height: size, width: size, data: pixels };
        if tensor.data.len() != 3 * size * size {
            return Err(JsError::new(&format!("{} pixel values; the model takes 3×{size}×{size}", tensor.data.len())));
        }
        Ok(self.pipeline.embed_pixels(&[tensor], true).map_err(js_error)?.remove(0))
    }
}

/// The model's encoders on the GPU (WebGPU), created from a loaded ClipModel.
#[wasm_bindgen]
pub struct GpuEncoder {
    gpu: Rc<GpuClip>,
}

fn rejected(e: impl std::fmt::Display) -> JsValue {
    js_error(e).into()
}

#[wasm_bindgen]
impl GpuEncoder {
    /// Opens the browser's GPU and uploads `model`'s weights (the towers it
    /// has). Resolves to a GpuEncoder; rejects with the reason when there is
    /// no adapter, the device fails or the weights do not fit.
    #[wasm_bindgen(js_name = create)]
    pub fn create(model: &ClipModel) -> js_sys::Promise {
        let model = model.pipeline.model.clone();
        future_to_promise(async move {
            let gpu = GpuClip::new(&model).await.map_err(rejected)?;
            Ok(GpuEncoder { gpu: Rc::new(gpu) }.into())
        })
    }

    /// "name (backend, device type)"; browsers often leave the name empty.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.gpu.adapter().to_string()
    }

    /// A software adapter (SwiftShader and the like): usually slower than wasm.
    #[wasm_bindgen(getter, js_name = isSoftware)]
    pub fn is_software(&self) -> bool {
        self.gpu.adapter().software
    }

    /// The device reads f16 weights (`shader-f16`); an f16 model then keeps
    /// them at half the memory.
    #[wasm_bindgen(getter, js_name = hasF16)]
    pub fn has_f16(&self) -> bool {
        self.gpu.has_f16()
    }

    #[wasm_bindgen(getter, js_name = hasTextEncoder)]
    pub fn has_text_encoder(&self) -> bool {
        self.gpu.has_text()
    }

    /// L2-normalised embeddings of `count` preprocessed images (their
    /// preparePixels outputs concatenated), as one Float32Array of count rows.
    #[wasm_bindgen(js_name = embedPixels)]
    pub fn embed_pixels(&self, pixels: Vec<f32>, count: usize) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let mut features = gpu.image_features(&pixels, count).await.map_err(rejected)?;
            l2_normalize_rows(&mut features, count);
            Ok(js_sys::Float32Array::from(features.as_slice()).into())
        })
    }

    /// L2-normalised embeddings of texts, tokenised by `model` (throws at once
    /// when it has no tokenizer), as one Float32Array of texts.length rows.
    #[wasm_bindgen(js_name = embedTexts)]
    pub fn embed_texts(&self, model: &ClipModel, texts: Vec<String>) -> Result<js_sys::Promise, JsError> {
        let tokenizer = model.pipeline.tokenizer().map_err(js_error)?;
        let encoded = texts.iter().map(|t| tokenizer.encode_with_length(t)).collect::<crate::Result<Vec<_>>>().map_err(js_error)?;
        let (ids, lengths): (Vec<_>, Vec<_>) = encoded.into_iter().unzip();
        let gpu = self.gpu.clone();
        Ok(future_to_promise(async move {
            let mut features = gpu.text_features(&ids, &lengths).await.map_err(rejected)?;
            l2_normalize_rows(&mut features, ids.len());
            Ok(js_sys::Float32Array::from(features.as_slice()).into())
        }))
    }
}
