//! Which array task owns which PDF: rendezvous (highest-random-weight) hashing of file names.
//!
//! Every task of a `sbatch --array` job discovers the same PDFs and keeps the ones it owns. A
//! file's owner is the task index `t` with the largest `sha256(name, t)`, so:
//! - every file is owned by exactly one task, decided locally with no coordination;
//! - adding files never moves an existing file to another task (its weights do not change), so
//!   a rerun after new papers arrived finds each old paper where it was;
//! - shares are balanced in expectation (each task's share is a binomial draw: with 15 papers and
//!   4 tasks expect 2-6 each; with thousands, within a few percent).
//!
//! The key is the file *name*, not the path (nodes may mount the corpus at different places) and
//! not the content hash (that would make every task read every PDF before starting).
//! Two files with the same name in different folders go to the same task, which is harmless.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Task `index` of `count` (0-based). `index < count` holds by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Environment variables SLURM sets in each array task.
pub const SLURM_VARS: [&str; 5] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
];

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self> {
        if count == 0 {
            bail!("the number of shards must be >= 1");
        }
        if index >= count {
            bail!("shard index {index} is out of range for {count} shard(s) (indices are 0-based)");
        }
        Ok(Shard { index, count })
    }

    /// The whole input: one task.
    pub fn whole() -> Self {
        Shard { index: 0, count: 1 }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// True for a real split (more than one task).
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// Folder name of this task's derived outputs, e.g. `3-of-8`.
    pub fn label(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// Parses `I/N` (0-based index `I` of `N` tasks).
    pub fn parse(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard {s:?}: expected I/N (e.g. 0/4) or auto"))?;
        let index = i
            .trim()
            .parse()
            .with_context(|| format!("--shard {s:?}: {i:?} is not a task index"))?;
        let count = n
            .trim()
            .parse()
            .with_context(|| format!("--shard {s:?}: {n:?} is not a task count"))?;
        Shard::new(index, count).with_context(|| format!("--shard {s:?}"))
    }

    /// The shard of a SLURM array task, from `SLURM_ARRAY_TASK_*` (read through `get`, so tests
    /// need not touch the process environment). `None` outside an array job.
    ///
    /// The task's index is its position in the array's range (`--array=1-8` gives 0..8), so the
    /// range may start anywhere; lists and stepped ranges must be evenly spaced
    /// (`--array=0-14:2`), else the tasks cannot know their positions and this fails.
    pub fn from_slurm(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(id) = get("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let num = |name: &str| -> Result<Option<u64>> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .with_context(|| format!("{name}={v:?} is not a number"))
                })
                .transpose()
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("SLURM_ARRAY_TASK_ID={id:?} is not a number"))?;
        let count = num("SLURM_ARRAY_TASK_COUNT")?
            .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        if let Some(max) = num("SLURM_ARRAY_TASK_MAX")? {
            if max < min || (max - min) / step + 1 != count {
                bail!(
                    "this array's task ids are not an evenly spaced range (min {min}, max {max}, \
                     step {step}, count {count}): submit --array=A-B[:S][%T], or pass --shard I/N"
                );
            }
        }
        if id < min || !(id - min).is_multiple_of(step) || (id - min) / step >= count {
            bail!(
                "SLURM_ARRAY_TASK_ID={id} is not in the array range (min {min}, step {step}, \
                 count {count}): pass --shard I/N"
            );
        }
        let index = u32::try_from((id - min) / step).context("array index too large")?;
        let count = u32::try_from(count).context("array too large")?;
        Shard::new(index, count).map(Some)
    }

    /// The weight of task `task` for key `name`: the first 8 bytes of sha256(name, 0, task).
    fn weight(name: &[u8], task: u32) -> u64 {
        let mut h = Sha256::new();
        h.update(name);
        h.update([0u8]);
        h.update(task.to_le_bytes());
        let d = h.finalize();
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[..8]);
        u64::from_be_bytes(w)
    }

    /// Owner of the file named `name` among `count` tasks (ties, which sha256 makes
    /// practically impossible, go to the lower index).
    pub fn owner_of_name(name: &[u8], count: u32) -> u32 {
        (0..count)
            .map(|t| (Self::weight(name, t), std::cmp::Reverse(t)))
            .max()
            .map_or(0, |(_, std::cmp::Reverse(t))| t)
    }

    /// The key of a path: its file name (see the module docs for why).
    fn key(path: &Path) -> Vec<u8> {
        path.file_name()
            .unwrap_or(path.as_os_str())
            .as_encoded_bytes()
            .to_vec()
    }

    pub fn owns(&self, path: &Path) -> bool {
        self.count == 1 || Self::owner_of_name(&Self::key(path), self.count) == self.index
    }

    /// This task's share of `paths`, in their order.
    pub fn select(&self, paths: &[PathBuf]) -> Vec<PathBuf> {
        paths.iter().filter(|p| self.owns(p)).cloned().collect()
    }
}

/// The shard a run should take: `flag` (`I/N` or `auto`), else the SLURM array task's, else
/// the whole input. `auto` outside an array job is an error (the user expected a split).
pub fn resolve(flag: Option<&str>, get: impl Fn(&str) -> Option<String>) -> Result<Shard> {
    match flag.map(str::trim) {
        Some("auto") => Shard::from_slurm(get)?.context(
            "--shard auto: not inside a SLURM array task (SLURM_ARRAY_TASK_ID is not set)",
        ),
        Some(s) => Shard::parse(s),
        None => Ok(Shard::from_slurm(get)?.unwrap_or_else(Shard::whole)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn names(n: usize, prefix: &str) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("/corpus/{prefix}-{i:05}.pdf")))
            .collect()
    }

    #[test]
    fn every_file_is_owned_exactly_once() {
        let files = names(500, "paper");
        for count in [1, 2, 3, 7, 16] {
            let mut seen = vec![0u32; files.len()];
            for i in 0..count {
                let s = Shard::new(i, count).unwrap();
                for p in s.select(&files) {
                    let k = files.iter().position(|f| *f == p).unwrap();
                    seen[k] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "count {count}: {seen:?}");
        }
    }

    #[test]
    fn shares_are_balanced() {
        let files = names(8000, "p");
        let count = 8u32;
        let mut sizes = vec![0usize; count as usize];
        for f in &files {
            sizes[Shard::owner_of_name(&Shard::key(f), count) as usize] += 1;
        }
        // Mean 1000, binomial sd ~ 30: 10% is more than 3 sd.
        for s in &sizes {
            assert!((900..=1100).contains(s), "{sizes:?}");
        }
        // Small arrays: nobody empty-handed with 100 files over 4 tasks.
        let small = names(100, "q");
        for i in 0..4 {
            let n = Shard::new(i, 4).unwrap().select(&small).len();
            assert!((10..=40).contains(&n), "task {i}: {n}");
        }
    }

    #[test]
    fn adding_files_never_moves_existing_ones() {
        let old = names(300, "old");
        let mut all = old.clone();
        all.extend(names(200, "new"));
        all.sort();
        for count in [2, 5, 9] {
            let owner = |files: &[PathBuf]| -> HashMap<PathBuf, u32> {
                let mut m = HashMap::new();
                for i in 0..count {
                    for p in Shard::new(i, count).unwrap().select(files) {
                        m.insert(p, i);
                    }
                }
                m
            };
            let before = owner(&old);
            let after = owner(&all);
            for p in &old {
                assert_eq!(before[p], after[p], "{} moved", p.display());
            }
        }
    }

    #[test]
    fn key_is_the_file_name_not_the_mount_point() {
        let s = Shard::new(1, 3).unwrap();
        let a = Path::new("/scratch/a/corpus/x.pdf");
        let b = Path::new("/home/u/corpus/x.pdf");
        assert_eq!(s.owns(a), s.owns(b));
    }

    #[test]
    fn parse_and_label() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard::new(2, 5).unwrap());
        assert_eq!(Shard::parse("0/1").unwrap().label(), "0-of-1");
        for bad in ["5/5", "1/0", "x/2", "3", "-1/4", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn slurm_ranges_map_to_positions() {
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
        ]);
        assert_eq!(
            Shard::from_slurm(e).unwrap(),
            Some(Shard::new(2, 4).unwrap())
        );
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "6"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert_eq!(
            Shard::from_slurm(stepped).unwrap(),
            Some(Shard::new(3, 4).unwrap())
        );
        // --array=1,4,9: count 3 but the ids are not evenly spaced.
        let list = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
        ]);
        assert!(Shard::from_slurm(list).is_err());
        assert_eq!(Shard::from_slurm(env(&[])).unwrap(), None);
    }

    #[test]
    fn resolve_prefers_the_flag_then_slurm_then_whole() {
        let e = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        assert_eq!(resolve(Some("0/3"), &e).unwrap(), Shard::new(0, 3).unwrap());
        assert_eq!(
            resolve(Some("auto"), &e).unwrap(),
            Shard::new(1, 2).unwrap()
        );
        assert_eq!(resolve(None, &e).unwrap(), Shard::new(1, 2).unwrap());
        assert_eq!(resolve(None, env(&[])).unwrap(), Shard::whole());
        let err = resolve(Some("auto"), env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("SLURM_ARRAY_TASK_ID"));
    }
}
