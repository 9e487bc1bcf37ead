//! The last words of a thread about to abort. In wasm a panic or an allocation
//! failure aborts as `RuntimeError: unreachable`, which says neither what happened
//! nor where; the hooks here leave that in the thread's JS global as
//! `kplCrashNote` first, for whoever reports the crash: the module worker
//! (`www/worker.js`) for its own thread, and a pool thread's helper
//! (`pkg/threads/workerHelpers.js`, see `scripts/wasm-threads.mjs`) for its own.

use wasm_bindgen::JsValue;

/// Installs the hooks (process-wide: every thread of the pool shares them). The
/// panic hook still hands the panic to `console_error_panic_hook`. The allocation
/// hook exists in the threaded build only (nightly `alloc_error_hook`); in the
/// single-threaded one an allocation failure stays a bare `unreachable`.
pub(crate) fn install() {
    std::panic::set_hook(Box::new(|info| {
        note(&info.to_string());
        console_error_panic_hook::hook(info);
    }));
    #[cfg(feature = "threads")]
    std::alloc::set_alloc_error_hook(|layout| {
        note(&format!("memory allocation of {} bytes failed (out of memory)", layout.size()));
    });
}

/// Sets `globalThis.kplCrashNote` on the current thread, on one line (a panic's
/// message comes after a line break: "panicked at file:line:col:\nmessage").
/// `Reflect.set` is a catching import: it can never throw into the aborting code.
fn note(message: &str) {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = js_sys::Reflect::set(&js_sys::global(), &JsValue::from_str("kplCrashNote"), &JsValue::from_str(&line));
}
