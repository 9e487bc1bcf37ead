//! Checkpoint formats read apart from the model code: PyTorch's `torch.save`
//! zip archives (`pytorch`), through a restricted unpickler (`pickle`) that
//! builds values and never calls anything; safetensors read a tensor at a time
//! (`safetensors`) from a [`byte_source::ByteSource`]. All run in wasm32.

pub mod byte_source;
pub mod pickle;
pub mod pytorch;
pub mod safetensors;
