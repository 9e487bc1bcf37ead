//! Errors returned by the engine. Every public entry point validates its inputs and
//! returns one of these instead of panicking, because in the browser a panic kills the
//! worker and the user only sees a frozen page.

use core::fmt;

/// Everything that can go wrong in the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum KplError {
    /// A required input has no rows (no images, no classes, no descriptions...).
    Empty { what: &'static str },
    /// A class of the knowledge base has no description, so it has no text proxy.
    EmptyClass { class: usize, name: String },
    /// Two inputs disagree on a length (embedding dimension, number of classes, ...).
    DimensionMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A flat buffer's length is not rows × cols.
    BadShape {
        what: &'static str,
        len: usize,
        rows: usize,
        cols: usize,
    },
    /// An input holds NaN or ±inf at this flat index.
    NonFinite { what: &'static str, index: usize },
    /// A hyperparameter is out of its valid range.
    InvalidParameter { name: &'static str, reason: String },
    /// A class index is not below the number of classes.
    ClassOutOfRange { class: usize, classes: usize },
}

impl fmt::Display for KplError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KplError::Empty { what } => write!(f, "{what} is empty"),
            KplError::EmptyClass { class, name } => write!(
                f,
                "class {class} ('{name}') has no descriptions in the knowledge base; \
                 every class needs at least one"
            ),
            KplError::DimensionMismatch {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "dimension mismatch in {what}: expected {expected}, found {found}"
                )
            }
            KplError::BadShape {
                what,
                len,
                rows,
                cols,
            } => write!(
                f,
                "{what}: buffer of length {len} cannot be a {rows} x {cols} matrix"
            ),
            KplError::NonFinite { what, index } => {
                write!(f, "{what} contains NaN or infinity at flat index {index}")
            }
            KplError::InvalidParameter { name, reason } => {
                write!(f, "invalid parameter {name}: {reason}")
            }
            KplError::ClassOutOfRange { class, classes } => {
                write!(
                    f,
                    "class index {class} out of range (there are {classes} classes)"
                )
            }
        }
    }
}

impl std::error::Error for KplError {}

/// Result type of the engine.
pub type Result<T> = core::result::Result<T, KplError>;

/// Fails with [`KplError::NonFinite`] at the first NaN or infinity.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(KplError::NonFinite { what, index }),
        None => Ok(()),
    }
}
