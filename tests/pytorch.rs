//! The PyTorch checkpoint reader (`kpl::io::pytorch`) against what open_clip's
//! `load_state_dict` (torch.load, weights_only) returns for the same files:
//! tests/reference/pytorch_checkpoints.py writes tests/fixtures/pytorch/*.bin
//! with torch.save and records every tensor's name, dtype, shape and bits.
//! Hostile files must give an error naming the file and what was refused.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use kpl::io::pytorch::StateDict;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn load(name: &str) -> kpl::Result<StateDict> {
    let path = dir().join(name);
    StateDict::from_bytes(&std::fs::read(&path).unwrap(), &path.display().to_string())
}

/// Every element's bits, widened to i64 the way the script records them.
fn bits(t: &Tensor) -> Vec<i64> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => flat.to_vec1::<f32>().unwrap().iter().map(|v| i64::from(v.to_bits() as i32)).collect(),
        DType::F16 => flat.to_vec1::<half::f16>().unwrap().iter().map(|v| i64::from(v.to_bits() as i16)).collect(),
        DType::BF16 => flat.to_vec1::<half::bf16>().unwrap().iter().map(|v| i64::from(v.to_bits() as i16)).collect(),
        DType::F64 => flat.to_vec1::<f64>().unwrap().iter().map(|v| v.to_bits() as i64).collect(),
        DType::I64 => flat.to_vec1::<i64>().unwrap(),
        DType::U8 => flat.to_vec1::<u8>().unwrap().iter().map(|&v| i64::from(v)).collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::U8 => "uint8",
        _ => "other",
    }
}

#[test]
fn good_checkpoints_match_open_clip_bit_for_bit() {
    let expected = expected();
    let good = expected["good"].as_object().unwrap();
    assert!(good.len() >= 7, "the script writes seven good checkpoints");
    let mut tensors = 0;
    for (file, want) in good {
        let sd = load(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = want.as_array().unwrap();
        let names: Vec<&str> = sd.names().collect();
        let want_names: Vec<&str> = want.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, want_names, "{file}: names and order");
        for t in want {
            let name = t["name"].as_str().unwrap();
            let got = sd.get(name).unwrap();
            let want_dtype = match t["dtype"].as_str().unwrap() {
                "bool" => "uint8",
                d => d,
            };
            assert_eq!(dtype_name(got.dtype()), want_dtype, "{file}: {name} dtype");
            let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(got.dims(), shape.as_slice(), "{file}: {name} shape");
            let want_bits: Vec<i64> = t["bits"].as_array().unwrap().iter().map(|b| b.as_i64().unwrap()).collect();
            assert_eq!(bits(got), want_bits, "{file}: {name} values");
            tensors += 1;
        }
    }
    assert!(tensors > 60, "only {tensors} tensors compared");
}

#[test]
fn views_of_one_storage_are_honoured() {
    // Independent of the recorded bits: the views must agree with `whole`.
    let sd = load("views.bin").unwrap();
    let whole = sd.get("whole").unwrap().to_vec1::<f32>().unwrap();
    let grid: Vec<Vec<f32>> = whole.chunks(10).map(<[f32]>::to_vec).collect();
    let transposed = sd.get("transposed").unwrap().to_vec2::<f32>().unwrap();
    for (j, row) in transposed.iter().enumerate() {
        for (i, v) in row.iter().enumerate() {
            assert_eq!(*v, grid[i][j]);
        }
    }
    let strided = sd.get("strided").unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(strided, vec![vec![grid[1][2], grid[1][5]], vec![grid[3][2], grid[3][5]]]);
    assert_eq!(sd.get("scalar").unwrap().to_scalar::<f32>().unwrap(), whole[7]);
    assert_eq!(sd.get("slice").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), whole[10..30].to_vec());
}

#[test]
fn nested_checkpoints_lose_the_module_prefix() {
    let sd = load("nested.bin").unwrap();
    assert!(sd.get("proj.weight").is_some());
    assert!(sd.names().all(|n| !n.starts_with("module")));
    assert_eq!(sd.shape("position_ids"), Some([1usize, 5].as_slice()));
}

#[test]
fn the_state_dict_is_a_weight_source() {
    // f16 storage read through the dense path as f32, like safetensors.
    let sd = load("f16.bin").unwrap();
    let raw = sd.get("proj.weight").unwrap().to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
    let w = sd.into_weights();
    let got = w.pp("proj").get((3, 4), "weight").unwrap();
    assert_eq!(got.dtype(), DType::F32);
    assert_eq!(got.to_vec2::<f32>().unwrap(), raw);
    let err = w.pp("proj").get((4, 4), "weight").unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn hostile_checkpoints_are_refused_by_name() {
    let expected = expected();
    let hostile = expected["hostile"].as_object().unwrap();
    assert!(hostile.len() >= 8);
    for (file, want) in hostile {
        let err = load(file).expect_err(file).to_string();
        eprintln!("{err}");
        assert!(err.contains(file.as_str()), "{file}: the error does not name the file: {err}");
        for needle in want["error_names"].as_array().unwrap() {
            let needle = needle.as_str().unwrap();
            assert!(err.contains(needle), "{file}: {err:?} does not say {needle:?}");
        }
    }
}

#[test]
fn every_truncation_and_corruption_is_an_error_never_a_panic() {
    let bytes = std::fs::read(dir().join("views.bin")).unwrap();
    for len in 0..bytes.len() {
        let _ = StateDict::from_bytes(&bytes[..len], "cut.bin");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let _ = StateDict::from_bytes(&b, "flipped.bin");
    }
}
