//! # kpl-core
//!
//! The KPL method (Knowledge Proxy Learning, arXiv 2501.11231, extending InMaP) on
//! precomputed CLIP embeddings, in pure Rust: no I/O, no threads, no randomness and no
//! platform-specific code, so it gives the same bits natively and in wasm32.
//!
//! The steps follow `docs/kpl-method.md` ("exactly as the reference code computes it"):
//!
//! 1. retrieval: per class, the k descriptions with the highest mean cosine over all
//!    images, averaged into a text proxy ([`text_proxy`]);
//! 2. pseudo-labels P0 = softmax(X W_t / tau_t) ([`pseudo_labels`]);
//! 3. optimal transport: KPL's greedy Greenkhorn or InMaP's Sinkhorn ([`transport`]);
//! 4. projected gradient descent on unit-norm image proxies ([`proxy`]);
//! 5. prediction by argmax cosine.
//!
//! [`run`] does one [`Method`], [`run_all`] the four from one shared retrieval. The
//! product's extra modes: [`classify_single`] (per-image retrieval, no pool),
//! [`classify_with_proxies`] (inductive use of learned proxies) and [`evidence`].
//!
//! Inputs are expected L2-normalised (CLIP output); [`normalize_rows`] is offered for
//! callers that are not sure.
//!
//! The top-level functions validate every input and return [`KplError`] instead of
//! panicking. The step modules ([`pseudo_labels`], [`transport`], [`proxy`],
//! [`predict`], [`kernels`]) are the building blocks they are made of: they take flat
//! row-major buffers, trust the shapes they are given and panic on inconsistent lengths.
//!
//! Determinism: no randomness, threads or hash-map iteration; summation orders are fixed
//! in the source and `exp`/`ln` are implemented here, so native and wasm32 builds
//! produce the same bits (checked by `examples/fingerprint.rs`).

mod detmath;
pub mod error;
mod evidence;
pub mod kernels;
mod knowledge;
mod matrix;
mod params;
pub mod predict;
pub mod proxy;
pub mod pseudo_labels;
mod retrieval;
pub mod transport;

pub use error::{KplError, Result};
pub use evidence::Evidence;
pub use knowledge::KnowledgeEmbeddings;
pub use matrix::{l2_normalize, normalize_rows, Matrix};
pub use params::{KplParams, Precision};
pub use proxy::ProxyFit;
pub use transport::{Marginal, OtStep};

use error::check_finite;

/// The classifiers the reference reports side by side, plus InMaP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Argmax over the retrieved text proxies W_t (no learning).
    TextProxy,
    /// Proxy learning on the raw pseudo-labels P0 (no transport).
    Proxy,
    /// KPL: proxy learning after the greedy transport.
    Kpl,
    /// InMaP: proxy learning after Sinkhorn.
    InMaP,
}

impl Method {
    /// All methods in the order the CLI prints them.
    pub const ALL: [Method; 4] = [Method::TextProxy, Method::Proxy, Method::Kpl, Method::InMaP];

    /// Stable lowercase name ("text-proxy", "proxy", "kpl", "inmap").
    pub fn name(self) -> &'static str {
        match self {
            Method::TextProxy => "text-proxy",
            Method::Proxy => "proxy",
            Method::Kpl => "kpl",
            Method::InMaP => "inmap",
        }
    }

    /// Inverse of [`Method::name`] (also accepts "text_proxy").
    pub fn from_name(name: &str) -> Option<Method> {
        match name {
            "text-proxy" | "text_proxy" => Some(Method::TextProxy),
            "proxy" => Some(Method::Proxy),
            "kpl" => Some(Method::Kpl),
            "inmap" => Some(Method::InMaP),
            _ => None,
        }
    }
}

/// Retrieved knowledge: text proxies and the description rows behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct TextProxy {
    /// W_t, one unit-norm proxy per class (C×d).
    pub proxies: Matrix,
    /// Per class, the selected description rows (knowledge-base row indices), best
    /// first; `min(k, M_c)` of them.
    pub selected: Vec<Vec<usize>>,
}

/// Diagnostics of proxy learning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitReport {
    /// Pseudo-label rows made one-hot (max > alpha).
    pub hardened_rows: usize,
    /// Learning-rate halvings.
    pub halvings: usize,
    /// Learning rate at the end.
    pub final_lr: f64,
    /// Frobenius norm of the last gradient.
    pub grad_norm: f64,
    /// Iterations run; fewer than `iters_proxy` when the iterates reached a fixed point
    /// (the result is then the same bits as running them all, see
    /// [`proxy::fit_proxies`]).
    pub iterations: usize,
}

/// The result of one method on a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub method: Method,
    /// Predicted class per image.
    pub predictions: Vec<usize>,
    /// Final proxies W (C×d, unit rows); for [`Method::TextProxy`] this is W_t.
    pub proxies: Matrix,
    /// Cosine x_i · w_c per image and class (n×C).
    pub scores: Matrix,
    /// Retrieved description rows per class (shared by all methods).
    pub selected: Vec<Vec<usize>>,
    /// The soft labels the proxies were fitted to (n×C row-major, before hardening):
    /// P0, the greedy plan or the Sinkhorn plan. `None` for the text proxy.
    pub pseudo_labels: Option<Vec<f64>>,
    /// Proxy-learning diagnostics; `None` for the text proxy.
    pub fit: Option<FitReport>,
}

/// All four methods from one retrieval, in [`Method::ALL`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct AllOutcomes {
    pub text_proxy: Outcome,
    pub proxy: Outcome,
    pub kpl: Outcome,
    pub inmap: Outcome,
}

impl AllOutcomes {
    /// The outcome of `method`.
    pub fn get(&self, method: Method) -> &Outcome {
        match method {
            Method::TextProxy => &self.text_proxy,
            Method::Proxy => &self.proxy,
            Method::Kpl => &self.kpl,
            Method::InMaP => &self.inmap,
        }
    }

    /// The four outcomes in [`Method::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = &Outcome> {
        [&self.text_proxy, &self.proxy, &self.kpl, &self.inmap].into_iter()
    }
}

/// Result of classifying one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Argmax class.
    pub prediction: usize,
    /// Cosine to each class proxy.
    pub scores: Vec<f32>,
}

/// Result of single-image mode.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleImage {
    /// Argmax class.
    pub prediction: usize,
    /// x · w_c per class, with w_c built from the descriptions closest to this image.
    pub scores: Vec<f32>,
    /// Per class, the description rows retrieved for this image, best first.
    pub selected: Vec<Vec<usize>>,
    /// The per-image text proxies (C×d).
    pub proxies: Matrix,
}

/// Step 2 alone: dataset-level retrieval of `k` descriptions per class and the
/// resulting text proxies W_t.
pub fn text_proxy(images: &Matrix, kb: &KnowledgeEmbeddings, k: usize) -> Result<TextProxy> {
    params::validate_k(k)?;
    check_images(images, kb)?;
    let r = retrieval::dataset_retrieval(images, kb, k);
    Ok(TextProxy {
        proxies: Matrix::from_f64(kb.num_classes(), kb.dim(), &r.weights),
        selected: r.selected,
    })
}

/// Runs one method transductively on `images` (n×d, unit rows).
pub fn run(
    images: &Matrix,
    kb: &KnowledgeEmbeddings,
    params: &KplParams,
    method: Method,
) -> Result<Outcome> {
    let prep = Prepared::new(images, kb, params)?;
    Ok(prep.outcome(method))
}

/// Runs all four methods from one shared retrieval and pseudo-labelling (what the
/// CLI's `--method all` prints).
pub fn run_all(
    images: &Matrix,
    kb: &KnowledgeEmbeddings,
    params: &KplParams,
) -> Result<AllOutcomes> {
    let prep = Prepared::new(images, kb, params)?;
    Ok(AllOutcomes {
        text_proxy: prep.outcome(Method::TextProxy),
        proxy: prep.outcome(Method::Proxy),
        kpl: prep.outcome(Method::Kpl),
        inmap: prep.outcome(Method::InMaP),
    })
}

/// Single-image mode (no pool): each class's `k` descriptions most similar to this
/// image are averaged into a proxy, and the class score is x · w_c. No learning.
pub fn classify_single(image: &[f32], kb: &KnowledgeEmbeddings, k: usize) -> Result<SingleImage> {
    params::validate_k(k)?;
    check_vector(image, kb.dim(), "image")?;
    let query: Vec<f64> = image.iter().map(|&v| v as f64).collect();
    let r = retrieval::retrieve_against(&query, kb, k);
    let c = kb.num_classes();
    let d = kb.dim();
    let scores64: Vec<f64> = (0..c)
        .map(|j| kernels::dot::<f64>(image, &r.weights[j * d..(j + 1) * d]))
        .collect();
    Ok(SingleImage {
        prediction: predict::argmax_f64(&scores64),
        scores: scores64.iter().map(|&v| v as f32).collect(),
        selected: r.selected,
        proxies: Matrix::from_f64(c, d, &r.weights),
    })
}

/// Inductive mode: classifies one image with proxies learned earlier (C×d), by argmax
/// cosine.
pub fn classify_with_proxies(image: &[f32], proxies: &Matrix) -> Result<Classification> {
    if proxies.rows() == 0 {
        return Err(KplError::Empty { what: "proxies" });
    }
    proxies.check_finite("proxies")?;
    check_vector(image, proxies.cols(), "image")?;
    let scores64: Vec<f64> = proxies
        .iter_rows()
        .map(|w| kernels::dot_f32_f64(image, w))
        .collect();
    Ok(Classification {
        prediction: predict::argmax_f64(&scores64),
        scores: scores64.iter().map(|&v| v as f32).collect(),
    })
}

/// The `top` descriptions of `class` most similar to `image`, with their cosine
/// similarities, best first.
pub fn evidence(
    image: &[f32],
    kb: &KnowledgeEmbeddings,
    class: usize,
    top: usize,
) -> Result<Vec<Evidence>> {
    if class >= kb.num_classes() {
        return Err(KplError::ClassOutOfRange {
            class,
            classes: kb.num_classes(),
        });
    }
    check_vector(image, kb.dim(), "image")?;
    Ok(evidence::rank_descriptions(image, kb, class, top))
}

/// Everything the four methods share: retrieval and the pseudo-label logits.
struct Prepared<'a> {
    images: &'a Matrix,
    params: &'a KplParams,
    classes: usize,
    dim: usize,
    retrieval: retrieval::Retrieval,
    logits: Vec<f64>,
}

impl<'a> Prepared<'a> {
    fn new(images: &'a Matrix, kb: &KnowledgeEmbeddings, params: &'a KplParams) -> Result<Self> {
        params.validate()?;
        check_images(images, kb)?;
        let retrieval = retrieval::dataset_retrieval(images, kb, params.k);
        let logits = pseudo_labels::logits(images, &retrieval.weights, kb.num_classes());
        Ok(Prepared {
            images,
            params,
            classes: kb.num_classes(),
            dim: kb.dim(),
            retrieval,
            logits,
        })
    }

    fn labels(&self, method: Method) -> Option<Vec<f64>> {
        let (c, p) = (self.classes, self.params);
        let p0 = || pseudo_labels::softmax_rows(&self.logits, c, p.tau_t);
        match method {
            Method::TextProxy => None,
            Method::Proxy => Some(p0()),
            Method::Kpl => {
                let q = transport::class_marginal(&p0(), c, p.gamma);
                let log_p0 = pseudo_labels::log_softmax_rows(&self.logits, c, p.tau_t);
                Some(transport::greedy_ot(&log_p0, c, &q, p.iters_ot).0)
            }
            Method::InMaP => {
                let p0 = p0();
                let q = transport::class_marginal(&p0, c, p.gamma);
                Some(transport::sinkhorn(&p0, c, &q, p.iters_ot))
            }
        }
    }

    fn outcome(&self, method: Method) -> Outcome {
        let labels = self.labels(method);
        let (weights, fit) = match &labels {
            None => (self.retrieval.weights.clone(), None),
            Some(l) => {
                let f = proxy::fit_proxies(self.images, &self.retrieval.weights, l, self.params);
                let report = FitReport {
                    hardened_rows: f.hardened_rows,
                    halvings: f.halvings,
                    final_lr: f.final_lr,
                    grad_norm: f.grad_norm,
                    iterations: f.iterations,
                };
                (f.weights, Some(report))
            }
        };
        let (scores, predictions) =
            predict::scores_and_predictions(self.images, &weights, self.classes);
        Outcome {
            method,
            predictions,
            proxies: Matrix::from_f64(self.classes, self.dim, &weights),
            scores,
            selected: self.retrieval.selected.clone(),
            pseudo_labels: labels,
            fit,
        }
    }
}

fn check_images(images: &Matrix, kb: &KnowledgeEmbeddings) -> Result<()> {
    if images.rows() == 0 {
        return Err(KplError::Empty { what: "image set" });
    }
    if images.cols() != kb.dim() {
        return Err(KplError::DimensionMismatch {
            what: "image embeddings",
            expected: kb.dim(),
            found: images.cols(),
        });
    }
    images.check_finite("image embeddings")
}

fn check_vector(v: &[f32], dim: usize, what: &'static str) -> Result<()> {
    if v.len() != dim {
        return Err(KplError::DimensionMismatch {
            what,
            expected: dim,
            found: v.len(),
        });
    }
    check_finite(what, v)
}
