//! Parity with the independent float64 numpy reference (tests/reference/kpl_reference.py).
//! Inputs come from the same JSON, parsed as f64 and rounded to f32 on both sides.

use kpl_core::{
    classify_single, run_all, KnowledgeEmbeddings, KplParams, Matrix, Method, Precision,
};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Params {
    k: usize,
    tau_t: f64,
    tau_i: f64,
    alpha: f64,
    gamma: f64,
    iters_ot: usize,
    iters_proxy: usize,
    lr: f64,
}

#[derive(Deserialize)]
struct MethodOut {
    predictions: Vec<usize>,
    weights: Vec<f64>,
}

#[derive(Deserialize)]
struct Single {
    image: usize,
    selected: Vec<Vec<usize>>,
    scores: Vec<f64>,
    prediction: usize,
}

#[derive(Deserialize)]
struct Expected {
    selected: Vec<Vec<usize>>,
    text_proxy: MethodOut,
    proxy: MethodOut,
    kpl: MethodOut,
    inmap: MethodOut,
    single_image: Vec<Single>,
    ot_greedy: Option<Vec<f64>>,
    ot_sinkhorn: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    n: usize,
    d: usize,
    classes: usize,
    class_names: Vec<String>,
    params: Params,
    images: Vec<f64>,
    descriptions: Vec<f64>,
    description_class: Vec<usize>,
    expected: Expected,
}

struct Loaded {
    case: Case,
    images: Matrix,
    kb: KnowledgeEmbeddings,
    params: KplParams,
}

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/cases")
}

fn load_all() -> Vec<Loaded> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/reference/cases exists (run tests/reference/kpl_reference.py)")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no parity cases found");
    paths
        .iter()
        .map(|p| {
            let case: Case = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            let to32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            let images = Matrix::new(case.n, case.d, to32(&case.images)).unwrap();
            let kb = KnowledgeEmbeddings::new(
                case.d,
                case.class_names.clone(),
                to32(&case.descriptions),
                case.description_class.clone(),
            )
            .unwrap();
            assert_eq!(kb.num_classes(), case.classes, "{}", case.name);
            let p = &case.params;
            let params = KplParams {
                k: p.k,
                tau_t: p.tau_t,
                tau_i: p.tau_i,
                alpha: p.alpha,
                gamma: p.gamma,
                iters_ot: p.iters_ot,
                iters_proxy: p.iters_proxy,
                lr: p.lr,
                precision: Precision::F64,
            };
            Loaded {
                case,
                images,
                kb,
                params,
            }
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x - y).abs() / y.abs().max(1e-30))
        .fold(0.0, f64::max)
}

fn expected_of(e: &Expected, m: Method) -> &MethodOut {
    match m {
        Method::TextProxy => &e.text_proxy,
        Method::Proxy => &e.proxy,
        Method::Kpl => &e.kpl,
        Method::InMaP => &e.inmap,
    }
}

#[test]
fn all_methods_match_the_float64_reference() {
    let mut worst_w: f64 = 0.0;
    let mut worst_agree: f64 = 1.0;
    let mut worst_ot: f64 = 0.0;
    let cases = load_all();
    for l in &cases {
        let c = &l.case;
        let all = run_all(&l.images, &l.kb, &l.params).unwrap();
        assert_eq!(
            all.text_proxy.selected, c.expected.selected,
            "{}: retrieved descriptions",
            c.name
        );
        let mut line = format!("{:<24}", c.name);
        for m in Method::ALL {
            let got = all.get(m);
            let exp = expected_of(&c.expected, m);
            let agree = agreement(&got.predictions, &exp.predictions);
            let dw = max_abs_diff(got.proxies.data(), &exp.weights);
            line += &format!("  {}: agree {:.3} |dW| {:.1e}", m.name(), agree, dw);
            assert!(
                agree >= 0.99,
                "{} {}: predictions agree on only {agree}",
                c.name,
                m.name()
            );
            assert!(
                dw <= 1e-3,
                "{} {}: proxies differ by {dw}",
                c.name,
                m.name()
            );
            worst_w = worst_w.max(dw);
            worst_agree = worst_agree.min(agree);
        }
        for (m, exp) in [
            (Method::Kpl, &c.expected.ot_greedy),
            (Method::InMaP, &c.expected.ot_sinkhorn),
        ] {
            if let Some(exp) = exp {
                let got = all.get(m).pseudo_labels.as_ref().unwrap();
                let rel = max_rel_diff(got, exp);
                line += &format!("  OT[{}] rel {:.1e}", m.name(), rel);
                assert!(
                    rel <= 1e-4,
                    "{} {}: transport plan differs (relative {rel})",
                    c.name,
                    m.name()
                );
                worst_ot = worst_ot.max(rel);
            }
        }
        println!("{line}");
    }
    println!(
        "{} cases: min prediction agreement {worst_agree:.4}, max |dW| {worst_w:.2e}, max OT relative diff {worst_ot:.2e}",
        cases.len()
    );
}

#[test]
fn single_image_mode_matches_the_reference() {
    for l in load_all() {
        for s in &l.case.expected.single_image {
            let got = classify_single(l.images.row(s.image), &l.kb, l.params.k).unwrap();
            assert_eq!(
                got.selected, s.selected,
                "{} image {}",
                l.case.name, s.image
            );
            assert_eq!(
                got.prediction, s.prediction,
                "{} image {}",
                l.case.name, s.image
            );
            let d = max_abs_diff(&got.scores, &s.scores);
            assert!(
                d < 1e-6,
                "{} image {}: scores differ by {d}",
                l.case.name,
                s.image
            );
        }
    }
}

#[test]
fn float32_proxy_learning_gives_the_same_predictions() {
    // F32 may halve the step size at other iterations (see Precision): the proxies may
    // drift slightly, the classifier should not change.
    for l in load_all() {
        let params = KplParams {
            precision: Precision::F32,
            ..l.params.clone()
        };
        let all = run_all(&l.images, &l.kb, &params).unwrap();
        for m in [Method::Proxy, Method::Kpl, Method::InMaP] {
            let exp = expected_of(&l.case.expected, m);
            let agree = agreement(&all.get(m).predictions, &exp.predictions);
            let dw = max_abs_diff(all.get(m).proxies.data(), &exp.weights);
            println!(
                "f32 {:<24} {:<6} agree {agree:.3} |dW| {dw:.1e}",
                l.case.name,
                m.name()
            );
            assert!(
                agree >= 0.99,
                "{} {} f32: agreement {agree}",
                l.case.name,
                m.name()
            );
            assert!(
                dw <= 5e-3,
                "{} {} f32: proxies differ by {dw}",
                l.case.name,
                m.name()
            );
        }
    }
}
