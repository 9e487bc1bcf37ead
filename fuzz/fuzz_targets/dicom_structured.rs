#![no_main]
//! See `kpl_fuzz::dicom_structured` (fuzz/src/lib.rs) and the generator
//! (fuzz/src/dicom_gen.rs) for what this target covers.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kpl_fuzz::dicom_structured(data);
});
