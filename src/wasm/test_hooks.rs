//! Test hooks for the browser tests. Nothing in the page calls these unless it was
//! opened with `?test-hooks=1` (see `www/worker.js`, "Test hooks").

use wasm_bindgen::prelude::*;

/// Panics on purpose. In wasm a panic aborts (`RuntimeError: unreachable`) and
/// leaves the instance unusable, which is what the worker's recovery from a crashed
/// module is tested with (`tests/browser/recovery.test.mjs`). The worker calls it
/// only in test-hooks mode, for a file whose name contains `__trap__`.
#[wasm_bindgen(js_name = debugTrap)]
pub fn debug_trap() {
    panic!("debugTrap: a deliberate panic (test hook)");
}
