//! The review page (`report.html`): every value of the run beside the sentence that states it,
//! the page it stands on and a link opening the PDF there; inherited and dropped values with
//! their reasons; failed papers; with a gold, each cell's verdict and the per-field F1 chart
//! with the constant baseline; and corrections made in the page, downloaded as a CSV in the
//! gold's layout that `paramx eval` reads as gold.
//!
//! Flow: records (+ text cache, `sources.json`, gold) -> [`data::build`] (all decisions, with
//! `run::output::table_of` and the strict scorer) -> [`html::render`] (one self-contained file:
//! the data as JSON inside the page, a fixed template with inline CSS and script, no network).
//! `paramx run` writes it after every finished paper ([`write_for_run`]); `paramx report`
//! re-renders it from the records of a run, array tasks included.

pub mod context;
pub mod data;
pub mod gold;
pub mod html;
pub mod links;

use crate::run::record::PaperRecord;
use crate::run::store::{write_atomic, RecordStore};
use crate::schema::Schema;
use crate::table::Table;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "report.html";

/// The folder of the run's text cache (`run::leader_prepare` writes it).
pub fn text_cache_dir(out: &Path) -> PathBuf {
    crate::run::layout::OutDir::new(out).text_cache()
}

/// The records of one job in `out/papers/` (every array task's).
pub fn job_records(out: &Path, job_hash: &str) -> Result<Vec<PaperRecord>> {
    Ok(of_job(all_records(out)?, job_hash))
}

/// Every record in `out/papers/`, of any job.
fn all_records(out: &Path) -> Result<Vec<(PathBuf, PaperRecord)>> {
    RecordStore::new(out)
        .load_all::<PaperRecord>()
        .with_context(|| {
            format!(
                "cannot read the records in {}",
                crate::run::layout::OutDir::new(out).papers().display()
            )
        })
}

/// The records of `job_hash` among `all` (as `RecordStore::load_all` returns them).
fn of_job(all: Vec<(PathBuf, PaperRecord)>, job_hash: &str) -> Vec<PaperRecord> {
    all.into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.key.job_hash == job_hash)
        .collect()
}

/// Renders the page for `records` and writes it atomically to `page`.
pub fn write(
    page: &Path,
    out: &Path,
    schema: &Schema,
    records: &[PaperRecord],
    job_hash: &str,
    gold: Option<&Table>,
    sources: &links::Sources,
) -> Result<usize> {
    let page_dir = page
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cache = text_cache_dir(out);
    let input = data::ReportInput {
        schema,
        records,
        job_hash,
        page_dir,
        text_cache: cache.is_dir().then_some(cache.as_path()),
        sources,
        gold,
        heading: out.display().to_string(),
    };
    let data = data::build(&input)?;
    let html = html::render(&data)?;
    write_atomic(page, html.as_bytes())?;
    Ok(html.len())
}

/// What `paramx run` needs to rewrite the page after each paper.
pub struct RunReport<'a> {
    pub out: &'a Path,
    pub schema: &'a Schema,
    pub gold: Option<Table>,
}

impl RunReport<'_> {
    /// Rewrites `OUT/report.html` from every record of the job so far (all array tasks'). A
    /// failure is reported and the run goes on: the page is a view, the records are the result.
    pub fn refresh(&self, job_hash: &str) {
        let result = (|| -> Result<()> {
            let records = job_records(self.out, job_hash)?;
            let sources = links::Sources::read_run(self.out)?;
            write(
                &self.out.join(FILE_NAME),
                self.out,
                self.schema,
                &records,
                job_hash,
                self.gold.as_ref(),
                &sources,
            )?;
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("paramx: warning: cannot write the review page: {e:#}");
        }
    }
}

/// `paramx report`: the page of the run in `dir` written again at `page` from the records of
/// one job (`job_hash_flag`, else the one the manifests or records name: the choice `paramx
/// merge` makes), with the PDFs the run listed plus `inputs`. Returns the papers shown and the
/// page's size in bytes.
pub fn rewrite(
    dir: &Path,
    page: &Path,
    schema: &Schema,
    gold: Option<&Table>,
    job_hash_flag: Option<&str>,
    inputs: &[PathBuf],
) -> Result<(usize, usize)> {
    let out = crate::run::layout::OutDir::new(dir);
    let manifests = crate::run::merge::task_manifests(&out)?;
    let all = all_records(dir)?;
    let job_hash = crate::run::merge::choose_job_hash(job_hash_flag, dir, &manifests, &all)?;
    // The records read once serve both the choice of the job and the page.
    let records = of_job(all, &job_hash);
    let mut sources = links::Sources::read_run(dir)?;
    if !inputs.is_empty() {
        sources.extend(links::Sources::of_inputs(&crate::run::discover(inputs)?));
    }
    let bytes = write(page, dir, schema, &records, &job_hash, gold, &sources)?;
    Ok((records.len(), bytes))
}

/// Fixed records, a document and a gold table for the review page's tests, unit and browser
/// (`tests/it/report_browser.rs`): compiled in, so that both read the same fixture.
#[doc(hidden)]
pub mod testdata;

#[cfg(test)]
mod tests {
    use super::data::{build, ReportData, ReportInput};
    use super::gold::Status;
    use super::*;

    fn records() -> Vec<PaperRecord> {
        testdata::records()
    }

    fn data(gold: Option<&Table>, cache: Option<&Path>) -> Result<ReportData> {
        let schema = Schema::load_default()?;
        let recs = records();
        let sources = links::Sources::of_inputs(&[PathBuf::from("/data/pdfs/smith.pdf")]);
        build(&ReportInput {
            schema: &schema,
            records: &recs,
            job_hash: "job1",
            page_dir: Path::new("/data/out"),
            text_cache: cache,
            sources: &sources,
            gold,
            heading: "out".into(),
        })
    }

    fn col(d: &ReportData, name: &str) -> usize {
        d.columns.iter().position(|c| c.name == name).unwrap()
    }

    #[test]
    fn cells_carry_values_evidence_and_reasons() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let doc: crate::pdf::Document = testdata::document();
        crate::pdf::cache::store(dir.path(), &doc)?;
        let d = data(None, Some(dir.path()))?;
        let schema = Schema::load_default()?;
        assert_eq!(
            d.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            schema.column_names(),
            "the gold's layout"
        );
        let files: Vec<&str> = d.papers.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["broken.pdf", "smith-b.pdf", "smith.pdf"]);
        let broken = &d.papers[0];
        assert!(broken.rows.is_empty());
        assert!(broken
            .error
            .as_ref()
            .unwrap()
            .message
            .starts_with("not a PDF"));
        let smith = &d.papers[2];
        assert_eq!(smith.pdf.as_deref(), Some("../pdfs/smith.pdf"));
        assert_eq!(d.papers[1].pdf, None, "location unknown");
        assert_eq!(smith.rows.len(), 2);
        let n = &smith.rows[0].cells[col(&d, "n_total")];
        assert_eq!(n.v, "24");
        let ev = n.ev.as_ref().unwrap();
        assert!(ev.inherited);
        assert_eq!(ev.page, Some(1));
        let pas = &smith.passages[ev.passage];
        assert_eq!(
            pas.quote,
            "Twenty-four right-handed participants (N = 24) took part."
        );
        assert_eq!(pas.before, "Methods. ");
        assert_eq!(pas.after, " They reached to 8 targets with the arm.");
        // One passage per distinct quote.
        assert_eq!(smith.passages.len(), 4);
        assert_eq!(smith.rows[1].cells[col(&d, "effector")].dropped, [0]);
        assert!(smith.rows[0].cells[col(&d, "effector")].dropped.is_empty());
        let t = &d.totals;
        assert_eq!(
            (
                t.papers,
                t.failed,
                t.experiments,
                t.values,
                t.inherited,
                t.dropped
            ),
            (3, 1, 3, 8, 2, 1)
        );
        for p in &d.papers {
            for r in &p.rows {
                assert_eq!(r.cells.len(), d.columns.len());
                assert_eq!(r.cells[col(&d, data::STUDY_ID)].v, r.study_id);
            }
        }
        // Same surname and year: the second paper in the page gets a letter.
        assert_eq!(d.papers[1].rows[0].study_id, "Smith2020");
        assert_eq!(smith.rows[0].study_id, "SmithB2020EXP1");
        assert_eq!(smith.rows[1].study_id, "SmithB2020EXP2");
        // Without the text cache, a quote stands alone.
        let bare = data(None, None)?;
        let pas = &bare.papers[2].passages[0];
        assert!(pas.before.is_empty() && pas.after.is_empty() && !pas.quote.is_empty());
        Ok(())
    }

    #[test]
    fn gold_marks_every_scored_cell() -> Result<()> {
        let gold = Table::from_bytes("gold.csv", testdata::gold_csv().as_bytes())?;
        let d = data(Some(&gold), None)?;
        let smith = &d.papers[2];
        let (n, mag, sched) = (
            col(&d, "n_total"),
            col(&d, "perturbation_magnitude"),
            col(&d, "perturbation_schedule"),
        );
        let c = &smith.rows[0].cells;
        assert_eq!(c[n].st, Some(Status::Tp));
        assert_eq!(c[mag].st, Some(Status::Fp));
        assert_eq!(c[mag].gold.as_deref(), Some("40°"));
        assert_eq!(c[sched].st, Some(Status::Tp));
        let c2 = &smith.rows[1].cells;
        assert_eq!(c2[mag].st, Some(Status::Tp));
        assert_eq!(c2[sched].st, None, "no gold value: not scored");
        let extra = smith
            .rows
            .iter()
            .find(|r| r.gold_only)
            .expect("gold-only row");
        assert_eq!(extra.study_id, "Smith2020EXP3");
        assert_eq!(extra.cells[n].st, Some(Status::Fn));
        assert_eq!(extra.cells[n].gold.as_deref(), Some("30"));
        let g = d.gold.as_ref().unwrap();
        assert_eq!(g.unmatched, ["Jones1999"]);
        assert!(g.chart_svg.contains("<svg") && g.f1 > 0.0 && g.f1 < 1.0);
        assert!(
            d.papers[1].rows[0].cells[n].st.is_none(),
            "smith-b has no gold"
        );
        Ok(())
    }

    #[test]
    fn a_single_row_gold_marks_the_experiments_that_gave_a_value() -> Result<()> {
        let gold = Table::from_bytes(
            "gold.csv",
            "study_id,title,doi_or_url,n_total,effector,population_type\n\
             Smith2020,Adaptation of reaching,10.1000/xyz,48,arm,patients\n"
                .as_bytes(),
        )?;
        let d = data(Some(&gold), None)?;
        let rows = &d.papers[2].rows;
        let (n, eff, pop) = (
            col(&d, "n_total"),
            col(&d, "effector"),
            col(&d, "population_type"),
        );
        for r in rows {
            // n_total merges by sum (24 + 24): the paper's verdict on both experiments.
            assert_eq!((r.cells[n].st, r.cells[n].merged), (Some(Status::Tp), true));
            // Nothing predicted anywhere: missed on every experiment.
            assert_eq!(r.cells[eff].st, Some(Status::Fn));
        }
        // Only experiment 2 gave a population: it alone carries the FP.
        assert_eq!(rows[0].cells[pop].st, None);
        assert_eq!(rows[1].cells[pop].st, Some(Status::Fp));
        Ok(())
    }

    #[test]
    fn the_page_is_self_contained_and_hostile_text_stays_text() -> Result<()> {
        let gold = Table::from_bytes("gold.csv", testdata::gold_csv().as_bytes())?;
        let html = html::render(&data(Some(&gold), None)?)?;
        // The template's two script elements close; nothing from the data does.
        assert_eq!(html.matches("</script").count(), 2);
        for bad in [
            "<img",
            "id=\"pwned\"",
            "<link",
            "src=\"http",
            "@import",
            "url(",
        ] {
            assert!(!html.contains(bad), "{bad}");
        }
        assert!(html.contains("\\u003c/script\\u003e"));
        Ok(())
    }

    #[test]
    fn export_ids_are_unique_and_never_empty() {
        let mut recs = records();
        recs[2].authors.clear();
        let sorted = crate::run::output::sorted(&recs);
        let ids = data::export_ids(&sorted);
        // broken.pdf has no rows; smith-b (no author now) is Paper0002; smith.pdf keeps its id.
        assert_eq!(ids[0], Vec::<String>::new());
        assert_eq!(ids[1], ["Paper0002"]);
        assert_eq!(ids[2], ["Smith2020EXP1", "Smith2020EXP2"]);
    }

    #[test]
    fn write_puts_one_page_beside_the_records() -> Result<()> {
        let out = tempfile::tempdir()?;
        let schema = Schema::load_default()?;
        let recs = records();
        let store = RecordStore::new(out.path());
        for r in &recs {
            store.save(r)?;
        }
        let loaded = job_records(out.path(), "job1")?;
        assert_eq!(loaded.len(), 3);
        assert!(job_records(out.path(), "other")?.is_empty());
        let page = out.path().join(FILE_NAME);
        let n = write(
            &page,
            out.path(),
            &schema,
            &loaded,
            "job1",
            None,
            &Default::default(),
        )?;
        assert_eq!(std::fs::metadata(&page)?.len() as usize, n);
        Ok(())
    }
}
