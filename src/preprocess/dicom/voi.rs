//! The VOI (value of interest) transformation a greyscale image is rendered
//! with: the windows a file carries (Window Center (0028,1050), Window Width
//! (0028,1051) and Window Center & Width Explanation (0028,1055), PS3.3
//! C.11.2), the choice a user makes among them or gives, and what was used.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation
)]

use serde::Serialize;

use super::parse::{self, DataSet, PResult};

/// Which VOI transformation renders a greyscale image.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum VoiChoice {
    /// The README's rule: the file's first window when its width is at least 1,
    /// else the frame's modality values from minimum to maximum.
    #[default]
    Default,
    /// The file's window number `n`, counting from 0 in the order of its
    /// Window Center / Window Width values (`kpl --voi N`).
    Index(u32),
    /// A window given by the user (`kpl --window CENTER,WIDTH`): width at least 1.
    Window { center: f64, width: f64 },
}

impl VoiChoice {
    /// A window given by the user, checked: finite, width at least 1 (PS3.3
    /// C.11.2.1.2.1).
    pub fn window(center: f64, width: f64) -> Result<Self, String> {
        if !center.is_finite() || !width.is_finite() || width < 1.0 {
            return Err(format!("the window centre {center} / width {width} is invalid (finite, width at least 1)"));
        }
        Ok(Self::Window { center, width })
    }
}

/// One window a file carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Window Center, in modality units (after the rescale).
    pub center: f64,
    /// Window Width, in modality units.
    pub width: f64,
    /// Its Window Center & Width Explanation, when the file gives one.
    pub explanation: Option<String>,
}

/// The VOI transformation a greyscale rendering used.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VoiUsed {
    /// The file's window `index` (from 0).
    File { index: u32, center: f64, width: f64, explanation: Option<String> },
    /// A window the user gave.
    Given { center: f64, width: f64 },
    /// No window: the frame's modality values from `low` to `high` mapped to 0–255.
    MinMax { low: f64, high: f64 },
}

impl VoiUsed {
    /// One line for people: "window 2 of the file (C 40, W 400, BRAIN)".
    pub fn describe(&self) -> String {
        match self {
            VoiUsed::File { index, center, width, explanation } => {
                let what = explanation.as_deref().map(|e| format!(", {e}")).unwrap_or_default();
                format!("window {index} of the file (C {center}, W {width}{what})")
            }
            VoiUsed::Given { center, width } => format!("given window (C {center}, W {width})"),
            VoiUsed::MinMax { low, high } => format!("no window: the frame's range {low} to {high}"),
        }
    }
}

/// The windows of a file, pairing the n-th Window Center with the n-th Window
/// Width (and the n-th explanation, when present). Errors name the element.
pub fn file_windows(ds: &DataSet<'_>) -> PResult<Vec<Window>> {
    let centers = ds.decimals(parse::WINDOW_CENTER)?.unwrap_or_default();
    let widths = ds.decimals(parse::WINDOW_WIDTH)?.unwrap_or_default();
    let explanations: Vec<String> = ds
        .get(parse::WINDOW_EXPLANATION)
        .map(|v| parse::text(v.bytes))
        .map(|s| s.split('\\').map(|e| e.trim().chars().filter(|c| !c.is_control()).take(64).collect()).collect())
        .unwrap_or_default();
    Ok(centers
        .iter()
        .zip(&widths)
        .enumerate()
        .map(|(i, (&center, &width))| Window {
            center,
            width,
            explanation: explanations.get(i).filter(|e| !e.is_empty()).cloned(),
        })
        .collect())
}

/// The window to apply (`None`: the frame's minimum to maximum), as `choice` says.
pub fn choose(ds: &DataSet<'_>, choice: VoiChoice) -> PResult<Option<VoiUsed>> {
    let windows = file_windows(ds)?;
    let from_file = |index: u32, w: &Window| VoiUsed::File {
        index,
        center: w.center,
        width: w.width,
        explanation: w.explanation.clone(),
    };
    match choice {
        VoiChoice::Default => Ok(windows.first().filter(|w| w.width >= 1.0).map(|w| from_file(0, w))),
        VoiChoice::Window { center, width } => Ok(Some(VoiUsed::Given { center, width })),
        VoiChoice::Index(index) => {
            let w = usize::try_from(index).ok().and_then(|i| windows.get(i)).ok_or_else(|| {
                format!(
                    "window {index} was asked for, but the file carries {} window(s) ({} and {}), numbered from 0",
                    windows.len(),
                    ds.describe(parse::WINDOW_CENTER),
                    ds.describe(parse::WINDOW_WIDTH)
                )
            })?;
            if w.width < 1.0 {
                return Err(format!("window {index} of the file has width {}, below 1", w.width));
            }
            Ok(Some(from_file(index, w)))
        }
    }
}
