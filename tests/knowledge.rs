//! The shipped knowledge tasks obey the schema: at least 9 tasks, at least 50
//! descriptions per class, no duplicates, every prompt within 77 tokens of the
//! project's CLIP tokenizer.

mod common;

use kpl::knowledge::folder::{load_task, task_dirs};
use kpl::knowledge::task::{normalize_description, Task};
use kpl::tokenizer::{ClipTokenizer, TextTokenizer};

fn tokenizer() -> TextTokenizer {
    let bytes = std::fs::read(common::fixtures().join("tokenizer.json")).unwrap();
    TextTokenizer::Clip(ClipTokenizer::from_json(&bytes, "tokenizer.json", 77).unwrap())
}

#[test]
fn every_shipped_task_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("knowledge");
    let dirs = task_dirs(&root).unwrap();
    assert!(dirs.len() >= 9, "only {} tasks", dirs.len());
    let tokenizer = tokenizer();
    for dir in dirs {
        let task = load_task(&dir).unwrap();
        let folder = dir.file_name().unwrap().to_str().unwrap();
        let problems = task.problems(Some(folder), Some(&tokenizer));
        assert!(problems.is_empty(), "{folder}: {problems:#?}");
        assert!(dir.join("README.md").is_file(), "{folder} has no README.md");
        for class in &task.classes {
            assert!(class.descriptions.len() >= 50, "{folder}/{}", class.name);
        }
    }
}

#[test]
fn required_tasks_and_classes_are_present() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("knowledge");
    let expect: &[(&str, &[&str])] = &[
        ("chest-xray-tuberculosis", &["normal", "tuberculosis"]),
        ("chest-xray-pneumonia", &["normal", "pneumonia"]),
        ("chest-xray-pneumonia-subtype", &["normal", "bacterial pneumonia", "viral pneumonia"]),
        ("malaria-cell", &["parasitized", "uninfected"]),
        ("brain-tumor-mri", &["glioma", "meningioma", "pituitary tumor", "no tumor"]),
        ("fundus-disease", &["normal", "cataract", "glaucoma", "retina disease"]),
    ];
    for (name, classes) in expect {
        let task = load_task(&root.join(name)).unwrap();
        assert_eq!(task.class_names(), classes.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "{name}");
    }
    for (name, count) in [("diabetic-retinopathy-grade", 5), ("dermoscopy-ham10000", 7), ("imaging-modality", 9), ("colorectal-histology", 9)] {
        assert_eq!(load_task(&root.join(name)).unwrap().classes.len(), count, "{name}");
    }
}

fn task_with(descriptions: Vec<String>) -> Task {
    let json = serde_json::json!({
        "schema_version": 1, "name": "demo", "prompt_template": "a photo of a {class}, which has {description}",
        "classes": [{"name": "a", "descriptions": descriptions}, {"name": "b", "descriptions": ["x y z"]}],
    });
    Task::from_json(json.to_string().as_bytes(), "demo/task.json").unwrap()
}

#[test]
fn the_checker_catches_duplicates_counts_and_long_prompts() {
    let mut descriptions: Vec<String> = (0..50).map(|i| format!("feature number {i}")).collect();
    descriptions.push("Feature   number 3!".into());
    descriptions.push("word ".repeat(80));
    let problems = task_with(descriptions).problems(Some("demo"), Some(&tokenizer()));
    let text = problems.join("\n");
    assert!(text.contains("duplicate description \"Feature   number 3!\""), "{text}");
    assert!(text.contains("over CLIP's context of 77"), "{text}");
    assert!(text.contains("class \"b\" has 1 descriptions"), "{text}");
    assert_eq!(normalize_description("Sharp, well-defined  BORDERS."), "sharp well defined borders");
}
