//! How a family turns cosine similarities into label scores: CLIP's softmax
//! over labels, SigLIP's independent sigmoid per label. The one
//! implementation; the browser worker calls it through the wasm API.

use serde::Serialize;

/// Zero-shot scores from `exp(logit_scale) · cos(image, label prompt)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Scoring {
    /// `softmax(exp(logit_scale) · cos)` over the labels: sums to 1 (CLIP, `CLIPModel`'s
    /// `logits_per_image.softmax(dim=1)`).
    Softmax,
    /// `sigmoid(exp(logit_scale) · cos + bias)` for each label on its own: a
    /// probability per label, which need not sum to 1 (SigLIP, `SiglipModel`'s
    /// `torch.sigmoid(logits_per_image)`, the logits including `logit_bias`).
    Sigmoid { bias: f32 },
}

impl Scoring {
    /// The scores of one image's cosines (one per label) at `scale = exp(logit_scale)`.
    pub fn scores(self, scale: f32, cosines: &[f32]) -> Vec<f32> {
        match self {
            Scoring::Softmax => softmax(&cosines.iter().map(|c| scale * c).collect::<Vec<_>>()),
            Scoring::Sigmoid { bias } => cosines.iter().map(|c| sigmoid(scale * c + bias)).collect(),
        }
    }

    /// Whether the scores of one image sum to 1 (one label among them).
    pub fn sums_to_one(self) -> bool {
        matches!(self, Scoring::Softmax)
    }

    /// A sentence for output: what the numbers are.
    pub fn describe(self) -> &'static str {
        match self {
            Scoring::Softmax => "softmax over the labels (the scores sum to 1)",
            Scoring::Sigmoid { .. } => {
                "sigmoid per label (each score is that label's own probability; they need not sum to 1)"
            }
        }
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// The logistic function, without overflow for large negative inputs.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_scores_are_independent() {
        let s = Scoring::Sigmoid { bias: -10.0 };
        let both = s.scores(10.0, &[0.9, 0.2]);
        let alone = s.scores(10.0, &[0.9]);
        assert_eq!(both[0], alone[0]);
        // 1 / (1 + e^-(9 - 10)) = 1 / (1 + e)
        assert!((both[0] - 1.0 / (1.0 + std::f32::consts::E)).abs() < 1e-7);
        assert!((sigmoid(-100.0) - (-100f32).exp()).abs() < 1e-40);
        let soft = Scoring::Softmax.scores(10.0, &[0.9, 0.2]);
        assert!((soft.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((soft[0] - 1.0 / (1.0 + (-7f32).exp())).abs() < 1e-6);
    }
}
