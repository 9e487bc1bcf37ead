//! Properties of the engine that do not need the reference: the transport quirks that
//! must be reproduced, invariants, error handling and determinism.

use kpl_core::pseudo_labels::{log_softmax_rows, softmax_rows};
use kpl_core::transport::{class_marginal, greedy_ot, sinkhorn, Marginal, OtStep};
use kpl_core::{
    classify_single, classify_with_proxies, evidence, normalize_rows, run, run_all, text_proxy,
    KnowledgeEmbeddings, KplError, KplParams, Matrix, Method,
};

/// xorshift64*: a tiny deterministic generator for synthetic embeddings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.next()).sum::<f64>() - 2.0
    }
    fn unit(&mut self, d: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..d).map(|_| self.normal()).collect();
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }
}

fn unit32(v: impl Iterator<Item = f64>) -> Vec<f32> {
    let v: Vec<f64> = v.collect();
    let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    v.into_iter().map(|a| (a / n) as f32).collect()
}

/// n images in C clusters with a shared offset (modality gap), M descriptions per class.
fn synthetic(
    seed: u64,
    n: usize,
    d: usize,
    c: usize,
    m: &[usize],
) -> (Matrix, KnowledgeEmbeddings, Vec<usize>) {
    let mut rng = Rng(seed);
    let dirs: Vec<Vec<f64>> = (0..c).map(|_| rng.unit(d)).collect();
    let gap = rng.unit(d);
    let mut text = Vec::new();
    let mut class_of = Vec::new();
    for (j, u) in dirs.iter().enumerate() {
        for _ in 0..m[j] {
            let rel = 0.2 + rng.next();
            let noise = rng.unit(d);
            text.extend(unit32((0..d).map(|k| rel * u[k] + 0.5 * noise[k])));
            class_of.push(j);
        }
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let j = (i * 7 + i / 3) % c;
        let noise = rng.unit(d);
        images.extend(unit32(
            (0..d).map(|k| gap[k] + 0.7 * dirs[j][k] + 0.5 * noise[k]),
        ));
        labels.push(j);
    }
    let names = (0..c).map(|j| format!("c{j}")).collect();
    (
        Matrix::new(n, d, images).unwrap(),
        KnowledgeEmbeddings::new(d, names, text, class_of).unwrap(),
        labels,
    )
}

fn random_logits(seed: u64, n: usize, c: usize) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..n * c).map(|_| 0.2 + 0.1 * rng.normal()).collect()
}

fn col_sums(p: &[f64], c: usize) -> Vec<f64> {
    let mut s = vec![0.0; c];
    for row in p.chunks_exact(c) {
        for (a, &v) in s.iter_mut().zip(row) {
            *a += v;
        }
    }
    s
}

#[test]
fn greedy_ot_with_more_than_20_classes_leaves_columns_unnormalised() {
    let (n, c) = (60, 24);
    let logits = random_logits(1, n, c);
    let log_p0 = log_softmax_rows(&logits, c, 0.01);
    let q = Marginal::Uniform(c);
    let (p, steps) = greedy_ot(&log_p0, c, &q, 20);
    // Column violations (about n/C) dwarf row violations (about 1), so all 20 steps are
    // columns, each a different one: four columns are never touched.
    let mut touched: Vec<usize> = steps
        .iter()
        .map(|s| match s {
            OtStep::Column(j) => *j,
            OtStep::Row(i) => panic!("unexpected row step {i}"),
        })
        .collect();
    touched.sort();
    touched.dedup();
    assert_eq!(touched.len(), 20);
    let q = 1.0 / c as f64;
    for (j, &sum) in col_sums(&p, c).iter().enumerate() {
        if touched.contains(&j) {
            assert!((sum - q).abs() < 1e-12, "column {j} should sum to 1/C");
        } else {
            assert!(
                (sum - q).abs() > 0.5 * q,
                "column {j} keeps its raw mass, got {sum}"
            );
        }
    }
}

#[test]
fn greedy_ot_normalises_columns_first_and_keeps_mass_about_one() {
    let (n, c) = (40, 5);
    let logits = random_logits(2, n, c);
    let log_p0 = log_softmax_rows(&logits, c, 0.01);
    let (p, steps) = greedy_ot(&log_p0, c, &Marginal::Uniform(c), 20);
    // The C columns come first, each once; after that one row or column per step.
    let mut first: Vec<usize> = steps[..c]
        .iter()
        .map(|s| match s {
            OtStep::Column(j) => *j,
            OtStep::Row(_) => panic!("rows before all columns: {steps:?}"),
        })
        .collect();
    first.sort();
    assert_eq!(first, (0..c).collect::<Vec<_>>());
    assert!(
        steps[c..].iter().any(|s| matches!(s, OtStep::Row(_))),
        "{steps:?}"
    );
    let mass: f64 = p.iter().sum();
    assert!(
        (0.5..1.5).contains(&mass),
        "total mass {mass} (not rescaled by n)"
    );
    assert!(
        p.iter().all(|&v| v <= 1.0 / c as f64 + 1e-12),
        "entries are of order 1/n"
    );
}

#[test]
fn greedy_ot_ties_go_to_the_row() {
    // Uniform 2x2: every column and row violation is exactly 0.5.
    let log_p0 = vec![0.5f64.ln(); 4];
    let (_, steps) = greedy_ot(&log_p0, 2, &Marginal::Uniform(2), 1);
    assert_eq!(steps, vec![OtStep::Row(0)]);
}

#[test]
fn sinkhorn_rows_sum_to_one() {
    for (n, c, gamma) in [(30, 3, 0.0), (50, 24, 0.0), (25, 5, 0.7)] {
        let logits = random_logits(3, n, c);
        let p0 = softmax_rows(&logits, c, 0.01);
        let q = class_marginal(&p0, c, gamma);
        let p = sinkhorn(&p0, c, &q, 20);
        for row in p.chunks_exact(c) {
            let s: f64 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-12, "row sum {s}");
        }
        if gamma > 0.0 {
            let Marginal::Weights(w) = &q else {
                panic!("gamma > 0 gives weights")
            };
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn hardening_never_fires_after_greedy_ot() {
    let (images, kb, _) = synthetic(4, 60, 24, 3, &[12, 9, 4]);
    let params = KplParams {
        iters_proxy: 50,
        ..KplParams::default()
    };
    let all = run_all(&images, &kb, &params).unwrap();
    assert_eq!(
        all.kpl.fit.unwrap().hardened_rows,
        0,
        "greedy plan entries are ~1/n"
    );
    assert!(
        all.proxy.fit.unwrap().hardened_rows > 0,
        "tau_t = 0.01 makes P0 sharp"
    );
    for o in all.iter() {
        for row in o.proxies.iter_rows() {
            let norm: f64 = row
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-6,
                "{} proxy norm {norm}",
                o.method.name()
            );
        }
    }
}

#[test]
fn retrieval_caps_k_and_breaks_ties_by_lower_row() {
    let d = 4;
    // Class 0: rows 0 and 2 identical (a duplicated description), row 1 different.
    // Class 1: a single description, fewer than k.
    let e = |v: [f32; 4]| v.to_vec();
    let mut emb = Vec::new();
    emb.extend(e([1.0, 0.0, 0.0, 0.0]));
    emb.extend(e([0.0, 1.0, 0.0, 0.0]));
    emb.extend(e([1.0, 0.0, 0.0, 0.0]));
    emb.extend(e([0.0, 0.0, 1.0, 0.0]));
    let kb =
        KnowledgeEmbeddings::new(d, vec!["a".into(), "b".into()], emb, vec![0, 0, 0, 1]).unwrap();
    let images = Matrix::new(1, d, vec![0.8, 0.6, 0.0, 0.0]).unwrap();
    let tp = text_proxy(&images, &kb, 1).unwrap();
    assert_eq!(tp.selected, vec![vec![0], vec![3]]);
    let tp = text_proxy(&images, &kb, 8).unwrap();
    assert_eq!(tp.selected, vec![vec![0, 2, 1], vec![3]]);
    assert_eq!(kb.local_index(2), 2);
    let single = classify_single(images.row(0), &kb, 2).unwrap();
    assert_eq!(single.selected, vec![vec![0, 2], vec![3]]);
    assert_eq!(single.prediction, 0);
}

#[test]
fn evidence_is_ranked_and_matches_similarity() {
    let (images, kb, _) = synthetic(5, 10, 16, 2, &[7, 3]);
    let x = images.row(0);
    let ev = evidence(x, &kb, 0, 5).unwrap();
    assert_eq!(ev.len(), 5);
    for w in ev.windows(2) {
        assert!(w[0].similarity >= w[1].similarity);
    }
    for e in &ev {
        assert_eq!(kb.class_of(e.description), 0);
        let dot: f64 = x
            .iter()
            .zip(kb.description(e.description))
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        assert!((dot as f32 - e.similarity).abs() < 1e-6);
    }
    assert_eq!(evidence(x, &kb, 1, 100).unwrap().len(), 3);
}

#[test]
fn runs_are_deterministic_and_inductive_mode_agrees() {
    let (images, kb, labels) = synthetic(6, 90, 32, 3, &[15, 20, 5]);
    let params = KplParams {
        iters_proxy: 300,
        ..KplParams::default()
    };
    let a = run_all(&images, &kb, &params).unwrap();
    let b = run_all(&images, &kb, &params).unwrap();
    assert_eq!(a, b);
    let single = run(&images, &kb, &params, Method::Kpl).unwrap();
    assert_eq!(single, a.kpl);
    for (i, x) in images.iter_rows().enumerate() {
        let cls = classify_with_proxies(x, &a.kpl.proxies).unwrap();
        assert_eq!(cls.prediction, a.kpl.predictions[i]);
        assert!((cls.scores[cls.prediction] - a.kpl.scores.get(i, cls.prediction)).abs() < 1e-6);
    }
    let acc = kpl_core::predict::accuracy(&a.kpl.predictions, &labels).unwrap();
    assert!(
        acc > 0.5,
        "clustered synthetic data should be easy, got {acc}"
    );
}

#[test]
fn errors_are_returned_not_panics() {
    let (images, kb, _) = synthetic(7, 12, 8, 2, &[4, 4]);
    let p = KplParams::default();
    let invalid = |r: Result<_, KplError>, name: &str| match r {
        Err(KplError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        Err(e) => panic!("expected invalid {name}, got {e}"),
        Ok(_) => panic!("expected invalid {name}"),
    };
    invalid(
        run(&images, &kb, &KplParams { k: 0, ..p.clone() }, Method::Kpl).map(|_| ()),
        "k",
    );
    invalid(text_proxy(&images, &kb, 0).map(|_| ()), "k");
    invalid(classify_single(images.row(0), &kb, 0).map(|_| ()), "k");
    invalid(
        run(
            &images,
            &kb,
            &KplParams {
                tau_t: 0.0,
                ..p.clone()
            },
            Method::Kpl,
        )
        .map(|_| ()),
        "tau_t",
    );
    invalid(
        run(
            &images,
            &kb,
            &KplParams {
                tau_i: -1.0,
                ..p.clone()
            },
            Method::Kpl,
        )
        .map(|_| ()),
        "tau_i",
    );
    invalid(
        run(
            &images,
            &kb,
            &KplParams {
                tau_i: f64::NAN,
                ..p.clone()
            },
            Method::Kpl,
        )
        .map(|_| ()),
        "tau_i",
    );
    invalid(
        run(
            &images,
            &kb,
            &KplParams {
                lr: 0.0,
                ..p.clone()
            },
            Method::Kpl,
        )
        .map(|_| ()),
        "lr",
    );
    invalid(
        run(
            &images,
            &kb,
            &KplParams {
                alpha: 1.5,
                ..p.clone()
            },
            Method::Kpl,
        )
        .map(|_| ()),
        "alpha",
    );
    invalid(
        run(
            &images,
            &kb,
            &KplParams {
                gamma: -0.1,
                ..p.clone()
            },
            Method::Kpl,
        )
        .map(|_| ()),
        "gamma",
    );

    // A class without descriptions.
    let e = KnowledgeEmbeddings::new(2, vec!["a".into(), "b".into()], vec![1.0, 0.0], vec![0])
        .unwrap_err();
    assert!(matches!(e, KplError::EmptyClass { class: 1, .. }), "{e}");
    assert!(e.to_string().contains("'b'"));
    // Class index out of range, ragged buffer, NaN in the knowledge base, no classes.
    let e = KnowledgeEmbeddings::new(2, vec!["a".into()], vec![1.0, 0.0], vec![3]).unwrap_err();
    assert!(matches!(
        e,
        KplError::ClassOutOfRange {
            class: 3,
            classes: 1
        }
    ));
    let e =
        KnowledgeEmbeddings::new(2, vec!["a".into()], vec![1.0, 0.0, 1.0], vec![0]).unwrap_err();
    assert!(matches!(e, KplError::BadShape { .. }));
    let e =
        KnowledgeEmbeddings::new(2, vec!["a".into()], vec![f32::NAN, 0.0], vec![0]).unwrap_err();
    assert!(matches!(e, KplError::NonFinite { index: 0, .. }));
    assert!(matches!(
        KnowledgeEmbeddings::new(2, vec![], vec![], vec![]),
        Err(KplError::Empty { .. })
    ));

    // Dimension mismatches.
    let wrong = Matrix::new(3, 5, vec![0.1; 15]).unwrap();
    assert!(matches!(
        run(&wrong, &kb, &p, Method::Kpl),
        Err(KplError::DimensionMismatch {
            expected: 8,
            found: 5,
            ..
        })
    ));
    assert!(matches!(
        classify_single(&[0.0; 3], &kb, 8),
        Err(KplError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        evidence(&[0.0; 3], &kb, 0, 3),
        Err(KplError::DimensionMismatch { .. })
    ));
    let proxies = Matrix::new(2, 8, vec![0.1; 16]).unwrap();
    assert!(matches!(
        classify_with_proxies(&[0.0; 7], &proxies),
        Err(KplError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        Matrix::new(2, 3, vec![0.0; 5]),
        Err(KplError::BadShape { .. })
    ));

    // NaN / infinity in the images.
    let mut bad = images.clone().into_data();
    bad[17] = f32::NAN;
    let bad = Matrix::new(12, 8, bad).unwrap();
    assert!(matches!(
        run_all(&bad, &kb, &p),
        Err(KplError::NonFinite { index: 17, .. })
    ));
    let mut x = images.row(0).to_vec();
    x[2] = f32::INFINITY;
    assert!(matches!(
        classify_single(&x, &kb, 8),
        Err(KplError::NonFinite { index: 2, .. })
    ));
    assert!(matches!(
        evidence(&x, &kb, 0, 3),
        Err(KplError::NonFinite { .. })
    ));

    // Empty inputs and out-of-range classes.
    assert!(matches!(
        run(&Matrix::zeros(0, 8), &kb, &p, Method::TextProxy),
        Err(KplError::Empty { .. })
    ));
    assert!(matches!(
        classify_with_proxies(&[0.0; 8], &Matrix::zeros(0, 8)),
        Err(KplError::Empty { .. })
    ));
    assert!(matches!(
        evidence(images.row(0), &kb, 2, 3),
        Err(KplError::ClassOutOfRange {
            class: 2,
            classes: 2
        })
    ));
}

#[test]
fn normalisation_helpers() {
    let mut m = Matrix::new(2, 3, vec![3.0, 4.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
    normalize_rows(&mut m);
    assert_eq!(m.row(0), &[0.6, 0.8, 0.0]);
    assert_eq!(m.row(1), &[0.0, 0.0, 0.0], "a zero row stays zero, not NaN");
    for m in Method::ALL {
        assert_eq!(Method::from_name(m.name()), Some(m));
    }
}
