#![no_main]
//! See `kpl_fuzz::pytorch_pickle` (fuzz/src/lib.rs) for what this target covers.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kpl_fuzz::pytorch_pickle(data);
});
