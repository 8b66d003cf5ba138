//! Durable per-paper results: the unit of crash safety.
//!
//! Each paper's record is written as soon as the paper is done, atomically (temporary file in the
//! same folder, fsync, rename, fsync of the folder), under a name derived from the PDF's sha256.
//! A killed or requeued job therefore loses at most the papers in flight, and a rerun skips every
//! paper whose record exists for the same job hash. The table and JSONL files are *derived* from
//! the records, sorted, so the same records always give the same bytes.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a reader sees either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    // Unique per writer: array tasks on different nodes may share a pid and, for two PDFs with
    // identical bytes, even a record name; the nanosecond clock and a counter tell them apart.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{nonce}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the folder's entry is on disk.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// The folder of one run's per-paper records.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

/// What every record carries so a rerun can tell whether it still applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordKey {
    pub sha256: String,
    /// [`crate::run::hashes::job_hash`]: settings, model, schema, prompt and pipeline version.
    pub job_hash: String,
}

impl RecordStore {
    pub fn new(out_dir: &Path) -> Self {
        RecordStore {
            dir: crate::run::layout::OutDir::new(out_dir).papers(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.json"))
    }

    /// The finished record for this key, if one exists and was made by the same job.
    /// Records that fail to parse (a foreign or damaged file) are treated as absent: the paper
    /// is redone and the file replaced.
    pub fn finished<T: for<'de> Deserialize<'de> + HasKey>(&self, key: &RecordKey) -> Option<T> {
        let bytes = fs::read(self.path(&key.sha256)).ok()?;
        let rec: T = serde_json::from_slice(&bytes).ok()?;
        (rec.key() == key).then_some(rec)
    }

    pub fn save<T: Serialize + HasKey>(&self, rec: &T) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(rec)?;
        bytes.push(b'\n');
        write_atomic(&self.path(&rec.key().sha256), &bytes)
    }

    /// Every record in the folder (any job hash), sorted by file name for stable output.
    pub fn load_all<T: for<'de> Deserialize<'de>>(&self) -> Result<Vec<(PathBuf, T)>> {
        let mut paths: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", self.dir.display())),
        };
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                let rec = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a paramx paper record", p.display()))?;
                Ok((p, rec))
            })
            .collect()
    }
}

/// Records expose their key so the store can check it.
pub trait HasKey {
    fn key(&self) -> &RecordKey;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        key: RecordKey,
        n: u32,
    }
    impl HasKey for Rec {
        fn key(&self) -> &RecordKey {
            &self.key
        }
    }

    fn key(sha: &str, job: &str) -> RecordKey {
        RecordKey {
            sha256: sha.into(),
            job_hash: job.into(),
        }
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() -> Result<()> {
        let d = tempfile::tempdir()?;
        let p = d.path().join("sub/out.json");
        write_atomic(&p, b"first")?;
        write_atomic(&p, b"second")?;
        assert_eq!(fs::read(&p)?, b"second");
        let names: Vec<_> = fs::read_dir(d.path().join("sub"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        assert_eq!(names.len(), 1, "{names:?}");
        Ok(())
    }

    #[test]
    fn finished_requires_the_same_job_hash() -> Result<()> {
        let d = tempfile::tempdir()?;
        let store = RecordStore::new(d.path());
        store.save(&Rec {
            key: key("abc", "j1"),
            n: 3,
        })?;
        assert_eq!(
            store.finished::<Rec>(&key("abc", "j1")).map(|r| r.n),
            Some(3)
        );
        assert!(store.finished::<Rec>(&key("abc", "j2")).is_none());
        assert!(store.finished::<Rec>(&key("zzz", "j1")).is_none());
        Ok(())
    }

    #[test]
    fn damaged_record_counts_as_unfinished_but_load_all_reports_it() -> Result<()> {
        let d = tempfile::tempdir()?;
        let store = RecordStore::new(d.path());
        store.save(&Rec {
            key: key("abc", "j1"),
            n: 3,
        })?;
        fs::write(store.dir().join("bad.json"), b"{not json")?;
        assert!(store.finished::<Rec>(&key("bad", "j1")).is_none());
        let err = store.load_all::<Rec>().expect_err("damaged file");
        assert!(format!("{err:#}").contains("bad.json"));
        Ok(())
    }
}
