//! Bad inputs give one clear error each (naming the file), never a panic and never an empty
//! success; the CLI exits 1 when any input failed and still prints the good ones. Fixtures are
//! generated here with lopdf rather than committed.

use lopdf::{dictionary, Document, Object, Stream};
use paramx::pdf::{extract_file, ExtractOptions, PdfError, SectionKind};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small valid PDF: one page per entry of `pages`, each a list of text lines in Helvetica.
fn text_pdf(pages: &[&[&str]]) -> Document {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        "FirstChar" => 32, "Widths" => vec![Object::Integer(500); 224],
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for lines in pages {
        let mut content = String::from("BT /F1 10 Tf 72 720 Td 14 TL\n");
        for l in lines.iter() {
            let escaped = l
                .replace('\\', "\\\\")
                .replace('(', "\\(")
                .replace(')', "\\)");
            content.push_str(&format!("({escaped}) Tj T*\n"));
        }
        content.push_str("ET\n");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        });
        kids.push(Object::from(page_id));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    doc
}

fn save(doc: &mut Document, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    doc.save(&p).unwrap();
    p
}

const BODY: &[&str] = &[
    "Sensorimotor adaptation of reaching movements",
    "Abstract",
    "We rotated the cursor by -45 degrees and measured the hand angle over many trials.",
    "Methods",
    "Participants. Twenty-four right-handed adults took part in the study after consent.",
    "doi: 10.1152/jn.00001.2020",
];

#[test]
fn valid_pdf_extracts_text_sections_and_doi() {
    let dir = tempfile::tempdir().unwrap();
    let path = save(&mut text_pdf(&[BODY]), dir.path(), "good.pdf");
    let d = extract_file(&path, &ExtractOptions::default()).unwrap();
    assert!(
        d.text.contains("We rotated the cursor by -45 degrees"),
        "{}",
        d.text
    );
    assert_eq!(d.pages.len(), 1);
    assert_eq!(d.doi.as_deref(), Some("10.1152/jn.00001.2020"));
    let kinds: Vec<&SectionKind> = d.sections.iter().map(|s| &s.kind).collect();
    assert!(
        kinds.contains(&&SectionKind::Methods) && kinds.contains(&&SectionKind::Participants),
        "{kinds:?}"
    );
    assert_eq!(d.sha256.len(), 64);
}

#[test]
fn cache_round_trips_by_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let path = save(&mut text_pdf(&[BODY]), dir.path(), "good.pdf");
    let opts = ExtractOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..ExtractOptions::default()
    };
    let first = extract_file(&path, &opts).unwrap();
    let entry = dir
        .path()
        .join("cache")
        .join(format!("{}.json", first.sha256));
    assert!(entry.is_file());
    // Same bytes under another name: served from the cache, with the new path.
    let copy = dir.path().join("copy.pdf");
    std::fs::copy(&path, &copy).unwrap();
    let second = extract_file(&copy, &opts).unwrap();
    assert_eq!(second.text, first.text);
    assert_eq!(second.path, copy);
}

fn err_of(path: &Path) -> PdfError {
    match extract_file(path, &ExtractOptions::default()) {
        Ok(d) => panic!("{} unexpectedly succeeded: {:?}", path.display(), d.text),
        Err(e) => {
            assert!(
                e.to_string().contains(&path.display().to_string()),
                "error does not name the file: {e}"
            );
            e
        }
    }
}

#[test]
fn empty_and_not_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pdf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(err_of(&empty), PdfError::Empty { .. }));
    let text = dir.path().join("notes.pdf");
    std::fs::write(&text, b"just some text, not a PDF at all\n").unwrap();
    assert!(matches!(err_of(&text), PdfError::NotPdf { .. }));
    let missing = dir.path().join("missing.pdf");
    assert!(matches!(err_of(&missing), PdfError::Io { .. }));
}

#[test]
fn truncated_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let good = save(&mut text_pdf(&[BODY, BODY]), dir.path(), "good.pdf");
    let bytes = std::fs::read(&good).unwrap();
    for cut in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 40] {
        let p = dir.path().join(format!("cut{cut}.pdf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        // lopdf may recover some truncated files; then the result must carry real text.
        match extract_file(&p, &ExtractOptions::default()) {
            Ok(d) => assert!(!d.text.trim().is_empty()),
            Err(e) => assert!(
                matches!(
                    e,
                    PdfError::Truncated { .. }
                        | PdfError::Parse { .. }
                        | PdfError::NoPages { .. }
                        | PdfError::NoTextLayer { .. }
                ),
                "{e}"
            ),
        }
    }
}

fn encrypted(user_password: &str) -> Document {
    let mut doc = text_pdf(&[BODY]);
    let id = Object::String(
        b"0123456789abcdef".to_vec(),
        lopdf::StringFormat::Hexadecimal,
    );
    doc.trailer.set("ID", vec![id.clone(), id]);
    let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password,
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    })
    .unwrap();
    doc.encrypt(&state).unwrap();
    doc
}

#[test]
fn encrypted_with_user_password() {
    let dir = tempfile::tempdir().unwrap();
    let p = save(&mut encrypted("secret"), dir.path(), "locked.pdf");
    assert!(matches!(err_of(&p), PdfError::Encrypted { .. }));
}

#[test]
fn encrypted_with_empty_user_password_opens() {
    // Owner-password-only files (copy/print restrictions) are readable and must not be refused.
    let dir = tempfile::tempdir().unwrap();
    let p = save(&mut encrypted(""), dir.path(), "restricted.pdf");
    let d = extract_file(&p, &ExtractOptions::default()).unwrap();
    assert!(d.text.contains("We rotated the cursor"), "{}", d.text);
}

#[test]
fn zero_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.add_object(
        dictionary! { "Type" => "Pages", "Kids" => Vec::<Object>::new(), "Count" => 0 },
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let p = save(&mut doc, dir.path(), "zero.pdf");
    assert!(matches!(
        err_of(&p),
        PdfError::NoPages { .. } | PdfError::Parse { .. }
    ));
}

#[test]
fn image_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let img = Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => 2, "Height" => 2, "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8 },
        vec![0, 255, 255, 0],
    );
    let img_id = doc.add_object(img);
    let content_id = doc.add_object(Stream::new(
        dictionary! {},
        b"q 200 0 0 200 100 400 cm /Im1 Do Q".to_vec(),
    ));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "Resources" => dictionary! { "XObject" => dictionary! { "Im1" => img_id } },
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
    let p = save(&mut doc, dir.path(), "scan.pdf");
    let e = err_of(&p);
    assert!(matches!(e, PdfError::NoTextLayer { pages: 1, .. }), "{e}");
}

#[test]
fn cli_reports_each_bad_input_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = save(&mut text_pdf(&[BODY]), dir.path(), "good.pdf");
    let bad = dir.path().join("bad.pdf");
    std::fs::write(&bad, b"%PDF-1.4\n1 0 obj << /Type /Catalog").unwrap();
    let empty = dir.path().join("empty.pdf");
    std::fs::write(&empty, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paramx"))
        .arg("text")
        .arg(&good)
        .arg(&bad)
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("paramx: error:"))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        errors.iter().any(|l| l.contains("bad.pdf"))
            && errors.iter().any(|l| l.contains("empty.pdf"))
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("We rotated the cursor"));

    // JSON to files in --out.
    let outdir = dir.path().join("out");
    let st = Command::new(env!("CARGO_BIN_EXE_paramx"))
        .arg("text")
        .arg("--json")
        .arg("--out")
        .arg(&outdir)
        .arg(&good)
        .status()
        .unwrap();
    assert!(st.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outdir.join("good.json")).unwrap()).unwrap();
    assert!(v["text"].as_str().unwrap().contains("Methods"));
    assert_eq!(v["pages"][0]["number"], 1);
}

#[test]
fn slow_page_becomes_a_page_error_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // Page 1 runs tens of thousands of operators; page 2 only a few (the deadline is checked
    // every 1024 operators), so with a zero time limit page 1 is abandoned and page 2 kept.
    let long: Vec<String> = (0..20_000).map(|i| format!("word{i}")).collect();
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let mut doc = text_pdf(&[
        &long_refs,
        &["A short second page that still has some words on it."],
    ]);
    let p = save(&mut doc, dir.path(), "slow.pdf");
    let opts = ExtractOptions {
        page_timeout: std::time::Duration::ZERO,
        ..ExtractOptions::default()
    };
    let d = extract_file(&p, &opts).unwrap();
    assert_eq!(d.page_errors.len(), 1, "{:?}", d.page_errors);
    assert_eq!(d.page_errors[0].page, 1);
    assert_eq!(d.page_text(1), Some(""));
    assert!(d
        .page_text(2)
        .is_some_and(|t| t.contains("short second page")));
}
