//! `kpl pack`: a model bundle for the web app (quantised encoders, knowledge bases, manifest).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::print_json;
use kpl::bundle::pack::{pack_model_dir, PackOptions};
use kpl::bundle::PackDtype;
use kpl::Error;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PackDtypeArg {
    F32,
    F16,
    /// int8 blocks of 32 with an f16 scale (q8_0)
    Q8,
    /// 4-bit blocks of 32 with an f16 scale (q4_0)
    Q4,
}

impl From<PackDtypeArg> for PackDtype {
    fn from(arg: PackDtypeArg) -> Self {
        match arg {
            PackDtypeArg::F32 => PackDtype::F32,
            PackDtypeArg::F16 => PackDtype::F16,
            PackDtypeArg::Q8 => PackDtype::Q8,
            PackDtypeArg::Q4 => PackDtype::Q4,
        }
    }
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// A Hugging Face CLIP or SigLIP folder (config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json) or an open_clip folder (open_clip_config.json, its
    /// weights, tokenizer.json). Defaults to $KPL_MODEL.
    #[arg(long, env = "KPL_MODEL")]
    pub model: PathBuf,
    /// Precision of the linear layers (embeddings, norms and biases stay f16/f32).
    #[arg(long, value_enum, default_value = "q8")]
    pub dtype: PackDtypeArg,
    /// Task folders (knowledge/TASK) whose knowledge bases go into the bundle.
    #[arg(long, num_args = 1..)]
    pub knowledge: Vec<PathBuf>,
    /// The bundle folder to write (created if needed).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: &PackArgs) -> Result<i32, Error> {
    let options = PackOptions { dtype: args.dtype.into(), knowledge: args.knowledge.clone(), name: None };
    let manifest = pack_model_dir(&args.model, &args.output, &options, &mut |line| eprintln!("kpl: {line}"))?;
    eprintln!("kpl: wrote {}", args.output.display());
    print_json(&manifest);
    Ok(0)
}
