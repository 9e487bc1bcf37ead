//! Evidence for a prediction: the class's descriptions ranked by similarity to the
//! image, so a clinician can see which visual features the decision rests on.

use crate::kernels::dot_f32_f64;
use crate::knowledge::KnowledgeEmbeddings;

/// One description and its cosine similarity to the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Row of the description in the knowledge base.
    pub description: usize,
    /// Cosine similarity x · t.
    pub similarity: f32,
}

/// The `top` descriptions of `class` most similar to `image`, best first (ties to the
/// lower row). Inputs are validated by the caller.
pub(crate) fn rank_descriptions(
    image: &[f32],
    kb: &KnowledgeEmbeddings,
    class: usize,
    top: usize,
) -> Vec<Evidence> {
    let mut scored: Vec<(usize, f64)> = kb
        .rows_of_class(class)
        .iter()
        .map(|&r| (r, dot_f32_f64(image, kb.description(r))))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(top);
    scored
        .into_iter()
        .map(|(description, s)| Evidence {
            description,
            similarity: s as f32,
        })
        .collect()
}
