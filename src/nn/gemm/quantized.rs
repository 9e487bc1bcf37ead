//! The calling forms shared by the GEMMs on quantised weights ([`q8`](super::q8),
//! [`q4`](super::q4), [`q8x8`](super::q8x8)): each implements one fused product on a
//! chosen micro-kernel, and gets the plain, chosen-kernel and fused forms from here.

use super::epilogue::Epilogue;

/// `y = act(x · Wᵀ + bias) + residual` for a weight packed at load: `x` is `[m, k]`
/// row-major, the result `[m, n]` (f32). Every implementation gives the same bits on
/// each of its micro-kernels and at any thread count (the column panels are split
/// across the current rayon pool's threads).
pub trait QuantizedGemm {
    /// The micro-kernels this GEMM can run on.
    type Isa: Copy;

    /// The best micro-kernel of this machine.
    fn best_isa() -> Self::Isa;

    /// The fused product on the micro-kernel `isa`, the epilogue applied as each tile is
    /// stored. Panics if `x.len() != m · k`, the bias is not `[n]` or the residual not
    /// `[m, n]` (a caller's bug, not input data).
    fn matmul_fused_with(&self, x: &[f32], m: usize, epilogue: &Epilogue, isa: Self::Isa) -> Vec<f32>;

    /// `y = x · Wᵀ` on the best micro-kernel. Panics if `x.len() != m · k`.
    fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_fused_with(x, m, &Epilogue::default(), Self::best_isa())
    }

    /// [`matmul`](Self::matmul) on a chosen micro-kernel.
    fn matmul_with(&self, x: &[f32], m: usize, isa: Self::Isa) -> Vec<f32> {
        self.matmul_fused_with(x, m, &Epilogue::default(), isa)
    }

    /// [`matmul_fused_with`](Self::matmul_fused_with) on the best micro-kernel.
    fn matmul_fused(&self, x: &[f32], m: usize, epilogue: &Epilogue) -> Vec<f32> {
        self.matmul_fused_with(x, m, epilogue, Self::best_isa())
    }
}
