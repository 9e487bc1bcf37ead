//! `kpl`: CLIP embeddings and KPL classification from the command line.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "kpl", version, about = "CLIP + Knowledge Proxy Learning for medical images (no diagnosis)")]
struct Cli {
    /// Threads for the encoders' kernels (default: every core this process may use).
    /// The embeddings are the same bits at any count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// How a bundle's quantised layers multiply on the CPU: int8x8 (default with
    /// AVX-512 VNNI: our q8_0 × q8_0 GEMM for q8_0, ggml's semantics, candle's block
    /// kernels for other dtypes), blocks (default without: candle's
    /// block kernels, activations quantised to 8 bits), int8 (our int8 GEMM for q8_0,
    /// the web page's default) or dequantize (weights expanded to f32, activations kept
    /// f32: the same numbers as the worker's `dequantize` within float rounding).
    #[arg(long, global = true)]
    quant_kernel: Option<kpl::nn::linear::QuantKernel>,
    /// How dense f32 layers multiply on the CPU: packed (default: our f32 GEMM, the
    /// weights repacked at load) or candle (candle's gemm; for comparisons).
    #[arg(long, global = true)]
    f32_kernel: Option<kpl::nn::linear::F32Kernel>,
    /// How attention computes on the CPU: fused (default: our kernel, softmax(q·kᵀ)·v per
    /// head without transposed copies) or candle (candle's ops; for comparisons).
    #[arg(long, global = true)]
    attention: Option<kpl::nn::attention::AttentionKernel>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints L2-normalised image embeddings as JSON.
    EmbedImage(cli::embed::EmbedImageArgs),
    /// Renders a DICOM file (one frame) to an 8-bit PNG, as the model would see it before resizing.
    Decode(cli::decode::DecodeArgs),
    /// Prints L2-normalised text embeddings as JSON.
    EmbedText(cli::embed::EmbedTextArgs),
    /// Classifies images (plain CLIP zero-shot over --labels).
    Classify(cli::classify::ClassifyArgs),
    /// Embeds a task's descriptions into a knowledge embedding base.
    BuildKb(cli::kb::BuildKbArgs),
    /// Learns class proxies on a folder of unlabelled images and stores them with the base.
    Fit(cli::kb::FitArgs),
    /// Runs text proxy, proxy learning, KPL and InMaP on precomputed embeddings (.npz).
    EvalEmbeddings(cli::eval::EvalEmbeddingsArgs),
    /// Evaluates plain CLIP and the KPL variants on a labelled folder (one subfolder per class).
    Eval(cli::eval::EvalArgs),
    /// Knowledge tasks: list them or check a task folder.
    #[command(subcommand)]
    Knowledge(cli::knowledge::KnowledgeCommand),
    /// Packs a model into a bundle for the web app: quantised encoders, knowledge bases, manifest.json.
    Pack(cli::pack::PackArgs),
    /// Writes a static site of the web app with a model (any web server; configurations for nginx, Apache, Caddy, IIS).
    Site(cli::site::SiteArgs),
    /// Writes a CLIP folder with RANDOM weights (tests, benchmarks, demos: its outputs mean nothing).
    #[cfg(feature = "testing")]
    RandomModel(cli::random_model::RandomModelArgs),
}

fn main() {
    let cli = Cli::parse();
    let threads = cli.threads.unwrap_or_else(kpl::engine::threads::default_threads);
    if let Err(message) = kpl::engine::threads::set_threads(threads) {
        eprintln!("kpl: error: --threads: {message}");
        std::process::exit(2);
    }
    if let Some(kernel) = cli.quant_kernel {
        kpl::nn::linear::set_quant_kernel(kernel);
    }
    if let Some(kernel) = cli.f32_kernel {
        kpl::nn::linear::set_f32_kernel(kernel);
    }
    if let Some(kernel) = cli.attention {
        kpl::nn::attention::set_attention_kernel(kernel);
    }
    let outcome = match &cli.command {
        Command::EmbedImage(args) => cli::embed::embed_image(args),
        Command::Decode(args) => cli::decode::run(args),
        Command::EmbedText(args) => cli::embed::embed_text(args),
        Command::Classify(args) => cli::classify::run(args),
        Command::BuildKb(args) => cli::kb::build_kb(args),
        Command::Fit(args) => cli::kb::fit(args),
        Command::EvalEmbeddings(args) => cli::eval::eval_embeddings(args),
        Command::Eval(args) => cli::eval::eval(args),
        Command::Knowledge(command) => cli::knowledge::run(command),
        Command::Pack(args) => cli::pack::run(args),
        Command::Site(args) => cli::site::run(args),
        #[cfg(feature = "testing")]
        Command::RandomModel(args) => cli::random_model::run(args),
    };
    let code = match outcome {
        Ok(code) => code,
        Err(error) => {
            cli::report(&error);
            2
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Two arguments of one command under the same `--long` or `-s` name (a
    /// flattened struct's and the command's own): clap only asserts this in
    /// debug builds, and the tests run in release, so it is checked here over
    /// every command (`kpl eval` once had `--k` twice).
    #[test]
    fn no_command_declares_an_option_twice() {
        fn check(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
            let mut seen = std::collections::BTreeSet::new();
            for arg in cmd.get_arguments() {
                let names = arg.get_long().map(|l| format!("--{l}")).into_iter().chain(arg.get_short().map(|s| format!("-{s}")));
                for name in names {
                    if !seen.insert(name.clone()) {
                        problems.push(format!("{path}: {name} declared twice"));
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()), problems);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut problems = Vec::new();
        check(&cmd, "kpl", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(cmd.get_subcommands().any(|s| s.get_name() == "eval"), "the walk reaches the commands");
        // clap's own checks, where this build has them (debug).
        Cli::command().debug_assert();
    }
}
