//! Extraction cache keyed by the PDF's sha256: `<dir>/<sha256>.json`. Entries from another
//! extractor version are ignored (and overwritten), so a fix in the extractor takes effect
//! without anyone clearing caches by hand.

use super::{Document, EXTRACTOR_VERSION};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct Entry {
    version: u32,
    document: Document,
}

pub fn load(dir: &Path, sha256: &str) -> Option<Document> {
    let bytes = std::fs::read(dir.join(format!("{sha256}.json"))).ok()?;
    let e: Entry = serde_json::from_slice(&bytes).ok()?;
    (e.version == EXTRACTOR_VERSION && e.document.sha256 == sha256).then_some(e.document)
}

pub fn store(dir: &Path, doc: &Document) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", doc.sha256, std::process::id()));
    let e = Entry {
        version: EXTRACTOR_VERSION,
        document: doc.clone(),
    };
    std::fs::write(&tmp, serde_json::to_vec(&e).map_err(std::io::Error::other)?)?;
    // Rename is atomic: concurrent runs never read a half-written entry.
    std::fs::rename(&tmp, dir.join(format!("{}.json", doc.sha256)))
}
