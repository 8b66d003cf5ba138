//! `paramx merge`: one table, one JSONL and one error list from the records of all array tasks.
//!
//! Reads `OUT/papers/` (every task's records) and the tasks' manifests (`OUT/shards/*/` and, for
//! an unsplit run, `OUT/manifest.json`), checks that every input is present exactly once, writes
//! `OUT/table.csv`, `OUT/results.jsonl`, `OUT/errors.jsonl`, `OUT/merge.json` (the report) and
//! `OUT/manifest.json` (kind "merge"), and lists failed and missing papers.
//! Exit codes: 0 all inputs done; 1 some failed or missing (the table holds the rest); 2 fatal.

use crate::run::job::JobConfig;
use crate::run::manifest::{self, InputEntry, Manifest};
use crate::run::merge::{check, expected_from_manifests, MergeReport};
use crate::run::output::{write_outputs, OutputPaths};
use crate::run::record::PaperRecord;
use crate::run::store::{write_atomic, RecordStore};
use crate::schema::Schema;
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run's output folder (holding `papers/` and `shards/`); merged files are written here.
    /// Default: the job file's `io.out_dir`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Job file: gives the default output folder and schema.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// PDF files or folders that must all be present. Default: the inputs listed in the tasks'
    /// manifests (then a task that never ran is reported as a missing task).
    #[arg(long = "expect-inputs", num_args = 1..)]
    pub expect_inputs: Vec<PathBuf>,
    /// Parameter schema for the table (default: the job's, else the built-in one). Must be the
    /// one the tasks ran with (checked against their manifests).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Which job's records to merge, when the folder holds records of several (e.g. after a
    /// change of limits). Default: the only job hash found in the manifests (or records).
    #[arg(long)]
    pub job_hash: Option<String>,
}

/// Run manifests of the tasks: `OUT/manifest.json` (unsplit) and `OUT/shards/*/manifest.json`.
fn task_manifests(out: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let paths = crate::run::layout::OutDir::new(out).in_every_task(manifest::FILE_NAME)?;
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

fn choose_job_hash(
    flag: Option<&str>,
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
        0 => bail!("no records and no task manifests found: nothing to merge"),
        1 => Ok(candidates
            .into_iter()
            .next()
            .unwrap_or_default()
            .to_string()),
        _ => {
            let mut msg = String::from(
                "the folder holds the work of several jobs (different limits, model or schema); \
                 pick one with --job-hash:",
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

pub fn run(args: Args) -> Result<ExitCode> {
    let started = std::time::SystemTime::now();
    let job = args.config.as_deref().map(JobConfig::load).transpose()?;
    let out = match (&args.out, &job) {
        (Some(o), _) => o.clone(),
        (None, Some(j)) => j.io.out_dir.clone(),
        (None, None) => bail!("name the run's output folder with --out (or give --config)"),
    };
    if !out.is_dir() {
        bail!("output folder {} does not exist", out.display());
    }
    let schema = match (&args.schema, &job) {
        (Some(p), _) => Schema::load(p)?,
        (None, Some(j)) => Schema::load(&j.io.schema)?,
        (None, None) => Schema::load_default()?,
    };
    let manifests = task_manifests(&out)?;
    let records = RecordStore::new(&out).load_all::<PaperRecord>()?;
    let job_hash = choose_job_hash(args.job_hash.as_deref(), &manifests, &records)?;
    let mine: Vec<&Manifest> = manifests
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.hashes.job_hash == job_hash)
        .collect();

    // The schema decides the table's columns: it must be the one the tasks used.
    let schema_sha = crate::run::hashes::schema_hash(&schema)?;
    if let Some(m) = mine.iter().find(|m| m.hashes.schema_sha256 != schema_sha) {
        bail!(
            "schema {} (sha256 {schema_sha}) is not the one the tasks ran with ({}): pass it with --schema",
            schema.path.display(),
            m.hashes.schema_sha256
        );
    }

    let mut report = MergeReport::default();
    let expected: Vec<InputEntry> = if args.expect_inputs.is_empty() {
        if mine.is_empty() {
            bail!(
                "no task manifest of job {job_hash} in {}: pass the inputs with --expect-inputs",
                out.display()
            );
        }
        expected_from_manifests(&manifests, &job_hash, &mut report)
    } else {
        let pdfs = crate::run::discover(&args.expect_inputs)?;
        manifest::input_entries(&pdfs)
    };
    let (selected, checked) = check(&expected, &records, &job_hash);
    report = MergeReport {
        missing_tasks: report.missing_tasks,
        owned_twice: report.owned_twice,
        ..checked
    };

    let paths = OutputPaths::in_dir(&out);
    write_outputs(&schema, &selected, &paths)?;
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    write_atomic(&out.join("merge.json"), &bytes)?;

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
        m.write(&out)?;
    } else if mine.is_empty() {
        eprintln!(
            "paramx merge: warning: no task manifest of job {job_hash}: manifest.json not written"
        );
    }

    for l in report.lines() {
        println!("{l}");
    }
    println!(
        "paramx merge: wrote {}, {}, {}",
        paths.table.display(),
        paths.results.display(),
        paths.errors.display()
    );
    Ok(if report.has_problems() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
