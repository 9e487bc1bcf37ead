//! Step 2: choose each class's k most relevant descriptions and average them into a
//! text proxy.

use crate::kernels::dot;
use crate::knowledge::KnowledgeEmbeddings;
use crate::matrix::{l2_normalize_f64, Matrix};

/// Selected description rows per class (best first) and the text proxies (C×d, f64).
#[derive(Debug, Clone)]
pub(crate) struct Retrieval {
    pub selected: Vec<Vec<usize>>,
    pub weights: Vec<f64>,
}

/// Dataset-level retrieval: descriptions ranked by their mean cosine over all images.
///
/// mean_i(x_i · t) equals (mean_i x_i) · t, so the image mean is formed once and each
/// description costs one dot product instead of n (a large local pool stays cheap).
pub(crate) fn dataset_retrieval(images: &Matrix, kb: &KnowledgeEmbeddings, k: usize) -> Retrieval {
    let n = images.rows() as f64;
    let mut mean = vec![0.0f64; images.cols()];
    for row in images.iter_rows() {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    for m in mean.iter_mut() {
        *m /= n;
    }
    retrieve_against(&mean, kb, k)
}

/// Retrieval against one query vector (the image mean, or a single image).
pub(crate) fn retrieve_against(query: &[f64], kb: &KnowledgeEmbeddings, k: usize) -> Retrieval {
    let d = kb.dim();
    let mut selected = Vec::with_capacity(kb.num_classes());
    let mut weights = vec![0.0f64; kb.num_classes() * d];
    for c in 0..kb.num_classes() {
        let scored: Vec<(usize, f64)> = kb
            .rows_of_class(c)
            .iter()
            .map(|&r| (r, dot::<f64>(kb.description(r), query)))
            .collect();
        let sel = top_k(scored, k);
        let w = &mut weights[c * d..(c + 1) * d];
        for &r in &sel {
            for (a, &t) in w.iter_mut().zip(kb.description(r)) {
                *a += t as f64;
            }
        }
        let m = sel.len() as f64;
        for a in w.iter_mut() {
            *a /= m;
        }
        l2_normalize_f64(w);
        selected.push(sel);
    }
    Retrieval { selected, weights }
}

/// The `min(k, len)` best `(row, score)` pairs' rows, best first; equal scores go to
/// the lower row (a stable order, so duplicated descriptions are handled
/// deterministically). Scores are finite because inputs are validated.
pub(crate) fn top_k(mut scored: Vec<(usize, f64)>, k: usize) -> Vec<usize> {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored.into_iter().map(|(r, _)| r).collect()
}
