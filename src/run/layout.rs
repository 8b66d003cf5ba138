//! The output folder of a job, written down once. Every module that reads or writes in it asks
//! [`OutDir`] for the path, so the layout below cannot drift between the run, `merge` and
//! `report`:
//!
//! ```text
//! OUT/
//!   papers/<sha256>.json      one record per paper, shared by every array task (atomic writes)
//!   model-hashes.json         cache of the model files' sha256, by (name, size, mtime)
//!   text-cache/               extracted text of the PDFs, by sha256
//!   table.csv, results.jsonl, errors.jsonl, evidence.json, manifest.json, report.html, ...
//!                             the outputs of an unsplit run
//!   shards/I-of-N/            the same outputs for task I of an N-task array (`paramx merge`
//!                             joins them into OUT/)
//! ```

use crate::run::shard::Shard;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The output folder of a job (`io.out_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutDir {
    root: PathBuf,
}

impl OutDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        OutDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `OUT/papers`: the per-paper records of every task.
    pub fn papers(&self) -> PathBuf {
        self.root.join("papers")
    }

    /// `OUT/model-hashes.json`: the model-hash cache.
    pub fn model_hashes(&self) -> PathBuf {
        self.root.join("model-hashes.json")
    }

    /// `OUT/text-cache`: the extracted text, by the PDF's sha256.
    pub fn text_cache(&self) -> PathBuf {
        self.root.join("text-cache")
    }

    /// `OUT/shards`: one folder per array task.
    pub fn shards(&self) -> PathBuf {
        self.root.join("shards")
    }

    /// Where a task writes its table, JSONL, manifest and page: `OUT` for an unsplit run,
    /// `OUT/shards/I-of-N` for task I of N.
    pub fn task(&self, shard: Shard) -> PathBuf {
        if shard.is_split() {
            self.shards().join(shard.label())
        } else {
            self.root.clone()
        }
    }

    /// `OUT/<name>` and every `OUT/shards/*/<name>`, whether or not they exist, the shards in
    /// name order: the places a per-task file (a manifest, the PDF sources) may be. No
    /// `shards/` is an unsplit run; a `shards/` that cannot be listed is an error naming it.
    pub fn in_every_task(&self, name: &str) -> Result<Vec<PathBuf>> {
        let mut files = vec![self.root.join(name)];
        let shards = self.shards();
        match std::fs::read_dir(&shards) {
            Ok(rd) => {
                let mut shard_files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path().join(name)))
                    .collect();
                shard_files.sort();
                files.extend(shard_files);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", shards.display())),
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_task_writes_under_shards_and_an_unsplit_one_at_the_root() -> anyhow::Result<()> {
        let out = OutDir::new("/o");
        assert_eq!(out.task(Shard::new(1, 4)?), Path::new("/o/shards/1-of-4"));
        assert_eq!(out.task(Shard::new(0, 1)?), Path::new("/o"));
        assert_eq!(out.papers(), Path::new("/o/papers"));
        Ok(())
    }

    #[test]
    fn every_task_lists_the_root_first_then_the_shards_in_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for s in ["2-of-3", "0-of-3", "1-of-3"] {
            std::fs::create_dir_all(dir.path().join("shards").join(s))?;
        }
        let got = OutDir::new(dir.path()).in_every_task("manifest.json")?;
        let want: Vec<PathBuf> = ["manifest.json", "shards/0-of-3/manifest.json"]
            .iter()
            .chain(["shards/1-of-3/manifest.json", "shards/2-of-3/manifest.json"].iter())
            .map(|p| dir.path().join(p))
            .collect();
        assert_eq!(got, want);
        Ok(())
    }
}
