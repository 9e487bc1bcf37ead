//! Checkpoint formats read apart from the model code: PyTorch's `torch.save`
//! zip archives (`pytorch`), through a restricted unpickler (`pickle`) that
//! builds values and never calls anything. Both run in wasm32.

pub mod pickle;
pub mod pytorch;
