//! Defence in depth for batches: a panic while one input is processed (a bug in
//! a decoder or a kernel that no check caught) becomes that input's error, so the
//! rest of the batch goes on and nothing already done is lost.
//!
//! Natively the release profile unwinds on panic, so [`isolate`] catches it with
//! `std::panic::catch_unwind`. In wasm a panic aborts (a trap): there the worker
//! (`www/worker.js`) drops the instance and starts a new one instead.
//!
//! While [`isolate`] runs, the panic hook records the message and location in the
//! error instead of printing Rust's "thread 'main' panicked" text; outside it the
//! previous hook runs unchanged.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::{Error, Result};

thread_local! {
    static ISOLATING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL_HOOK: Once = Once::new();

fn install_hook() {
    INSTALL_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if ISOLATING.with(Cell::get) {
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let message = payload_text(info.payload());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `work` for the input `name`; a panic inside it becomes
/// `Error::Internal` naming `name` and `stage` (e.g. "decoding", "encoding").
///
/// Errors: whatever `work` returns, or `Error::Internal` when it panicked.
/// Nested calls are allowed; the innermost one reports the panic.
pub fn isolate<T>(name: &str, stage: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    install_hook();
    let was_isolating = ISOLATING.with(|f| f.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(work));
    ISOLATING.with(|f| f.set(was_isolating));
    outcome.unwrap_or_else(|payload| {
        let detail = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| payload_text(payload.as_ref()));
        Err(Error::Internal {
            path: name.to_string(),
            message: format!(
                "internal error while {stage} this file (a bug in kpl, please report it: {detail}); \
                 the other files are not affected"
            ),
        })
    })
}

/// Test hook for the isolation itself: panics when `name` contains the marker
/// in `$KPL_TEST_PANIC_MARKER` (unset in normal use, so this does nothing).
/// The CLI calls it before decoding each file; `tests/cli.rs` sets the marker to
/// prove that a panic costs only its own file.
pub fn test_panic_hook(name: &str) {
    if let Ok(marker) = std::env::var("KPL_TEST_PANIC_MARKER") {
        if !marker.is_empty() && name.contains(&marker) {
            panic!("forced by KPL_TEST_PANIC_MARKER for {name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_inputs_error_and_the_next_call_works() {
        let err = isolate("a.dcm", "decoding", || -> Result<()> { panic!("index out of bounds") }).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("a.dcm: internal error while decoding"), "{text}");
        assert!(text.contains("index out of bounds"), "{text}");
        assert!(text.contains("src/isolate.rs"), "the location is reported: {text}");
        assert_eq!(isolate("b.png", "decoding", || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn errors_pass_through_unchanged() {
        let err = isolate("c.png", "decoding", || -> Result<()> { Err(Error::image("c.png", "truncated")) }).unwrap_err();
        assert_eq!(err.to_string(), "c.png: truncated");
    }
}
