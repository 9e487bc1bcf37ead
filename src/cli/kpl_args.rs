//! The KPL hyperparameters as command-line options (defaults from the reference).

use clap::Args;
use kpl_core::KplParams;

/// Every hyperparameter but k: `kpl eval` sweeps k with its own `--k` list,
/// so it flattens these alone (two `--k` options in one command is clap's
/// "long option names must be unique" error).
#[derive(Debug, Clone, Args)]
pub struct KplHyperArgs {
    /// Temperature of the pseudo-labels [default: the model's own scale,
    /// 1/exp(logit_scale), for SigLIP; the reference's 0.01 for CLIP].
    #[arg(long)]
    pub tau_t: Option<f64>,
    /// Temperature of proxy learning.
    #[arg(long, default_value_t = 0.04)]
    pub tau_i: f64,
    /// Rows whose largest pseudo-label exceeds this become one-hot.
    #[arg(long, default_value_t = 0.6)]
    pub alpha: f64,
    /// Class-marginal exponent of the optimal transport (0: uniform).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f64,
    #[arg(long, default_value_t = 20)]
    pub iters_ot: usize,
    #[arg(long, default_value_t = 2000)]
    pub iters_proxy: usize,
    #[arg(long, default_value_t = 10.0)]
    pub lr: f64,
}

/// The hyperparameters with a single k.
#[derive(Debug, Clone, Args)]
pub struct KplArgs {
    /// Descriptions retrieved per class.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    #[command(flatten)]
    pub hyper: KplHyperArgs,
}

impl KplArgs {
    pub fn params(&self) -> KplParams {
        self.hyper.params_with_k(self.k)
    }

    /// The parameters with `tau_t` at `model`'s own scale unless given.
    pub fn params_for(&self, model: &kpl::models::Model) -> KplParams {
        self.hyper.params_for_k(model, self.k)
    }
}

impl KplHyperArgs {
    /// The parameters with `k` descriptions per class and `tau_t` at
    /// `model`'s own scale unless given.
    pub fn params_for_k(&self, model: &kpl::models::Model, k: usize) -> KplParams {
        KplParams { tau_t: self.tau_t.unwrap_or_else(|| model.pseudo_label_temperature()), ..self.params_with_k(k) }
    }

    /// The parameters for embeddings of no known model (`tau_t`: the reference's).
    pub fn params_with_k(&self, k: usize) -> KplParams {
        KplParams {
            k,
            tau_t: self.tau_t.unwrap_or(KplParams::default().tau_t),
            tau_i: self.tau_i,
            alpha: self.alpha,
            gamma: self.gamma,
            iters_ot: self.iters_ot,
            iters_proxy: self.iters_proxy,
            lr: self.lr,
            ..KplParams::default()
        }
    }
}
