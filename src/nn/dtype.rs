//! The compute dtype. Its own module so that `linear` and `weights`, which both
//! convert, do not import each other.

use candle_core::{DType, Result, Tensor};

/// Converts a dense tensor of any float dtype (f16, bf16, f64) to f32, the
/// dtype every CPU kernel computes in; an f32 tensor is returned as is (shared
/// storage, no copy).
pub fn to_f32(t: &Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F32 {
        Ok(t.clone())
    } else {
        t.to_dtype(DType::F32)
    }
}
