//! A loaded model with one of its tower settings changed, for tests of a
//! setting no committed fixture has (the GPU engine against the CPU on the
//! same structures: both read the changed setting).

use crate::models::tower::{TextPool, VisionPool};
use crate::models::Model;

/// `model` with mean pooling in both towers: the text tower averages its
/// attended tokens (open_clip's `mean_pooler`), the image tower its patch
/// tokens after the final norm (timm's `global_pool="avg"`).
pub fn mean_pooled(model: &Model) -> Model {
    let mut model = model.clone();
    if let Some(text) = model.text.as_mut() {
        text.pool = TextPool::Mean;
    }
    if let Some(vision) = model.vision.as_mut() {
        vision.pool = VisionPool::MeanPatches;
    }
    model
}
