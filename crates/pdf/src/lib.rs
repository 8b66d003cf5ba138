//! PDF -> clean, sectioned text.
//!
//! lopdf parses the file (objects, streams, filters); everything from the content stream on is
//! ours: [`lexer`] and [`content`] interpret operators into positioned glyphs using [`font`] and
//! [`cmap`] (and [`glyphs`] for glyph names), [`layout`] turns glyphs into lines in reading
//! order, [`clean`] removes page furniture and joins hyphenated words, [`sections`] and [`meta`]
//! find headings, DOI and title, [`cache`] keys results by the file's sha256.
//!
//! Invariants: `Document::text` is the only text; `Page` and `Section` are byte ranges into it
//! (always on char boundaries, ordered, non-overlapping), so later stages can quote evidence by
//! offset. A page that panics or overruns its time limit becomes a `PageError` and an empty
//! page; the document still succeeds if any page has text.

pub mod cache;
pub mod clean;
pub mod cmap;
pub mod content;
pub mod font;
pub mod glyphs;
pub mod isolate;
pub mod layout;
pub mod lexer;
pub mod meta;
pub mod metrics;
pub mod sections;

use content::{Env, Interpreter, Limits, Matrix, XObject};
use font::Font;
use layout::Line;
use lopdf::{Dictionary, Object, ObjectId};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use sections::{Section, SectionKind};

/// Decompressed-size cap for any single stream (content, CMap, form): a bomb guard.
pub const MAX_STREAM_BYTES: usize = 64 << 20;

/// Bumped whenever extraction output changes, so stale cache entries are ignored.
pub const EXTRACTOR_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based page number.
    pub number: usize,
    /// Byte range of this page's text in [`Document::text`].
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageError {
    pub page: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub path: PathBuf,
    pub sha256: String,
    pub pages: Vec<Page>,
    pub text: String,
    pub sections: Vec<Section>,
    pub doi: Option<String>,
    pub title: Option<String>,
    /// The authors' surnames, in order, from the byline under the title (empty if not found).
    #[serde(default)]
    pub authors: Vec<String>,
    /// The publication year named on page 1 (or the file's creation year).
    #[serde(default)]
    pub year: Option<u32>,
    pub page_errors: Vec<PageError>,
}

impl Document {
    /// The text of one page (1-based), if it exists.
    pub fn page_text(&self, number: usize) -> Option<&str> {
        let p = self.pages.iter().find(|p| p.number == number)?;
        self.text.get(p.start..p.end)
    }

    /// The section whose range contains byte `offset`.
    pub fn section_at(&self, offset: usize) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.start <= offset && offset < s.end)
    }
}

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Where cached documents live (`<sha256>.json`); `None` disables caching.
    pub cache_dir: Option<PathBuf>,
    /// Time one page may take before it is abandoned and recorded as a page error.
    pub page_timeout: Duration,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            cache_dir: None,
            page_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("{path}: cannot read file: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: file is empty (0 bytes)")]
    Empty { path: PathBuf },
    #[error("{path}: not a PDF (no %PDF header)")]
    NotPdf { path: PathBuf },
    #[error("{path}: PDF is encrypted and cannot be opened without a password")]
    Encrypted { path: PathBuf },
    #[error("{path}: PDF is truncated (no end-of-file marker) and could not be parsed: {message}")]
    Truncated { path: PathBuf, message: String },
    #[error("{path}: PDF could not be parsed: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: PDF has no pages")]
    NoPages { path: PathBuf },
    #[error(
        "{path}: no text layer on any of {pages} pages (image-only or scanned PDF; OCR it first)"
    )]
    NoTextLayer { path: PathBuf, pages: usize },
    #[error("{path}: internal error while extracting: {message}")]
    Internal { path: PathBuf, message: String },
    /// The worker process reading the file failed (crash, memory or time limit): see
    /// [`isolate`].
    #[error("{path}: {message}")]
    Worker { path: PathBuf, message: String },
    /// An error the worker process reported (its message names the file).
    #[error("{message}")]
    Reported { path: PathBuf, message: String },
}

/// sha256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Extracts one PDF file (or returns its cached extraction).
pub fn extract_file(path: &Path, opts: &ExtractOptions) -> Result<Document, PdfError> {
    let bytes = std::fs::read(path).map_err(|source| PdfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let sha = sha256_hex(&bytes);
    if let Some(dir) = &opts.cache_dir {
        if let Some(mut doc) = cache::load(dir, &sha) {
            doc.path = path.to_path_buf();
            return Ok(doc);
        }
    }
    let doc = match catch_unwind(AssertUnwindSafe(|| extract_bytes(path, &bytes, sha, opts))) {
        Ok(r) => r?,
        Err(panic) => {
            return Err(PdfError::Internal {
                path: path.to_path_buf(),
                message: panic_message(&panic),
            });
        }
    };
    if let Some(dir) = &opts.cache_dir {
        // A cache write failure costs speed next time, never this result.
        if let Err(e) = cache::store(dir, &doc) {
            eprintln!(
                "paramx: warning: {}: cannot write cache: {e}",
                path.display()
            );
        }
    }
    Ok(doc)
}

/// Extracts many PDFs in parallel on the current rayon pool; results keep the input order.
/// With a registered worker ([`isolate::use_worker`], as the `paramx` binary does) each file is
/// read in its own worker process under memory and time limits.
pub fn extract_many(
    paths: &[PathBuf],
    opts: &ExtractOptions,
) -> Vec<(PathBuf, Result<Document, PdfError>)> {
    paths
        .par_iter()
        .map(|p| {
            let r = match isolate::worker() {
                Some((exe, limits)) => isolate::extract_in_worker(exe, p, opts, *limits).0,
                None => extract_file(p, opts),
            };
            (p.clone(), r)
        })
        .collect()
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn load(path: &Path, bytes: &[u8]) -> Result<lopdf::Document, PdfError> {
    let p = || path.to_path_buf();
    if bytes.is_empty() {
        return Err(PdfError::Empty { path: p() });
    }
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(PdfError::NotPdf { path: p() });
    }
    let tail = &bytes[bytes.len().saturating_sub(2048)..];
    let has_eof = tail.windows(5).any(|w| w == b"%%EOF");
    let doc = match lopdf::Document::load_mem(bytes) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            let lower = msg.to_lowercase();
            if lower.contains("decrypt") || lower.contains("password") || lower.contains("encrypt")
            {
                return Err(PdfError::Encrypted { path: p() });
            }
            if !has_eof {
                return Err(PdfError::Truncated {
                    path: p(),
                    message: msg,
                });
            }
            return Err(PdfError::Parse {
                path: p(),
                message: msg,
            });
        }
    };
    if doc.is_encrypted() {
        return Err(PdfError::Encrypted { path: p() });
    }
    Ok(doc)
}

fn extract_bytes(
    path: &Path,
    bytes: &[u8],
    sha256: String,
    opts: &ExtractOptions,
) -> Result<Document, PdfError> {
    let doc = load(path, bytes)?;
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(PdfError::NoPages {
            path: path.to_path_buf(),
        });
    }
    let mut env = DocEnv {
        doc: &doc,
        fonts: HashMap::new(),
        skipped: Vec::new(),
        broken_forms: HashSet::new(),
    };
    let mut page_lines: Vec<Vec<Line>> = Vec::with_capacity(pages.len());
    let mut page_errors = Vec::new();
    let mut images = 0usize;
    let mut glyphs = 0usize;
    for (&num, &page_id) in &pages {
        let deadline = Instant::now() + opts.page_timeout;
        let r = catch_unwind(AssertUnwindSafe(|| {
            interpret_page(&mut env, page_id, deadline)
                .map(|pg| (pg.images, pg.glyphs.len(), layout::page_lines(&pg)))
        }));
        match r {
            Ok(Ok((n_images, n_glyphs, lines))) => {
                images += n_images;
                glyphs += n_glyphs;
                page_lines.push(lines);
            }
            Ok(Err(msg)) => {
                page_errors.push(PageError {
                    page: num as usize,
                    message: msg,
                });
                page_lines.push(Vec::new());
            }
            Err(panic) => {
                page_errors.push(PageError {
                    page: num as usize,
                    message: format!("panic: {}", panic_message(&panic)),
                });
                page_lines.push(Vec::new());
            }
        }
    }
    if glyphs == 0 {
        let _ = images;
        // Pages that failed to read are the reason, not a missing text layer: say so.
        if let Some(first) = page_errors.first() {
            return Err(PdfError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "no text could be read: {} of {} page(s) failed (page {}: {})",
                    page_errors.len(),
                    pages.len(),
                    first.page,
                    first.message
                ),
            });
        }
        // So are forms whose streams could not be decoded.
        if let Some(first) = env.skipped.first() {
            return Err(PdfError::Parse {
                path: path.to_path_buf(),
                message: format!("no text could be read: {first}"),
            });
        }
        return Err(PdfError::NoTextLayer {
            path: path.to_path_buf(),
            pages: pages.len(),
        });
    }
    let title = meta::title(page_lines.first().map(|v| &v[..]).unwrap_or(&[]))
        .or_else(|| meta::info_title(&doc));
    let assembled = clean::assemble(page_lines);
    if assembled.text.trim().is_empty() {
        return Err(PdfError::NoTextLayer {
            path: path.to_path_buf(),
            pages: pages.len(),
        });
    }
    let sections = sections::find(&assembled.text);
    let first_page_end = assembled.pages.first().map(|p| p.end).unwrap_or(0);
    let doi = meta::doi(&assembled.text, first_page_end);
    let page1 = assembled.text.get(..first_page_end).unwrap_or("");
    let title = title.or_else(|| meta::title_from_top(page1));
    let authors = title
        .as_deref()
        .map(|t| meta::authors(page1, t))
        .unwrap_or_default();
    let year = meta::year(page1, &doc);
    Ok(Document {
        path: path.to_path_buf(),
        sha256,
        pages: assembled.pages,
        text: assembled.text,
        sections,
        doi,
        title,
        authors,
        year,
        page_errors,
    })
}

/// Resources: the scope is the chain of resource dictionaries, innermost first.
type Scope<'d> = Rc<Vec<&'d Dictionary>>;

struct DocEnv<'d> {
    doc: &'d lopdf::Document,
    fonts: HashMap<ObjectId, Rc<Font>>,
    /// Why form XObjects were skipped (their stream could not be decoded), first few only: the
    /// reason a document without text gives, rather than a missing text layer.
    skipped: Vec<String>,
    /// Forms whose stream failed to decode: drawn again, they are skipped without decoding
    /// (a bomb drawn 1,000 times is inflated once, and gives its reason once).
    broken_forms: HashSet<ObjectId>,
}

/// How many skipped-stream reasons a document keeps.
const MAX_SKIPPED: usize = 8;

impl<'d> DocEnv<'d> {
    fn lookup(&self, scope: &Scope<'d>, category: &[u8], name: &[u8]) -> Option<&'d Object> {
        for res in scope.iter() {
            let Ok(cat) = res.get(category) else { continue };
            let Ok((_, cat)) = self.doc.dereference(cat) else {
                continue;
            };
            let Ok(cat) = cat.as_dict() else { continue };
            if let Ok(o) = cat.get(name) {
                return Some(o);
            }
        }
        None
    }
}

impl<'d> Env for DocEnv<'d> {
    type Scope = Scope<'d>;

    fn font(&mut self, scope: &Scope<'d>, name: &[u8]) -> Option<Rc<Font>> {
        let obj = self.lookup(scope, b"Font", name)?;
        match obj {
            Object::Reference(id) => {
                if let Some(f) = self.fonts.get(id) {
                    return Some(f.clone());
                }
                let d = self.doc.get_dictionary(*id).ok()?;
                let f = Rc::new(Font::from_dict(self.doc, d));
                self.fonts.insert(*id, f.clone());
                Some(f)
            }
            Object::Dictionary(d) => Some(Rc::new(Font::from_dict(self.doc, d))),
            _ => None,
        }
    }

    fn xobject(&mut self, scope: &Scope<'d>, name: &[u8]) -> XObject<Scope<'d>> {
        let Some(Object::Reference(id)) = self.lookup(scope, b"XObject", name) else {
            return XObject::None;
        };
        let Ok(Object::Stream(s)) = self.doc.get_object(*id) else {
            return XObject::None;
        };
        match s.dict.get(b"Subtype").and_then(Object::as_name) {
            Ok(b"Image") => XObject::Image,
            Ok(b"Form") => {
                if self.broken_forms.contains(id) {
                    return XObject::None;
                }
                let content = match s.get_plain_content_with_limit(MAX_STREAM_BYTES) {
                    Ok(c) => c,
                    Err(e) => {
                        self.broken_forms.insert(*id);
                        if self.skipped.len() < MAX_SKIPPED {
                            self.skipped.push(format!("form XObject {id:?}: {e}"));
                        }
                        return XObject::None;
                    }
                };
                let mut matrix = content::IDENTITY;
                if let Ok(Object::Array(m)) = s.dict.get(b"Matrix") {
                    let v: Vec<f32> = m.iter().filter_map(|o| o.as_float().ok()).collect();
                    if v.len() == 6 {
                        matrix = [v[0], v[1], v[2], v[3], v[4], v[5]];
                    }
                }
                let own = s
                    .dict
                    .get(b"Resources")
                    .ok()
                    .and_then(|o| self.doc.dereference(o).ok())
                    .and_then(|(_, o)| o.as_dict().ok());
                let scope = match own {
                    Some(d) => {
                        let mut v = vec![d];
                        v.extend(scope.iter().copied());
                        Rc::new(v)
                    }
                    None => scope.clone(),
                };
                XObject::Form {
                    content,
                    matrix,
                    scope,
                    key: (id.0 as u64) << 16 | id.1 as u64,
                }
            }
            _ => XObject::None,
        }
    }
}

fn page_ctm(doc: &lopdf::Document, page: &Dictionary) -> Matrix {
    let mut rotate = 0i64;
    let mut media = [0.0f32, 0.0, 612.0, 792.0];
    // /Rotate and /MediaBox are inheritable through the page tree.
    let mut node = Some(page);
    let mut got_rotate = false;
    let mut got_media = false;
    for _ in 0..32 {
        let Some(d) = node else { break };
        if !got_rotate {
            if let Ok(r) = d.get(b"Rotate").and_then(Object::as_i64) {
                rotate = r;
                got_rotate = true;
            }
        }
        if !got_media {
            if let Ok(Object::Array(a)) = d
                .get(b"MediaBox")
                .map(|o| doc.dereference(o).map(|x| x.1).unwrap_or(o))
            {
                let v: Vec<f32> = a.iter().filter_map(|o| o.as_float().ok()).collect();
                if v.len() == 4 {
                    media = [v[0], v[1], v[2], v[3]];
                    got_media = true;
                }
            }
        }
        node = d
            .get(b"Parent")
            .ok()
            .and_then(|o| doc.dereference(o).ok())
            .and_then(|(_, o)| o.as_dict().ok());
    }
    let (x0, y0, x1, y1) = (media[0], media[1], media[2], media[3]);
    match rotate.rem_euclid(360) {
        90 => [0.0, -1.0, 1.0, 0.0, -y0, x1],
        180 => [-1.0, 0.0, 0.0, -1.0, x1, y1],
        270 => [0.0, 1.0, -1.0, 0.0, y1, -x0],
        _ => content::IDENTITY,
    }
}

fn interpret_page(
    env: &mut DocEnv<'_>,
    page_id: ObjectId,
    deadline: Instant,
) -> Result<content::PageGlyphs, String> {
    let doc = env.doc;
    let page = doc
        .get_dictionary(page_id)
        .map_err(|e| format!("page object: {e}"))?;
    let mut content = Vec::new();
    for id in doc.get_page_contents(page_id) {
        if let Ok(Object::Stream(s)) = doc.get_object(id) {
            match s.get_plain_content_with_limit(MAX_STREAM_BYTES) {
                Ok(b) => {
                    content.extend_from_slice(&b);
                    content.push(b'\n');
                }
                Err(e) => return Err(format!("content stream {id:?}: {e}")),
            }
        }
    }
    let (own, inherited) = doc
        .get_page_resources(page_id)
        .map_err(|e| format!("resources: {e}"))?;
    let mut scope: Vec<&Dictionary> = Vec::new();
    scope.extend(own);
    for id in inherited {
        if let Ok(d) = doc.get_dictionary(id) {
            scope.push(d);
        }
    }
    let scope = Rc::new(scope);
    let ctm = page_ctm(doc, page);
    let mut it = Interpreter::new(
        env,
        Limits {
            deadline: Some(deadline),
            ..Limits::default()
        },
    );
    match it.run(&content, &scope, ctm) {
        Ok(()) => Ok(it.finish()),
        Err(content::Stop::Timeout) => {
            Err("page took longer than the time limit; skipped".to_string())
        }
    }
}
