use kpl_core::kernels::Real;
use std::time::Instant;

#[inline(never)]
fn dot_a<R: Real, const L: usize, const NR: usize>(xs: &[&[R]; NR], w: &[R]) -> [R; NR] {
    kpl_core::kernels::dot_rows::<R, L, NR>(xs, w)
}

#[inline(never)]
fn dot_b<R: Real, const L: usize, const NR: usize>(xs: &[&[R]; NR], w: &[R]) -> [R; NR] {
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

// row-major packed block: xb = NR rows contiguous
#[inline(never)]
fn dot_c<R: Real, const L: usize, const NR: usize>(xb: &[R], w: &[R]) -> [R; NR] {
    let d = w.len();
    let xb = &xb[..NR * d];
    let mut acc = [[R::ZERO; L]; NR];
    let nch = d / L;
    for k in 0..nch {
        let wc: [R; L] = core::array::from_fn(|l| w[k * L + l]);
        for r in 0..NR {
            let xc: [R; L] = core::array::from_fn(|l| xb[r * d + k * L + l]);
            let a = &mut acc[r];
            for l in 0..L {
                a[l] = a[l] + xc[l] * wc[l];
            }
        }
    }
    core::array::from_fn(|r| {
        let mut a = acc[r];
        let mut width = L;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                a[i] = a[i] + a[i + width];
            }
        }
        a[0]
    })
}

#[inline(never)]
fn dot_d<R: Real, const L: usize, const NR: usize>(xs: &[&[R]; NR], w: &[R], acc: &mut [R]) -> [R; NR] {
    let d = w.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    let acc = &mut acc[..NR * L];
    acc.iter_mut().for_each(|a| *a = R::ZERO);
    for (k, wc) in w.chunks_exact(L).enumerate() {
        for (r, a) in acc.chunks_exact_mut(L).enumerate() {
            let xc = &xs[r][k * L..k * L + L];
            for l in 0..L {
                a[l] += xc[l] * wc[l];
            }
        }
    }
    core::array::from_fn(|r| {
        let mut a: [R; L] = core::array::from_fn(|l| acc[r * L + l]);
        let mut width = L;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                a[i] = a[i] + a[i + width];
            }
        }
        a[0]
    })
}

// one row, L lanes, acc in scratch
#[inline(never)]
fn dot_e<R: Real, const L: usize>(x: &[R], w: &[R]) -> R {
    let mut acc = [R::ZERO; L];
    for (xc, wc) in x.chunks_exact(L).zip(w.chunks_exact(L)) {
        for l in 0..L {
            acc[l] += xc[l] * wc[l];
        }
    }
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = acc[i] + acc[i + width];
        }
    }
    acc[0]
}

#[inline(never)]
fn axpy_a<R: Real, const L: usize, const NR: usize>(coef: &[R; NR], xs: &[&[R]; NR], g: &mut [R]) {
    kpl_core::kernels::axpy_rows::<R, L, NR>(coef, xs, g)
}

#[inline(never)]
fn axpy_b<R: Real, const NR: usize>(coef: &[R; NR], xs: &[&[R]; NR], g: &mut [R]) {
    let d = g.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    for k in 0..d {
        let mut s: [R; NR] = core::array::from_fn(|r| coef[r] * xs[r][k]);
        let mut width = NR;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                s[i] = s[i] + s[i + width];
            }
        }
        g[k] += s[0];
    }
}

fn run<R: Real, const L: usize, const NR: usize>(name: &str) {
    let (n, d, c) = (1000usize, 768usize, 5usize);
    let x: Vec<R> = (0..n * d).map(|i| R::from_f64(((i * 7919 % 1000) as f64) / 1000.0 - 0.5)).collect();
    let w: Vec<R> = (0..c * d).map(|i| R::from_f64(((i * 31 % 100) as f64) / 100.0 - 0.5)).collect();
    let reps = 30;
    let fl = (2 * n * c * d * reps) as f64;
    let mut out = String::new();
    let mut scratch = vec![R::ZERO; 64];
    for variant in 0..5 {
        let mut s0 = 0.0f64;
        let t = Instant::now();
        for _ in 0..reps {
            for i in (0..n).step_by(NR) {
                let xs: [&[R]; NR] = core::array::from_fn(|r| &x[(i + r) * d..(i + r + 1) * d]);
                for j in 0..c {
                    let wj = &w[j * d..(j + 1) * d];
                    let s = match variant { 0 => dot_a::<R, L, NR>(&xs, wj), 1 => dot_b::<R, L, NR>(&xs, wj), 2 => dot_c::<R, L, NR>(&x[i * d..], wj), 3 => dot_d::<R, L, NR>(&xs, wj, &mut scratch), _ => core::array::from_fn::<R, NR, _>(|r| dot_e::<R, L>(xs[r], wj)) };
                    s0 += s.iter().map(|v| v.to_f64()).sum::<f64>();
                }
            }
        }
        out += &format!(" dot{variant} {:.1}", fl / t.elapsed().as_secs_f64() / 1e9);
        std::hint::black_box(s0);
    }
    for variant in 0..2 {
        let mut g: Vec<R> = vec![R::ZERO; c * d];
        let t = Instant::now();
        for _ in 0..reps {
            for i in (0..n).step_by(NR) {
                let xs: [&[R]; NR] = core::array::from_fn(|r| &x[(i + r) * d..(i + r + 1) * d]);
                for j in 0..c {
                    let coef: [R; NR] = core::array::from_fn(|r| R::from_f64(0.1 * r as f64 + j as f64));
                    let gj = &mut g[j * d..(j + 1) * d];
                    match variant { 0 => axpy_a::<R, L, NR>(&coef, &xs, gj), _ => axpy_b::<R, NR>(&coef, &xs, gj) }
                }
            }
        }
        out += &format!(" axpy{variant} {:.1}", fl / t.elapsed().as_secs_f64() / 1e9);
        std::hint::black_box(g);
    }
    println!("{name}:{out}  GFLOP/s");
}

fn main() {
    run::<f32, 8, 4>("f32 L8 NR4");
    run::<f32, 4, 4>("f32 L4 NR4");
    run::<f32, 16, 2>("f32 L16 NR2");
    run::<f32, 8, 2>("f32 L8 NR2");
    run::<f64, 4, 4>("f64 L4 NR4");
    run::<f64, 2, 4>("f64 L2 NR4");
    run::<f64, 8, 2>("f64 L8 NR2");
}
