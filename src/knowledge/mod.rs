//! Knowledge: the tasks' descriptions (`task`) and, built from them with a text
//! encoder, knowledge embedding bases.

pub mod base;
pub mod task;

#[cfg(not(target_arch = "wasm32"))]
pub mod folder;

pub use task::Task;
