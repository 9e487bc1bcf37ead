use kpl_core::kernels::Real;
use std::time::Instant;

/// out[j*NR + r] = Σ_k xt[k*NR + r] * w[j*d + k], classes in groups of CB.
#[inline(never)]
fn dot_panel<R: Real, const NR: usize, const CB: usize>(xt: &[R], w: &[R], d: usize, out: &mut [R]) {
    let c = w.len() / d;
    let xt = &xt[..d * NR];
    let mut j = 0;
    while j < c {
        let cb = CB.min(c - j);
        if cb == CB {
            let ws: [&[R]; CB] = core::array::from_fn(|q| &w[(j + q) * d..(j + q + 1) * d]);
            let mut acc = [[R::ZERO; NR]; CB];
            for (k, xk) in xt.chunks_exact(NR).enumerate() {
                for q in 0..CB {
                    let wk = ws[q][k];
                    for r in 0..NR {
                        acc[q][r] += xk[r] * wk;
                    }
                }
            }
            for q in 0..CB {
                out[(j + q) * NR..(j + q + 1) * NR].copy_from_slice(&acc[q]);
            }
        } else {
            for q in 0..cb {
                let wq = &w[(j + q) * d..(j + q + 1) * d];
                let mut acc = [R::ZERO; NR];
                for (k, xk) in xt.chunks_exact(NR).enumerate() {
                    let wk = wq[k];
                    for r in 0..NR {
                        acc[r] += xk[r] * wk;
                    }
                }
                out[(j + q) * NR..(j + q + 1) * NR].copy_from_slice(&acc);
            }
        }
        j += cb;
    }
}

fn run<R: Real, const NR: usize, const CB: usize>(name: &str) {
    let (n, d, c) = (1000usize, 768usize, 5usize);
    let x: Vec<R> = (0..n * d).map(|i| R::from_f64(((i * 7919 % 1000) as f64) / 1000.0 - 0.5)).collect();
    let w: Vec<R> = (0..c * d).map(|i| R::from_f64(((i * 31 % 100) as f64) / 100.0 - 0.5)).collect();
    let reps = 30;
    let fl = (2 * n * c * d * reps) as f64;
    let mut out = vec![R::ZERO; c * NR];
    let mut s0 = 0.0;
    let t = Instant::now();
    for _ in 0..reps {
        for i in (0..n - NR + 1).step_by(NR) {
            dot_panel::<R, NR, CB>(&x[i * d..], &w, d, &mut out);
            s0 += out[1].to_f64();
        }
    }
    println!("{name}: panel dot {:.1} GFLOP/s {}", fl / t.elapsed().as_secs_f64() / 1e9, s0 > 0.0);
}

fn main() {
    run::<f32, 8, 4>("f32 NR8 CB4");
    run::<f32, 8, 3>("f32 NR8 CB3");
    run::<f32, 4, 4>("f32 NR4 CB4");
    run::<f32, 16, 2>("f32 NR16 CB2");
    run::<f64, 4, 4>("f64 NR4 CB4");
    run::<f64, 4, 3>("f64 NR4 CB3");
    run::<f64, 8, 2>("f64 NR8 CB2");
    run::<f64, 2, 4>("f64 NR2 CB4");
}
