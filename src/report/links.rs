//! Where each paper's PDF lies, and the link the review page gives to it.
//!
//! A record names its PDF by file name only (records are keyed by content, and the same record
//! serves a PDF wherever it lies), so the run leaves `sources.json` beside its outputs: every
//! input's file name with the absolute path it was read from. A split run writes one per array
//! task (`OUT/shards/I-of-N/sources.json`), so tasks never overwrite each other's list.
//! `paramx report` reads them all, and `--input` folders or files can add or replace paths.

use crate::run::store::write_atomic;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub const FILE_NAME: &str = "sources.json";

/// File name -> the paths a PDF of that name was read from (two folders may hold one name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sources {
    pub files: BTreeMap<String, Vec<PathBuf>>,
}

impl Sources {
    /// The inputs of a run, by file name, with absolute paths.
    pub fn of_inputs(pdfs: &[PathBuf]) -> Self {
        let mut s = Sources::default();
        for p in pdfs {
            s.add(p);
        }
        s
    }

    fn add(&mut self, path: &Path) {
        let Some(name) = path.file_name() else {
            return;
        };
        let abs = absolute(path);
        let list = self
            .files
            .entry(name.to_string_lossy().into_owned())
            .or_default();
        if !list.contains(&abs) {
            list.push(abs);
            list.sort();
        }
    }

    /// Adds every entry of `other`.
    pub fn extend(&mut self, other: Sources) {
        for (_, paths) in other.files {
            for p in paths {
                self.add(&p);
            }
        }
    }

    /// Writes `dir/sources.json` (atomically).
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(FILE_NAME);
        let json = serde_json::to_vec_pretty(self).context("serialising the PDF sources")?;
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// `OUT/sources.json` and every `OUT/shards/*/sources.json` that exists, joined. A file that
    /// exists but does not read is an error naming it (a silent gap would hide every link).
    pub fn read_run(out: &Path) -> Result<Sources> {
        let files = crate::run::layout::OutDir::new(out).in_every_task(FILE_NAME)?;
        let mut all = Sources::default();
        for f in files.iter().filter(|f| f.is_file()) {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            let s: Sources = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a paramx sources list", f.display()))?;
            all.extend(s);
        }
        Ok(all)
    }

    /// The path of the PDF named `file` whose content has `sha256`: the only candidate, or the
    /// one whose bytes hash to it when several folders hold that name.
    pub fn locate(&self, file: &str, sha256: &str) -> Option<PathBuf> {
        let list = self.files.get(file)?;
        match list.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            several => several
                .iter()
                .find(|p| std::fs::read(p).is_ok_and(|b| crate::pdf::sha256_hex(&b) == sha256))
                .cloned(),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    normalize(&abs)
}

/// `a/./b/../c` -> `a/c`, lexically (no file system access: the PDF may be gone by now).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The link from a page in `from_dir` to `target`: a relative URL when both are absolute
/// paths on one root (the folder can be moved or served as a whole), else a `file://` URL.
/// Every path segment is percent-encoded, so `#`, `?` or `%` in a file name stay in the name.
pub fn href(from_dir: &Path, target: &Path) -> String {
    let from = absolute(from_dir);
    let to = absolute(target);
    let (fc, tc): (Vec<Component>, Vec<Component>) =
        (from.components().collect(), to.components().collect());
    let same_root = !fc.is_empty() && fc.first() == tc.first();
    if !same_root {
        return file_url(&to);
    }
    let common = fc.iter().zip(&tc).take_while(|(a, b)| a == b).count();
    let mut segs: Vec<String> = vec!["..".to_string(); fc.len() - common];
    segs.extend(
        tc[common..]
            .iter()
            .map(|c| encode(&c.as_os_str().to_string_lossy())),
    );
    if segs.is_empty() {
        return file_url(&to);
    }
    segs.join("/")
}

fn file_url(p: &Path) -> String {
    let segs: Vec<String> = p
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .map(|c| encode(&c.as_os_str().to_string_lossy()))
        .collect();
    format!("file:///{}", segs.join("/"))
}

/// Percent-encodes everything but unreserved URL characters.
fn encode(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_relative_and_encoded() {
        assert_eq!(
            href(Path::new("/w/out/run"), Path::new("/w/data/A b#1.pdf")),
            "../../data/A%20b%231.pdf"
        );
        assert_eq!(
            href(Path::new("/w/out"), Path::new("/w/out/x.pdf")),
            "x.pdf"
        );
        assert_eq!(
            href(Path::new("/w/out/./a/.."), Path::new("/w/p.pdf")),
            "../p.pdf"
        );
    }

    #[test]
    fn sources_round_trip_and_pick_by_content() -> Result<()> {
        let d = tempfile::tempdir()?;
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a)?;
        std::fs::create_dir_all(&b)?;
        std::fs::write(a.join("p.pdf"), b"one")?;
        std::fs::write(b.join("p.pdf"), b"two")?;
        let s = Sources::of_inputs(&[a.join("p.pdf"), b.join("p.pdf")]);
        s.write(d.path())?;
        let back = Sources::read_run(d.path())?;
        assert_eq!(back, s);
        let two = crate::pdf::sha256_hex(b"two");
        assert_eq!(back.locate("p.pdf", &two), Some(absolute(&b.join("p.pdf"))));
        assert_eq!(back.locate("q.pdf", &two), None);
        Ok(())
    }
}
