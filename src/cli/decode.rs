//! `kpl decode`: a DICOM file's 8-bit rendering as a PNG (the image every other
//! command feeds to the model before resizing), and a JSON line describing it
//! with no patient-identifying attribute: the summary (its windows and warnings
//! included) and the window used (`voi`).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{print_json, read_input, FileLimitArgs, VoiArgs};
use kpl::preprocess::dicom::{self, DicomSummary, VoiUsed};
use kpl::preprocess::DecodeLimits;
use kpl::Error;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// A DICOM file (Part 10: a .dcm name or the "DICM" marker; also a data set
    /// without preamble that starts with a plausible group 0008 element).
    pub file: PathBuf,
    /// The PNG to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The frame of a multi-frame image, counting from 0 (default: the middle one).
    #[arg(long)]
    pub frame: Option<u32>,
    /// Refuse images with more decoded samples (rows × columns × frames × samples) than this.
    #[arg(long, default_value_t = 100.0)]
    pub max_megapixels: f64,
    #[command(flatten)]
    pub file_limit: FileLimitArgs,
    #[command(flatten)]
    pub voi: VoiArgs,
}

#[derive(Serialize)]
struct Output<'a> {
    file: String,
    output: String,
    frame: u32,
    transfer_syntax_name: &'static str,
    /// The window used (greyscale; null for colour), and the same in words.
    voi: Option<&'a VoiUsed>,
    voi_description: Option<String>,
    #[serde(flatten)]
    summary: &'a DicomSummary,
}

pub fn run(args: &DecodeArgs) -> Result<i32, Error> {
    let name = args.file.display().to_string();
    let bytes = read_input(&args.file, args.file_limit.bytes())?;
    let limits = DecodeLimits { max_pixels: (args.max_megapixels * 1e6).max(1.0) as u64 };
    let decoded = kpl::isolate::isolate(&name, "decoding", || {
        kpl::isolate::test_panic_hook(&name);
        dicom::decode_with(&bytes, &name, limits, args.frame, args.voi.choice())
    })?;
    for warning in &decoded.summary.warnings {
        eprintln!("kpl: warning: {name}: {warning}");
    }
    let image = &decoded.image;
    image::save_buffer_with_format(
        &args.output,
        &image.data,
        image.width as u32,
        image.height as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::io(args.output.display(), format!("cannot write the PNG: {e}")))?;
    print_json(&Output {
        file: name,
        output: args.output.display().to_string(),
        frame: decoded.frame,
        transfer_syntax_name: decoded.summary.transfer_syntax_name(),
        voi: decoded.voi.as_ref(),
        voi_description: decoded.voi.as_ref().map(VoiUsed::describe),
        summary: &decoded.summary,
    });
    Ok(0)
}
