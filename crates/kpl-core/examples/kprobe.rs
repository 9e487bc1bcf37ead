use kpl_core::kernels::Real;
use std::time::Instant;

#[inline(always)]
fn dot_rows<R: Real, const L: usize, const NR: usize>(xs: &[&[R]; NR], w: &[R]) -> [R; NR] {
    let d = w.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    let mut acc = [[R::ZERO; L]; NR];
    for (k, wc) in w.chunks_exact(L).enumerate() {
        for r in 0..NR {
            let xc = &xs[r][k * L..k * L + L];
            for l in 0..L {
                acc[r][l] += xc[l] * wc[l];
            }
        }
    }
    core::array::from_fn(|r| acc[r].iter().fold(R::ZERO, |a, &b| a + b))
}

#[inline(always)]
fn axpy_rows<R: Real, const L: usize, const NR: usize>(coef: &[R; NR], xs: &[&[R]; NR], g: &mut [R]) {
    let d = g.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    for (k, gc) in g.chunks_exact_mut(L).enumerate() {
        let mut s = [[R::ZERO; L]; NR];
        for r in 0..NR {
            let xc = &xs[r][k * L..k * L + L];
            for l in 0..L {
                s[r][l] = coef[r] * xc[l];
            }
        }
        let mut width = NR;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                for l in 0..L {
                    s[i][l] = s[i][l] + s[i + width][l];
                }
            }
        }
        for l in 0..L {
            gc[l] += s[0][l];
        }
    }
}

fn run<R: Real, const L: usize, const NR: usize>(name: &str) {
    let (n, d, c) = (1000usize, 768usize, 5usize);
    let x: Vec<R> = (0..n * d).map(|i| R::from_f64(((i * 7919 % 1000) as f64) / 1000.0 - 0.5)).collect();
    let w: Vec<R> = (0..c * d).map(|i| R::from_f64(((i * 31 % 100) as f64) / 100.0 - 0.5)).collect();
    let reps = 40;
    let mut g: Vec<R> = vec![R::ZERO; c * d];
    let mut s0 = 0.0f64;
    let t = Instant::now();
    for _ in 0..reps {
        for i in (0..n).step_by(NR) {
            let xs: [&[R]; NR] = core::array::from_fn(|r| &x[(i + r) * d..(i + r + 1) * d]);
            for j in 0..c {
                let s = dot_rows::<R, L, NR>(&xs, &w[j * d..(j + 1) * d]);
                s0 += s.iter().map(|v| v.to_f64()).sum::<f64>();
            }
        }
    }
    let t1 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..reps {
        for i in (0..n).step_by(NR) {
            let xs: [&[R]; NR] = core::array::from_fn(|r| &x[(i + r) * d..(i + r + 1) * d]);
            for j in 0..c {
                let coef: [R; NR] = core::array::from_fn(|r| R::from_f64(0.1 * r as f64));
                axpy_rows::<R, L, NR>(&coef, &xs, &mut g[j * d..(j + 1) * d]);
            }
        }
    }
    let t2 = t.elapsed().as_secs_f64();
    let fl = (2 * n * c * d * reps) as f64;
    println!("{name}: dot {:.2} GFLOP/s  axpy {:.2} GFLOP/s  (2000 iters est {:.2} s) {s0:.1} {:.1}", fl / t1 / 1e9, fl / t2 / 1e9, (t1 + t2) / reps as f64 * 2000.0, g[3].to_f64());
}

fn main() {
    run::<f32, 8, 4>("f32 L8 NR4");
    run::<f32, 8, 2>("f32 L8 NR2");
    run::<f32, 16, 2>("f32 L16 NR2");
    run::<f32, 4, 4>("f32 L4 NR4");
    run::<f64, 4, 4>("f64 L4 NR4");
    run::<f64, 4, 2>("f64 L4 NR2");
    run::<f64, 8, 2>("f64 L8 NR2");
    run::<f64, 2, 4>("f64 L2 NR4");
}
