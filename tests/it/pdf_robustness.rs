//! Deterministic, bounded mutation testing that runs in CI (the cargo-fuzz target in
//! `tests/fuzz` explores further but needs nightly). Mutated PDFs and random content streams
//! must give a document or a clean error: never a panic (which `extract_file` would report as
//! `PdfError::Internal`), never a hang.

use lopdf::{dictionary, Document, Object, Stream};
use paramx::pdf::content::interpret_plain;
use paramx::pdf::layout::page_lines;
use paramx::pdf::{extract_file, ExtractOptions, PdfError};
use std::path::Path;
use std::time::Duration;

/// xorshift64*: a fixed-seed generator so every run tests the same inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"BT ",
    b"ET ",
    b"Tj ",
    b"TJ ",
    b"Tf ",
    b"Td ",
    b"Tm ",
    b"cm ",
    b"q ",
    b"Q ",
    b"Do ",
    b"BI ",
    b"ID ",
    b"EI ",
    b"[",
    b"]",
    b"(",
    b")",
    b"<",
    b">",
    b"<<",
    b">>",
    b"/F1 ",
    b"-1e30 ",
    b"1e30 ",
    b"0 ",
    b"-0 ",
    b"99999999999 ",
    b"\\",
    b"%",
    b"endobj ",
    b"stream\n",
    b"endstream ",
    b"obj ",
    b"R ",
    b"xref ",
    b"trailer ",
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(8) {
        if data.is_empty() {
            data.push(b'%');
        }
        let at = rng.below(data.len());
        match rng.below(6) {
            0 => data[at] = rng.next() as u8,
            1 => data[at] ^= 1 << rng.below(8),
            2 => data.truncate(at),
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, t.iter().copied());
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk);
            }
            _ => {
                let end = (at + 1 + rng.below(64)).min(data.len());
                data.drain(at..end);
            }
        }
    }
}

fn sample_pdf() -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        "Encoding" => dictionary! { "Differences" => vec![1.into(), Object::Name(b"H11002".to_vec()), Object::Name(b"degree".to_vec())] },
        "FirstChar" => 0, "Widths" => vec![Object::Integer(500); 256],
    });
    let form = Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 100.into(), 100.into()] },
        b"BT /F1 9 Tf 10 10 Td (in a form) Tj ET".to_vec(),
    );
    let form_id = doc.add_object(form);
    let content = b"BT /F1 10 Tf 72 720 Td 14 TL [(Rotation of ) -250 (\x0145\x02)] TJ T* (Participants were twenty adults.) Tj ET q 1 0 0 1 50 50 cm /X1 Do Q".to_vec();
    let content_id = doc.add_object(Stream::new(dictionary! {}, content));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id }, "XObject" => dictionary! { "X1" => form_id } },
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 },
        ),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn check(path: &Path, opts: &ExtractOptions) {
    match extract_file(path, opts) {
        Ok(d) => assert!(!d.text.trim().is_empty(), "empty success"),
        Err(PdfError::Internal { message, .. }) => {
            panic!("internal error (panic) on mutated input: {message}")
        }
        Err(_) => {}
    }
}

#[test]
fn sample_pdf_is_extracted_with_signs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sample.pdf");
    std::fs::write(&p, sample_pdf()).unwrap();
    let d = extract_file(&p, &ExtractOptions::default()).unwrap();
    assert!(
        d.text.contains("Rotation of \u{2212}45\u{B0}"),
        "{}",
        d.text
    );
    assert!(
        d.text.contains("in a form"),
        "Form XObject text missing: {}",
        d.text
    );
}

#[test]
fn mutated_pdfs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        page_timeout: Duration::from_secs(5),
        ..ExtractOptions::default()
    };
    let base = sample_pdf();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let p = dir.path().join("m.pdf");
    for _ in 0..400 {
        let mut data = base.clone();
        mutate(&mut rng, &mut data);
        std::fs::write(&p, &data).unwrap();
        check(&p, &opts);
    }
}

#[test]
fn mutated_corpus_pdf_never_panics() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/papers/McDougle and Taylor - 2019 - Dissociable cognitive strategies for sensorimotor learning.pdf");
    let Ok(base) = std::fs::read(&f) else {
        eprintln!("SKIP: corpus paper not found: {}", f.display());
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.pdf");
    let mut rng = Rng(42);
    for _ in 0..12 {
        let mut data = base.clone();
        mutate(&mut rng, &mut data);
        std::fs::write(&p, &data).unwrap();
        check(&p, &ExtractOptions::default());
    }
}

#[test]
fn random_content_streams_never_panic() {
    let mut rng = Rng(7);
    let seed =
        b"BT /F1 10 Tf 1 0 0 1 72 700 Tm [(Hello) -250 (world)] TJ 0 -12 Td (next line) Tj ET"
            .to_vec();
    for i in 0..3000 {
        let data: Vec<u8> = if i % 3 == 0 {
            (0..rng.below(512)).map(|_| rng.next() as u8).collect()
        } else {
            let mut d = seed.clone();
            mutate(&mut rng, &mut d);
            d
        };
        let page = interpret_plain(&data);
        let _ = page_lines(&page);
    }
}
