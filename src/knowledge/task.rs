//! A knowledge task (`knowledge/<task>/task.json`, schema in `knowledge/SCHEMA.md`):
//! classes with their visual descriptions and the prompt template that turns a
//! description into text for the CLIP text encoder.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;

pub const SCHEMA_VERSION: u32 = 1;
pub const DEFAULT_TEMPLATE: &str = "a photo of a {class}, which has {description}";
pub const MIN_DESCRIPTIONS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub schema_version: u32,
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub modality: String,
    #[serde(default = "default_template")]
    pub prompt_template: String,
    #[serde(default)]
    pub datasets: Vec<Dataset>,
    pub classes: Vec<TaskClass>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    #[serde(default)]
    pub citation: String,
    /// Class of the task → how the dataset spells it (a folder name, or with
    /// `matched_by = "filename"` a marker inside file names).
    pub class_names: BTreeMap<String, String>,
    /// Classes of the task the dataset does not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_classes: Vec<String>,
    #[serde(default = "default_matched_by")]
    pub matched_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskClass {
    pub name: String,
    pub descriptions: Vec<String>,
}

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_string()
}

fn default_matched_by() -> String {
    "folder".to_string()
}

/// Lower-cases and drops punctuation and repeated spaces: two descriptions
/// equal under this are the same feature for the duplicate check.
pub fn normalize_description(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_alphanumeric() { c.to_lowercase().next().unwrap_or(c) } else { ' ' })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Task {
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::model(path, format!("not a valid task.json: {e}")))
    }

    /// The text embedded for one description of a class.
    pub fn prompt(&self, class: &str, description: &str) -> String {
        self.prompt_template.replace("{class}", class).replace("{description}", description)
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// Every rule of the schema, as messages; empty when the task is valid.
    /// With a tokenizer, every full prompt is also checked against the context.
    pub fn problems(&self, folder_name: Option<&str>, tokenizer: Option<&TextTokenizer>) -> Vec<String> {
        let mut problems = Vec::new();
        if self.schema_version != SCHEMA_VERSION {
            problems.push(format!(
                "schema_version is {}, this version of kpl reads {SCHEMA_VERSION}",
                self.schema_version
            ));
        }
        let name_ok = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            problems.push(format!("name {:?} must be lower-case letters, digits and '-'", self.name));
        }
        if let Some(folder) = folder_name {
            if folder != self.name {
                problems.push(format!("name {:?} differs from the folder name {folder:?}", self.name));
            }
        }
        for placeholder in ["{class}", "{description}"] {
            let count = self.prompt_template.matches(placeholder).count();
            if count != 1 {
                problems.push(format!("prompt_template must contain {placeholder} exactly once (found {count})"));
            }
        }
        if self.classes.len() < 2 {
            problems.push(format!("a task needs at least 2 classes, found {}", self.classes.len()));
        }
        let mut seen_classes = BTreeSet::new();
        for class in &self.classes {
            if class.name.trim().is_empty() {
                problems.push("a class has an empty name".into());
            }
            if class.name != class.name.to_lowercase() {
                problems.push(format!("class {:?} must be lower-case", class.name));
            }
            if !seen_classes.insert(class.name.to_lowercase()) {
                problems.push(format!("class {:?} appears twice", class.name));
            }
            if class.descriptions.len() < MIN_DESCRIPTIONS {
                problems.push(format!(
                    "class {:?} has {} descriptions, at least {MIN_DESCRIPTIONS} are required",
                    class.name,
                    class.descriptions.len()
                ));
            }
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for class in &self.classes {
            for description in &class.descriptions {
                if description.trim().is_empty() {
                    problems.push(format!("class {:?} has an empty description", class.name));
                    continue;
                }
                let key = normalize_description(description);
                if let Some(first) = seen.get(&key) {
                    problems.push(format!(
                        "duplicate description {description:?} (class {:?}) repeats one of class {first:?}",
                        class.name
                    ));
                } else {
                    seen.insert(key, class.name.clone());
                }
                if let Some(tokenizer) = tokenizer {
                    let prompt = self.prompt(&class.name, description);
                    match tokenizer.encode_full(&prompt) {
                        Ok(ids) if ids.len() > tokenizer.context() => problems.push(format!(
                            "prompt {prompt:?} is {} tokens, over CLIP's context of {}",
                            ids.len(),
                            tokenizer.context()
                        )),
                        Ok(_) => {}
                        Err(e) => problems.push(e.to_string()),
                    }
                }
            }
        }
        for dataset in &self.datasets {
            for class in &self.classes {
                let mapped = dataset.class_names.contains_key(&class.name);
                let absent = dataset.absent_classes.contains(&class.name);
                if !mapped && !absent {
                    problems.push(format!(
                        "dataset {:?} neither spells class {:?} in class_names nor lists it in absent_classes",
                        dataset.name, class.name
                    ));
                }
            }
            for key in dataset.class_names.keys().chain(dataset.absent_classes.iter()) {
                if !seen_classes.contains(&key.to_lowercase()) {
                    problems.push(format!("dataset {:?} names {key:?}, which is not a class of the task", dataset.name));
                }
            }
            if dataset.matched_by != "folder" && dataset.matched_by != "filename" {
                problems.push(format!(
                    "dataset {:?}: matched_by must be \"folder\" or \"filename\", found {:?}",
                    dataset.name, dataset.matched_by
                ));
            }
        }
        problems
    }
}
