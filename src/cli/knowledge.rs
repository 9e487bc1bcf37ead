//! `kpl knowledge list` and `kpl knowledge check`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use kpl::knowledge::folder::{load_task, task_dirs};
use kpl::tokenizer::{ClipTokenizer, TextTokenizer};
use kpl::Error;

/// CLIP's BPE vocabulary is the same for every OpenAI CLIP checkpoint, so the
/// checker carries it rather than needing a model.
const CLIP_TOKENIZER_JSON: &[u8] = include_bytes!("../../tests/fixtures/tokenizer.json");
const CLIP_CONTEXT: usize = 77;

#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// Lists the tasks, their prompt template, classes and descriptions.
    List(ListArgs),
    /// Validates task folders (schema, counts, duplicates, token length).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The knowledge folder.
    #[arg(long, default_value = "knowledge")]
    pub root: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A task folder, or a folder of task folders (default: knowledge).
    #[arg(default_value = "knowledge")]
    pub dir: PathBuf,
}

#[derive(Serialize)]
struct ListedClass {
    name: String,
    descriptions: Vec<String>,
}

#[derive(Serialize)]
struct ListedTask {
    name: String,
    title: String,
    prompt_template: String,
    classes: Vec<ListedClass>,
}

#[derive(Serialize)]
struct Listing {
    tasks: Vec<ListedTask>,
}

pub fn run(command: &KnowledgeCommand) -> Result<i32, Error> {
    match command {
        KnowledgeCommand::List(args) => list(args),
        KnowledgeCommand::Check(args) => check(args),
    }
}

fn list(args: &ListArgs) -> Result<i32, Error> {
    let mut tasks = Vec::new();
    for dir in task_dirs(&args.root)? {
        let task = load_task(&dir)?;
        tasks.push(ListedTask {
            name: task.name.clone(),
            title: task.title.clone(),
            prompt_template: task.prompt_template.clone(),
            classes: task
                .classes
                .iter()
                .map(|c| ListedClass { name: c.name.clone(), descriptions: c.descriptions.clone() })
                .collect(),
        });
    }
    if args.json {
        super::print_json(&Listing { tasks });
    } else {
        for task in &tasks {
            let classes: Vec<String> =
                task.classes.iter().map(|c| format!("{} ({})", c.name, c.descriptions.len())).collect();
            println!("{:32} {}", task.name, classes.join(", "));
        }
    }
    Ok(0)
}

fn check(args: &CheckArgs) -> Result<i32, Error> {
    let tokenizer = TextTokenizer::Clip(ClipTokenizer::from_json(CLIP_TOKENIZER_JSON, "built-in CLIP tokenizer", CLIP_CONTEXT)?);
    let dirs = if args.dir.join("task.json").is_file() { vec![args.dir.clone()] } else { task_dirs(&args.dir)? };
    if dirs.is_empty() {
        return Err(Error::model(args.dir.display(), "no task.json here or in its subfolders"));
    }
    let mut failed = 0;
    for dir in &dirs {
        let folder = dir.file_name().and_then(|n| n.to_str());
        let problems = match load_task(dir) {
            Ok(task) => task.problems(folder, Some(&tokenizer)),
            Err(e) => vec![e.to_string()],
        };
        if problems.is_empty() {
            println!("ok      {}", dir.display());
        } else {
            failed += 1;
            println!("FAILED  {}", dir.display());
            for problem in problems {
                eprintln!("kpl: error: {}/task.json: {problem}", dir.display());
            }
        }
    }
    Ok(i32::from(failed > 0))
}
