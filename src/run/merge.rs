//! Joining the array tasks' work: which records make the final table, and what is wrong.
//!
//! The records are the truth (one file per PDF sha256 in `OUT/papers/`, written atomically by
//! whichever task owned the paper); the tasks' manifests say which inputs each task was given.
//! [`check`] takes the expected inputs and the records and decides, for every input, whether it
//! is present exactly once, failed, or missing; [`merge`] writes the joined outputs.

use crate::run::layout::OutDir;
use crate::run::manifest::{self, InputEntry, Manifest};
use crate::run::output::{write_outputs, OutputPaths};
use crate::run::record::{Outcome, PaperRecord};
use crate::run::store::{write_atomic, RecordStore};
use crate::schema::Schema;
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A paper whose record is an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failed {
    pub file: String,
    pub sha256: String,
    pub stage: String,
    pub error: String,
}

/// The verdict on a set of records against the expected inputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MergeReport {
    pub job_hash: String,
    /// Distinct expected inputs (by content).
    pub expected: usize,
    pub ok: usize,
    pub failed: Vec<Failed>,
    /// Expected inputs with no record of this job.
    pub missing: Vec<InputEntry>,
    /// Records found more than once for one input (a record file copied under another name).
    pub duplicated: Vec<String>,
    /// Records of this job for PDFs that are not among the inputs: left out of the table.
    pub extra: Vec<String>,
    /// Inputs with identical bytes under two names: one record serves both.
    pub same_content: Vec<(String, String)>,
    /// Array tasks that left no manifest (their share of the inputs is unknown).
    pub missing_tasks: Vec<String>,
    /// Inputs listed in the manifests of more than one task.
    pub owned_twice: Vec<String>,
}

impl MergeReport {
    /// Anything that makes the merged table incomplete or suspect (exit code 1).
    pub fn has_problems(&self) -> bool {
        !(self.failed.is_empty()
            && self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.missing_tasks.is_empty()
            && self.owned_twice.is_empty())
    }

    /// Human-readable lines for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "paramx merge: {} input(s): {} ok, {} failed, {} missing{}{}",
            self.expected,
            self.ok,
            self.failed.len(),
            self.missing.len(),
            if self.duplicated.is_empty() {
                String::new()
            } else {
                format!(", {} duplicated", self.duplicated.len())
            },
            if self.extra.is_empty() {
                String::new()
            } else {
                format!("; {} record(s) for other PDFs left out", self.extra.len())
            }
        )];
        for t in &self.missing_tasks {
            v.push(format!("MISSING TASK {t}: no manifest (did it run? its papers are unknown; pass --expect-inputs to name them)"));
        }
        for f in &self.failed {
            v.push(format!("FAILED  {} ({}): {}", f.file, f.stage, f.error));
        }
        for m in &self.missing {
            v.push(format!("MISSING {} (sha256 {})", m.file, m.sha256));
        }
        for d in &self.duplicated {
            v.push(format!("DUPLICATE {d}"));
        }
        for o in &self.owned_twice {
            v.push(format!(
                "OWNED TWICE {o} (tasks of different splits? remove stale shards/ folders)"
            ));
        }
        for (a, b) in &self.same_content {
            v.push(format!(
                "note: {a} and {b} have identical bytes; one record serves both"
            ));
        }
        for e in &self.extra {
            v.push(format!("note: left out {e}: not among the inputs"));
        }
        v
    }
}

/// Checks `records` (with the files they came from) against `expected` for `job_hash`, and
/// returns the records of the merged table (one per distinct expected input) and the report.
pub fn check(
    expected: &[InputEntry],
    records: &[(PathBuf, PaperRecord)],
    job_hash: &str,
) -> (Vec<PaperRecord>, MergeReport) {
    let mut report = MergeReport {
        job_hash: job_hash.to_string(),
        ..Default::default()
    };
    let mut by_sha: BTreeMap<&str, &InputEntry> = BTreeMap::new();
    for e in expected {
        if let Some(first) = by_sha.get(e.sha256.as_str()) {
            if first.file != e.file {
                report
                    .same_content
                    .push((first.file.clone(), e.file.clone()));
            }
        } else {
            by_sha.insert(&e.sha256, e);
        }
    }
    report.expected = by_sha.len();
    let mut found: BTreeMap<&str, Vec<(&Path, &PaperRecord)>> = BTreeMap::new();
    for (path, rec) in records.iter().filter(|(_, r)| r.key.job_hash == job_hash) {
        if by_sha.contains_key(rec.key.sha256.as_str()) {
            found
                .entry(rec.key.sha256.as_str())
                .or_default()
                .push((path, rec));
        } else {
            report
                .extra
                .push(format!("{} ({})", rec.source_file, path.display()));
        }
    }
    let mut selected = Vec::new();
    for (sha, entry) in &by_sha {
        match found.get(sha).map(Vec::as_slice) {
            None | Some([]) => report.missing.push((*entry).clone()),
            Some(recs) => {
                if recs.len() > 1 {
                    let files: Vec<String> =
                        recs.iter().map(|(p, _)| p.display().to_string()).collect();
                    report
                        .duplicated
                        .push(format!("{}: {}", entry.file, files.join(", ")));
                }
                // The record stored under its own name is the one a rerun would see.
                let (_, rec) = recs
                    .iter()
                    .find(|(p, _)| p.file_stem().is_some_and(|s| s.to_string_lossy() == **sha))
                    .unwrap_or(&recs[0]);
                match &rec.outcome {
                    Outcome::Ok(_) => report.ok += 1,
                    Outcome::Error { stage, message } => report.failed.push(Failed {
                        file: rec.source_file.clone(),
                        sha256: rec.key.sha256.clone(),
                        stage: format!("{stage:?}").to_lowercase(),
                        error: message.clone(),
                    }),
                }
                selected.push((*rec).clone());
            }
        }
    }
    report
        .failed
        .sort_by(|a, b| (&a.file, &a.sha256).cmp(&(&b.file, &b.sha256)));
    report.missing.sort();
    (selected, report)
}

/// The inputs named by the tasks' manifests, and what is wrong with the split: tasks that left
/// no manifest, inputs owned by two tasks. Only manifests of `job_hash` count.
pub fn expected_from_manifests(
    manifests: &[(PathBuf, Manifest)],
    job_hash: &str,
    report: &mut MergeReport,
) -> Vec<InputEntry> {
    let mine: Vec<&Manifest> = manifests
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.kind == "run" && m.hashes.job_hash == job_hash)
        .collect();
    // Coverage: some split must have all its tasks (an unsplit run is a split of one).
    let mut splits: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for m in &mine {
        let (i, n) = m.inputs.shard.map_or((0, 1), |s| (s.index(), s.count()));
        splits.entry(n).or_default().insert(i);
    }
    let complete = splits.iter().any(|(n, seen)| seen.len() == *n as usize);
    if !complete {
        for (n, seen) in &splits {
            for i in (0..*n).filter(|i| !seen.contains(i)) {
                report.missing_tasks.push(format!("{i} of {n}"));
            }
        }
    }
    let mut owners: BTreeMap<&InputEntry, usize> = BTreeMap::new();
    for m in &mine {
        for e in &m.inputs.files {
            *owners.entry(e).or_default() += 1;
        }
    }
    for (e, n) in &owners {
        if *n > 1 {
            report.owned_twice.push(format!("{} ({n} tasks)", e.file));
        }
    }
    owners.into_keys().cloned().collect()
}

/// Run manifests of the tasks: `OUT/manifest.json` (unsplit) and `OUT/shards/*/manifest.json`.
pub fn task_manifests(out: &OutDir) -> Result<Vec<(PathBuf, Manifest)>> {
    let paths = out.in_every_task(manifest::FILE_NAME)?;
    let mut out = Vec::new();
    for p in paths.into_iter().filter(|p| p.is_file()) {
        let m = Manifest::read(&p)?;
        // A previous merge's manifest is not a task's.
        if m.kind == "run" {
            out.push((p, m));
        }
    }
    Ok(out)
}

/// The job whose records to use: `flag` (`--job-hash`), else the one job the tasks' manifests
/// name, else the one job the records have (a run still going has no manifest yet). Several
/// jobs in one folder is an error listing them with their manifests. `paramx merge` and
/// `paramx report` both choose through here.
pub fn choose_job_hash(
    flag: Option<&str>,
    out: &Path,
    manifests: &[(PathBuf, Manifest)],
    records: &[(PathBuf, PaperRecord)],
) -> Result<String> {
    if let Some(h) = flag {
        return Ok(h.to_string());
    }
    let from_manifests: BTreeSet<&str> = manifests
        .iter()
        .map(|(_, m)| m.hashes.job_hash.as_str())
        .collect();
    let candidates: BTreeSet<&str> = if from_manifests.is_empty() {
        records
            .iter()
            .map(|(_, r)| r.key.job_hash.as_str())
            .collect()
    } else {
        from_manifests
    };
    match candidates.len() {
        0 => bail!(
            "{}: no records and no task manifests (is this the output folder of `paramx run`?)",
            out.display()
        ),
        1 => Ok(candidates
            .into_iter()
            .next()
            .unwrap_or_default()
            .to_string()),
        _ => {
            let mut msg = format!(
                "{} holds the work of several jobs (different limits, model or schema); \
                 pick one with --job-hash:",
                out.display()
            );
            for h in &candidates {
                let files: Vec<String> = manifests
                    .iter()
                    .filter(|(_, m)| m.hashes.job_hash == *h)
                    .map(|(p, m)| {
                        format!("{} (finished {})", p.display(), m.run.times.finished_utc)
                    })
                    .collect();
                msg.push_str(&format!("\n  {h}  {}", files.join(", ")));
            }
            bail!(msg)
        }
    }
}

/// The merge report's file name in the output folder.
pub const MERGE_REPORT: &str = "merge.json";

/// `paramx merge`: joins the records of every array task of one job in `out` (the job of
/// `job_hash_flag`, else the one the manifests or records name) into `OUT/table.csv`,
/// `results.jsonl`, `errors.jsonl`, `merge.json` and, for a split run, a manifest of kind
/// "merge". The inputs that must be present are `expect_inputs`, else those the tasks' manifests
/// list. Returns the verdict and where the tables went.
pub fn merge(
    out: &Path,
    schema: &Schema,
    job_hash_flag: Option<&str>,
    expect_inputs: &[PathBuf],
    started: std::time::SystemTime,
) -> Result<(MergeReport, OutputPaths)> {
    let dir = OutDir::new(out);
    let manifests = task_manifests(&dir)?;
    let records = RecordStore::new(out).load_all::<PaperRecord>()?;
    let job_hash = choose_job_hash(job_hash_flag, out, &manifests, &records)?;
    let mine: Vec<&Manifest> = manifests
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.hashes.job_hash == job_hash)
        .collect();

    // The schema decides the table's columns: it must be the one the tasks used.
    let schema_sha = crate::run::hashes::schema_hash(schema)?;
    if let Some(m) = mine.iter().find(|m| m.hashes.schema_sha256 != schema_sha) {
        bail!(
            "schema {} (sha256 {schema_sha}) is not the one the tasks ran with ({}): pass it with --schema",
            schema.path.display(),
            m.hashes.schema_sha256
        );
    }

    let mut report = MergeReport::default();
    let expected: Vec<InputEntry> = if expect_inputs.is_empty() {
        if mine.is_empty() {
            bail!(
                "no task manifest of job {job_hash} in {}: pass the inputs with --expect-inputs",
                out.display()
            );
        }
        expected_from_manifests(&manifests, &job_hash, &mut report)
    } else {
        let pdfs = crate::run::discover(expect_inputs)?;
        manifest::input_entries(&pdfs)
    };
    let (selected, checked) = check(&expected, &records, &job_hash);
    report = MergeReport {
        missing_tasks: report.missing_tasks,
        owned_twice: report.owned_twice,
        ..checked
    };

    let paths = OutputPaths::in_dir(out);
    write_outputs(schema, &selected, &paths)?;
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    write_atomic(&out.join(MERGE_REPORT), &bytes)?;

    // The merged manifest: the tasks' hashes (they must agree), the inputs, the merge's counts.
    // An unsplit run's own manifest already describes these inputs and hashes: keep it.
    let split = mine.iter().any(|m| m.inputs.shard.is_some());
    if let (true, Some(first)) = (split, mine.first()) {
        let differing: Vec<&Manifest> = mine
            .iter()
            .copied()
            .filter(|m| m.hashes != first.hashes)
            .collect();
        if !differing.is_empty() {
            eprintln!(
                "paramx merge: warning: {} task manifest(s) differ from the first in binary or settings \
                 (e.g. git revision {} vs {}): the table mixes their outputs",
                differing.len(),
                first.hashes.git_revision,
                differing[0].hashes.git_revision
            );
        }
        let mut files = expected.clone();
        files.sort();
        files.dedup();
        let finished = std::time::SystemTime::now();
        let m = Manifest {
            format: manifest::FORMAT,
            kind: "merge".into(),
            hashes: first.hashes.clone(),
            inputs: manifest::Inputs { shard: None, files },
            run: manifest::RunInfo {
                counts: manifest::Counts {
                    papers: report.expected,
                    done: report.ok,
                    failed: report.failed.len(),
                    experiments: selected
                        .iter()
                        .map(|r| match &r.outcome {
                            crate::run::record::Outcome::Ok(p) => p.experiments.len(),
                            _ => 0,
                        })
                        .sum(),
                    ..Default::default()
                },
                times: manifest::Times {
                    started_utc: manifest::utc_rfc3339(started),
                    finished_utc: manifest::utc_rfc3339(finished),
                    wall_secs: finished
                        .duration_since(started)
                        .map_or(0.0, |d| d.as_secs_f64()),
                    model_load_secs: 0.0,
                },
                environment: manifest::environment(crate::run::job::DeviceKind::Cpu),
            },
        };
        m.write(out)?;
    } else if mine.is_empty() {
        eprintln!(
            "paramx merge: warning: no task manifest of job {job_hash}: manifest.json not written"
        );
    }

    Ok((report, paths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::record::Stage;
    use crate::run::store::RecordKey;

    fn entry(file: &str, sha: &str) -> InputEntry {
        InputEntry {
            file: file.into(),
            sha256: sha.into(),
        }
    }

    fn rec(file: &str, sha: &str, job: &str, ok: bool) -> (PathBuf, PaperRecord) {
        let outcome = if ok {
            Outcome::Ok(crate::run::record::PaperResult {
                experiments: vec![],
                dropped: vec![],
                completeness: crate::run::answer::AnswerCompleteness::Complete,
                finish: "constraint".into(),
                prompt_tokens: 1,
                generated_tokens: 1,
                prefix_tokens: 0,
                prompt_pieces: vec![],
                raw_answer: "{}".into(),
                questions: vec![],
            })
        } else {
            Outcome::Error {
                stage: Stage::Text,
                message: "not a PDF".into(),
            }
        };
        (
            PathBuf::from(format!("papers/{sha}.json")),
            PaperRecord {
                key: RecordKey {
                    sha256: sha.into(),
                    job_hash: job.into(),
                },
                source_file: file.into(),
                doi: None,
                title: None,
                authors: vec![],
                year: None,
                pages: 1,
                outcome,
                timing: None,
            },
        )
    }

    #[test]
    fn classifies_ok_failed_missing_extra_and_other_jobs() {
        let expected = [
            entry("a.pdf", "aa"),
            entry("b.pdf", "bb"),
            entry("c.pdf", "cc"),
        ];
        let records = [
            rec("a.pdf", "aa", "j", true),
            rec("b.pdf", "bb", "j", false),
            rec("c.pdf", "cc", "old-job", true),
            rec("z.pdf", "zz", "j", true),
        ];
        let (sel, r) = check(&expected, &records, "j");
        assert_eq!(sel.len(), 2);
        assert_eq!(r.expected, 3);
        assert_eq!(r.ok, 1);
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].file, "b.pdf");
        assert_eq!(r.missing, vec![entry("c.pdf", "cc")]);
        assert_eq!(r.extra.len(), 1);
        assert!(r.has_problems());
        let text = r.lines().join("\n");
        assert!(
            text.contains("MISSING c.pdf") && text.contains("FAILED  b.pdf"),
            "{text}"
        );
    }

    #[test]
    fn a_copied_record_is_a_duplicate_and_identical_pdfs_are_one_paper() {
        let expected = [entry("a.pdf", "aa"), entry("a-copy.pdf", "aa")];
        let (p, r0) = rec("a.pdf", "aa", "j", true);
        let records = [
            (p, r0.clone()),
            (PathBuf::from("papers/aa (copy).json"), r0),
        ];
        let (sel, r) = check(&expected, &records, "j");
        assert_eq!(sel.len(), 1);
        assert_eq!(r.expected, 1);
        assert_eq!(r.same_content.len(), 1);
        assert_eq!(r.duplicated.len(), 1);
        assert!(r.has_problems());
        let (_, clean) = check(&expected, &records[..1], "j");
        assert!(!clean.has_problems(), "{clean:?}");
    }
}
