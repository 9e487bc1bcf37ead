//! Reading tasks from `knowledge/` on disk (native only).

use std::path::{Path, PathBuf};

use super::task::Task;
use crate::error::{Error, Result};

pub fn load_task(dir: &Path) -> Result<Task> {
    let path = dir.join("task.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(path.display(), e))?;
    Task::from_json(&bytes, &path.display().to_string())
}

/// The task folders under `root`, sorted by name.
pub fn task_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root.display(), e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("task.json").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}
