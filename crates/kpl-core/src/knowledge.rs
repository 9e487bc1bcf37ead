//! The precomputed knowledge base: one embedding per (class, description) prompt.

use crate::error::{check_finite, KplError, Result};

/// Description embeddings of every class, as shipped to the browser.
///
/// Rows are stored flat (`num_descriptions × dim`, row-major) with the class of each
/// row alongside, so a knowledge base can be loaded from one buffer without copying
/// per class. Rows of a class need not be contiguous; a description is identified
/// everywhere in the API by its row index in this table.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeEmbeddings {
    dim: usize,
    class_names: Vec<String>,
    embeddings: Vec<f32>,
    class_of: Vec<usize>,
    by_class: Vec<Vec<usize>>,
}

impl KnowledgeEmbeddings {
    /// Validates and indexes a knowledge base.
    ///
    /// Fails if `dim` is 0, there are no classes, `embeddings.len() != class_of.len() *
    /// dim`, a class index is out of range, a class has no description, or a value is
    /// NaN/infinite. Embeddings are expected to be L2-normalised already (the text
    /// encoder's output); they are not renormalised here.
    pub fn new(
        dim: usize,
        class_names: Vec<String>,
        embeddings: Vec<f32>,
        class_of: Vec<usize>,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(KplError::Empty {
                what: "embedding dimension",
            });
        }
        if class_names.is_empty() {
            return Err(KplError::Empty { what: "class list" });
        }
        if embeddings.len() != class_of.len() * dim {
            return Err(KplError::BadShape {
                what: "knowledge embeddings",
                len: embeddings.len(),
                rows: class_of.len(),
                cols: dim,
            });
        }
        check_finite("knowledge embeddings", &embeddings)?;
        let classes = class_names.len();
        let mut by_class = vec![Vec::new(); classes];
        for (row, &c) in class_of.iter().enumerate() {
            if c >= classes {
                return Err(KplError::ClassOutOfRange { class: c, classes });
            }
            by_class[c].push(row);
        }
        if let Some(c) = by_class.iter().position(Vec::is_empty) {
            return Err(KplError::EmptyClass {
                class: c,
                name: class_names[c].clone(),
            });
        }
        Ok(KnowledgeEmbeddings {
            dim,
            class_names,
            embeddings,
            class_of,
            by_class,
        })
    }

    /// Embedding dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Class names, in class-index order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Total number of descriptions (rows).
    pub fn num_descriptions(&self) -> usize {
        self.class_of.len()
    }

    /// Embedding of description row `row`.
    pub fn description(&self, row: usize) -> &[f32] {
        &self.embeddings[row * self.dim..(row + 1) * self.dim]
    }

    /// Class of description row `row`.
    pub fn class_of(&self, row: usize) -> usize {
        self.class_of[row]
    }

    /// Rows of class `class`, ascending (the order that breaks retrieval ties).
    pub fn rows_of_class(&self, class: usize) -> &[usize] {
        &self.by_class[class]
    }

    /// Position of `row` among its class's descriptions (the m of d_{c,m}).
    pub fn local_index(&self, row: usize) -> usize {
        let c = self.class_of[row];
        self.by_class[c].partition_point(|&r| r < row)
    }

    /// The flat embedding buffer.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }
}
