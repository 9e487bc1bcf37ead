#![no_main]
//! See `kpl_fuzz::jpeg` (fuzz/src/lib.rs) for what this target covers.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kpl_fuzz::jpeg(data);
});
