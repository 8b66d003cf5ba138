//! Hostile inputs cannot take a batch down: every PDF is read in a worker process under memory
//! and time limits (`pdf::isolate`). Generated here (nothing is committed): nesting bombs,
//! unclosed brackets, decompression bombs, forms drawn many times, huge counts, cyclic page
//! trees, and workers that crash, hang or run out of memory. For each case: a bounded time, a
//! bounded memory reported by the worker, one error line naming the file, and the good file in
//! the same folder still written.

use paramx::pdf::isolate::{extract_in_worker, Limits};
use paramx::pdf::{ExtractOptions, PdfError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A one-page PDF whose objects are given as raw bodies (object 1 the catalog, 2 the page
/// tree, 3 the page, 4 its content stream; `extra` objects follow), with a correct xref.
fn raw_pdf(page_tree: &[u8], page: &[u8], content: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        page_tree.to_vec(),
        page.to_vec(),
    ];
    let (data, filter) = deflate(content);
    let mut stream = format!("<< /Length {} {filter}>>\nstream\n", data.len()).into_bytes();
    stream.extend_from_slice(&data);
    stream.extend_from_slice(b"\nendstream");
    objs.push(stream);
    objs.extend(extra.iter().cloned());
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Flate-compressed by lopdf's own encoder when that makes it smaller, with the `/Filter` entry
/// to declare.
fn deflate(data: &[u8]) -> (Vec<u8>, &'static str) {
    let mut z = lopdf::Stream::new(lopdf::Dictionary::new(), data.to_vec());
    z.compress().expect("compress");
    let filter = if z.dict.has(b"Filter") {
        "/Filter /FlateDecode "
    } else {
        ""
    };
    (z.content, filter)
}

const PAGES: &[u8] = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>";
const PAGE: &[u8] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << /X1 6 0 R >> >> >>";
const FONT: &[u8] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

fn form(content: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> /XObject << /X1 6 0 R >> >> /Length {} >>\nstream\n",
        content.len()
    )
    .into_bytes();
    v.extend_from_slice(content);
    v.extend_from_slice(b"\nendstream");
    v
}

/// A stream object with `dict` entries, its data flate-compressed (a bomb when `data` is large
/// and uniform).
fn deflated_stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let (z, filter) = deflate(data);
    let mut v = format!("<< {dict} /Length {} {filter}>>\nstream\n", z.len()).into_bytes();
    v.extend_from_slice(&z);
    v.extend_from_slice(b"\nendstream");
    v
}

/// A font whose ToUnicode CMap is object 7 (after the font, 5, and the form, 6).
const FONT_WITH_CMAP: &[u8] =
    b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 7 0 R >>";

/// A CMap mapping 2,000 ranges of 65,536 four-byte codes each.
fn huge_cmap() -> Vec<u8> {
    let mut c = b"1 begincodespacerange <00000000> <FFFFFFFF> endcodespacerange\n".to_vec();
    c.extend_from_slice(b"2000 beginbfrange\n");
    for r in 0u32..2000 {
        c.extend_from_slice(
            format!("<{:08X}> <{:08X}> <0041>\n", r << 16, r << 16 | 0xFFFF).as_bytes(),
        );
    }
    c.extend_from_slice(b"endbfrange\n");
    c
}

/// Every hostile case: (name, bytes).
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let text = b"BT /F1 12 Tf 72 700 Td (Twenty-four adults took part.) Tj ET";
    let plain_form = form(text);
    let mut v = vec![
        (
            "nested-arrays",
            raw_pdf(
                PAGES,
                PAGE,
                &b"[".repeat(2_000_000),
                &[FONT.to_vec(), plain_form.clone()],
            ),
        ),
        (
            "nested-dicts",
            raw_pdf(
                PAGES,
                PAGE,
                &b"<< /A ".repeat(500_000),
                &[FONT.to_vec(), plain_form.clone()],
            ),
        ),
        (
            "unclosed-brackets",
            raw_pdf(
                PAGES,
                PAGE,
                &[b"BT /F1 12 Tf ".as_slice(), &b"[ (a) ".repeat(400_000)].concat(),
                &[FONT.to_vec(), plain_form.clone()],
            ),
        ),
        (
            "decompression-bomb",
            raw_pdf(
                PAGES,
                PAGE,
                &[text.as_slice(), &vec![b' '; 300 << 20]].concat(),
                &[FONT.to_vec(), plain_form.clone()],
            ),
        ),
        (
            "form-drawn-many-times",
            raw_pdf(
                PAGES,
                PAGE,
                &b"/X1 Do ".repeat(200_000),
                &[FONT.to_vec(), form(&b"/X1 Do ".repeat(50))],
            ),
        ),
        (
            "huge-page-count",
            raw_pdf(
                b"<< /Type /Pages /Kids [3 0 R] /Count 2000000000 >>",
                PAGE,
                text,
                &[FONT.to_vec(), plain_form.clone()],
            ),
        ),
        (
            "cyclic-page-tree",
            raw_pdf(
                b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
                PAGE,
                text,
                &[FONT.to_vec(), plain_form.clone()],
            ),
        ),
        (
            "huge-operand-count",
            raw_pdf(
                PAGES,
                PAGE,
                &[
                    b"BT /F1 12 Tf ".as_slice(),
                    &b"1 ".repeat(3_000_000),
                    b"Td (x) Tj ET",
                ]
                .concat(),
                &[FONT.to_vec(), plain_form],
            ),
        ),
    ];
    // Decompression bombs in the other stream positions: a form drawn by the page, and the
    // font's ToUnicode CMap; then a CMap whose ranges would map billions of codes.
    let bomb = [text.as_slice(), &vec![b' '; 300 << 20]].concat();
    let form_dict =
        "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >>";
    v.push((
        "form-stream-bomb",
        raw_pdf(
            PAGES,
            PAGE,
            b"/X1 Do",
            &[FONT.to_vec(), deflated_stream(form_dict, &bomb)],
        ),
    ));
    v.push((
        "tounicode-bomb",
        raw_pdf(
            PAGES,
            PAGE,
            text,
            &[
                FONT_WITH_CMAP.to_vec(),
                form(text),
                deflated_stream("", &vec![b' '; 300 << 20]),
            ],
        ),
    ));
    v.push((
        "cmap-huge-ranges",
        raw_pdf(
            PAGES,
            PAGE,
            text,
            &[
                FONT_WITH_CMAP.to_vec(),
                form(text),
                deflated_stream("", &huge_cmap()),
            ],
        ),
    ));
    v.push(("not-a-pdf", b"hello".to_vec()));
    v
}

fn good_pdf() -> Vec<u8> {
    raw_pdf(
        PAGES,
        PAGE,
        b"BT /F1 12 Tf 72 700 Td (Twenty-four right-handed adults took part in the study.) Tj ET",
        &[FONT.to_vec(), form(b"")],
    )
}

fn paramx() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_paramx"))
}

/// Each hostile file, read through the real worker: an error naming the file (or, for the
/// harmless ones, a document), in bounded time and memory.
#[test]
fn every_hostile_case_is_contained_in_its_worker() {
    let d = tempfile::tempdir().expect("tmp");
    let limits = Limits {
        memory_bytes: 2 << 30,
        wall: Duration::from_secs(60),
    };
    let opts = ExtractOptions {
        page_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    eprintln!("{:<24} {:>8} {:>12}  outcome", "case", "secs", "peak MiB");
    for (name, bytes) in cases() {
        let path = d.path().join(format!("{name}.pdf"));
        std::fs::write(&path, &bytes).expect("write");
        let t = Instant::now();
        let (result, stats) = extract_in_worker(paramx(), &path, &opts, limits);
        let secs = t.elapsed().as_secs_f64();
        let peak = stats.map_or(0, |s| s.peak_rss_kib) as f64 / 1024.0;
        let outcome = match &result {
            Ok(doc) => format!("read ({} chars)", doc.text.len()),
            Err(e) => e.to_string(),
        };
        eprintln!("{name:<24} {secs:>8.2} {peak:>12.0}  {outcome}");
        assert!(secs < 70.0, "{name}: {secs} s");
        assert!(peak < 2048.0, "{name}: {peak} MiB");
        if let Err(e) = &result {
            assert!(
                e.to_string().contains(name),
                "{name}: the error names the file: {e}"
            );
        }
        if name == "cmap-huge-ranges" {
            // Thousands of full ranges are cut at the CMap's cap; the page is still read.
            assert!(result.is_ok(), "{name}: {:?}", result.as_ref().err());
        }
        if name.ends_with("bomb") {
            // A stream over the cap is the reason given, never a missing text layer; a bomb
            // in the font's CMap leaves the text readable through the font's encoding.
            let said = result.as_ref().err().map(ToString::to_string);
            match name {
                "tounicode-bomb" => assert!(result.is_ok(), "{name}: {said:?}"),
                _ => assert!(
                    said.as_deref().is_some_and(|e| e.contains("decompress")),
                    "{name}: {said:?}"
                ),
            }
        }
    }
}

/// A worker that crashes, hangs or exceeds its memory becomes that file's error.
#[cfg(unix)]
#[test]
fn crashing_hanging_and_greedy_workers_become_errors() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tmp");
    let pdf = d.path().join("paper.pdf");
    std::fs::write(&pdf, good_pdf()).expect("write");
    let script = |name: &str, body: &str| -> PathBuf {
        let p = d.path().join(name);
        let mut f = std::fs::File::create(&p).expect("script");
        writeln!(f, "#!/bin/sh\n{body}").expect("write");
        drop(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    };
    let opts = ExtractOptions::default();
    let limits = Limits {
        memory_bytes: 256 << 20,
        wall: Duration::from_secs(2),
    };
    let crash = script("crash.sh", "kill -SEGV $$");
    let (r, _) = extract_in_worker(&crash, &pdf, &opts, limits);
    let e = r.expect_err("a crash is an error");
    assert!(matches!(e, PdfError::Worker { .. }), "{e}");
    assert!(
        e.to_string().contains("paper.pdf") && e.to_string().contains("signal 11"),
        "{e}"
    );

    let hang = script("hang.sh", "sleep 30");
    let t = Instant::now();
    let (r, _) = extract_in_worker(&hang, &pdf, &opts, limits);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "killed at the deadline"
    );
    assert!(r
        .expect_err("a hang is an error")
        .to_string()
        .contains("longer than 2 s"));

    // Over the address-space limit: the allocation fails inside the worker alone.
    let greedy = script("greedy.sh", "exec python3 -c 'bytearray(1 << 31)'");
    let (r, _) = extract_in_worker(&greedy, &pdf, &opts, limits);
    assert!(r.is_err(), "a worker over its memory limit is an error");

    // The real worker reads the good file.
    let (r, stats) = extract_in_worker(paramx(), &pdf, &opts, Limits::default());
    let doc = r.expect("good file");
    assert!(doc.text.contains("Twenty-four right-handed adults"));
    assert!(stats.expect("worker stats").peak_rss_kib > 0);
}

/// `paramx text DIR --out OUT` over every hostile case beside a good paper: exit 1, one error
/// line per bad file naming it, and the good paper's text written.
#[test]
fn text_over_a_hostile_folder_keeps_the_good_paper() {
    let d = tempfile::tempdir().expect("tmp");
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("good.pdf"), good_pdf()).expect("write");
    let names: Vec<&str> = cases().iter().map(|(n, _)| *n).collect();
    for (name, bytes) in cases() {
        std::fs::write(input.join(format!("{name}.pdf")), bytes).expect("write");
    }
    let out = d.path().join("out");
    let t = Instant::now();
    let o = Command::new(paramx())
        .args(["text", "--out"])
        .arg(&out)
        .arg(&input)
        .output()
        .expect("paramx text");
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("{stderr}");
    assert!(t.elapsed() < Duration::from_secs(300));
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let good = std::fs::read_to_string(out.join("good.txt")).expect("good paper written");
    assert!(good.contains("Twenty-four right-handed adults"));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    for name in names {
        let written = out.join(format!("{name}.txt")).exists();
        let reported = errors
            .iter()
            .filter(|l| l.contains(&format!("{name}.pdf")))
            .count();
        assert!(
            written || reported == 1,
            "{name}: written {written}, error lines {reported}\n{stderr}"
        );
    }
}

/// A file name that is not UTF-8 (Latin-1 `café.pdf`, common on old shares) is read like any
/// other: the worker's JSON reply cannot carry such a path, so the parent restores it.
#[cfg(unix)]
#[test]
fn a_non_utf8_file_name_is_read_and_written() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.pdf");
    std::fs::write(input.join(name), good_pdf()).expect("write");
    std::fs::write(input.join("plain.pdf"), good_pdf()).expect("write");
    let out = dir.path().join("out");
    let o = Command::new(paramx())
        .args(["text", "--out"])
        .arg(&out)
        .arg(&input)
        .output()
        .expect("run paramx text");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let written = std::fs::read_dir(&out).expect("out").count();
    assert_eq!(written, 2, "{stderr}");
}
