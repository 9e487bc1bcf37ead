//! Hyperparameters of the method, with the reference values as defaults.

use crate::error::{KplError, Result};

/// Arithmetic used inside proxy learning (step 5), the only expensive step.
///
/// The step-size rule halves the learning rate whenever the gradient norm grows, and
/// near convergence the norm changes by less than single-precision rounding noise, so
/// a float32 loop can halve at other iterations than a float64 one and stop at slightly
/// different proxies. The engine's float32 loop keeps that drift small (it forms the
/// gradient as Xᵀ(Q − P) without the cancellation of XᵀQ − XᵀP, and normalises in f64):
/// on the parity cases it stays within 7e-4 of the float64 reference with identical
/// predictions, where a plain float32 numpy loop drifts by up to 3e-2. `F64` is the
/// default because it follows the float64 reference by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Double-precision weights and accumulators (inputs stay float32). Matches the
    /// float64 reference.
    #[default]
    F64,
    /// Single-precision weights, scores and accumulators: about twice as fast.
    F32,
}

/// Every hyperparameter of KPL. `Default` gives the reference values.
#[derive(Debug, Clone, PartialEq)]
pub struct KplParams {
    /// Descriptions retrieved per class (capped at the class's count). Reference: 8.
    pub k: usize,
    /// Temperature of the text pseudo-labels. Reference: 0.01.
    pub tau_t: f64,
    /// Temperature of the image-proxy softmax. Reference: 0.04.
    pub tau_i: f64,
    /// Pseudo-label rows whose maximum exceeds this become one-hot. Reference: 0.6.
    pub alpha: f64,
    /// Class-marginal exponent; 0 means uniform. Reference: 0.
    pub gamma: f64,
    /// Optimal-transport iterations (both variants). Reference: 20.
    pub iters_ot: usize,
    /// Proxy-learning iterations. Reference: 2000.
    pub iters_proxy: usize,
    /// Initial learning rate of proxy learning. Reference: 10.
    pub lr: f64,
    /// Arithmetic of proxy learning.
    pub precision: Precision,
}

impl Default for KplParams {
    fn default() -> Self {
        KplParams {
            k: 8,
            tau_t: 0.01,
            tau_i: 0.04,
            alpha: 0.6,
            gamma: 0.0,
            iters_ot: 20,
            iters_proxy: 2000,
            lr: 10.0,
            precision: Precision::F64,
        }
    }
}

impl KplParams {
    /// Checks every field; called by all entry points that take parameters.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(invalid("k", "must be at least 1".into()));
        }
        positive("tau_t", self.tau_t)?;
        positive("tau_i", self.tau_i)?;
        positive("lr", self.lr)?;
        if !self.alpha.is_finite() || !(0.0..=1.0).contains(&self.alpha) {
            return Err(invalid(
                "alpha",
                format!("must lie in [0, 1], got {}", self.alpha),
            ));
        }
        if !self.gamma.is_finite() || self.gamma < 0.0 {
            return Err(invalid(
                "gamma",
                format!("must be finite and >= 0, got {}", self.gamma),
            ));
        }
        Ok(())
    }
}

/// Validates `k` alone, for the entry points that only retrieve.
pub(crate) fn validate_k(k: usize) -> Result<()> {
    if k == 0 {
        Err(invalid("k", "must be at least 1".into()))
    } else {
        Ok(())
    }
}

fn positive(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(name, format!("must be finite and > 0, got {v}")))
    }
}

fn invalid(name: &'static str, reason: String) -> KplError {
    KplError::InvalidParameter { name, reason }
}
