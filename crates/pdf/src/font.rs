//! Fonts: from a PDF font dictionary to "these bytes are these characters with these widths".
//!
//! Handles simple fonts (Type1/TrueType/Type3 with Standard, WinAnsi, MacRoman, Symbol and
//! `/Differences` encodings), ToUnicode CMaps (which win over everything when they give a
//! printable mapping), Type0/CID fonts with `/W` widths in both of their forms, and Type3
//! `FontMatrix` scaling. Anything missing degrades to a best guess, never to an error: one odd
//! font must not cost the page.

use super::cmap::ToUnicode;
use super::glyphs::{glyph_to_unicode, symbol_encoding};
use lopdf::{Dictionary, Document, Object};
use std::collections::HashMap;
use std::sync::OnceLock;

/// A decoded font, ready for the interpreter.
#[derive(Debug, Clone)]
pub struct Font {
    /// Bytes per character code for composite fonts (1..=4); 1 for simple fonts.
    code_len: CodeLen,
    /// Simple fonts: text per code.
    simple: Vec<Option<Box<str>>>,
    /// Simple fonts: advance per code, in text-space units (already scaled by 1/1000 or FontMatrix).
    simple_widths: Vec<f32>,
    /// Composite fonts: text per code from the ToUnicode CMap.
    cid_text: HashMap<u32, Box<str>>,
    cid_widths: HashMap<u32, f32>,
    default_width: f32,
    /// Vertical scale of glyph space (Type3 FontMatrix); 1.0 otherwise.
    pub size_scale: f32,
}

#[derive(Debug, Clone)]
enum CodeLen {
    One,
    /// Composite font: code lengths from codespace ranges (each (len, lo, hi)), default 2.
    Ranges(Vec<(u8, u32, u32)>),
}

/// One shown character code.
pub struct Shown<'f> {
    pub text: &'f str,
    /// Advance width in text space (before font size), e.g. 0.5 for a half-em glyph.
    pub width: f32,
    /// A single-byte code 32: word spacing (Tw) applies to it.
    pub is_space_code: bool,
}

fn base_table(name: &[u8]) -> Vec<Option<char>> {
    // lopdf carries the standard tables privately; resolving a one-byte string through a font
    // whose /Encoding is the named table reads them out without copying them.
    let doc = Document::new();
    let mut font = Dictionary::new();
    font.set("Type", Object::Name(b"Font".to_vec()));
    font.set("Encoding", Object::Name(name.to_vec()));
    let mut out = vec![None; 256];
    if let Ok(enc) = font.get_font_encoding(&doc) {
        for (code, slot) in out.iter_mut().enumerate() {
            if let Ok(s) = enc.bytes_to_string(&[code as u8]) {
                let mut it = s.chars();
                if let (Some(c), None) = (it.next(), it.next()) {
                    *slot = Some(c);
                }
            }
        }
    }
    out
}

fn table(which: &str) -> &'static [Option<char>] {
    static STD: OnceLock<Vec<Option<char>>> = OnceLock::new();
    static WIN: OnceLock<Vec<Option<char>>> = OnceLock::new();
    static MAC: OnceLock<Vec<Option<char>>> = OnceLock::new();
    static SYM: OnceLock<Vec<Option<char>>> = OnceLock::new();
    match which {
        "WinAnsiEncoding" => WIN.get_or_init(|| {
            let mut t = base_table(b"WinAnsiEncoding");
            // WinAnsi maps 0xAD to a soft hyphen, which publishers use as a real hyphen.
            t[0xAD] = Some('-');
            t
        }),
        "MacRomanEncoding" => MAC.get_or_init(|| base_table(b"MacRomanEncoding")),
        "Symbol" => SYM.get_or_init(|| (0..=255u8).map(symbol_encoding).collect()),
        _ => STD.get_or_init(|| base_table(b"StandardEncoding")),
    }
}

fn num(doc: &Document, o: &Object) -> Option<f32> {
    match doc.dereference(o).ok()?.1 {
        Object::Integer(i) => Some(*i as f32),
        Object::Real(r) => Some(*r),
        _ => None,
    }
}

fn deref<'a>(doc: &'a Document, o: &'a Object) -> Option<&'a Object> {
    doc.dereference(o).ok().map(|(_, o)| o)
}

fn dict_get<'a>(doc: &'a Document, d: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    d.get(key).ok().and_then(|o| deref(doc, o))
}

fn array<'a>(doc: &'a Document, d: &'a Dictionary, key: &[u8]) -> Option<&'a Vec<Object>> {
    dict_get(doc, d, key).and_then(|o| o.as_array().ok())
}

fn stream_bytes(doc: &Document, d: &Dictionary, key: &[u8]) -> Option<Vec<u8>> {
    let s = dict_get(doc, d, key)?.as_stream().ok()?;
    s.get_plain_content_with_limit(super::MAX_STREAM_BYTES).ok()
}

/// True for text we never want in output: C0/C1 controls, private use, replacement char.
fn unusable(s: &str) -> bool {
    s.is_empty()
        || s.chars().all(|c| {
            (c.is_control() && c != '\t')
                || ('\u{E000}'..='\u{F8FF}').contains(&c)
                || c == '\u{FFFD}'
                || c == '\0'
        })
}

/// Word and other producers map Symbol-font glyphs to U+F020..U+F0FF (the font's own code plus
/// 0xF000) in ToUnicode. Recover the real character: the Symbol encoding for Symbol fonts,
/// otherwise the code itself when it is printable Latin-1.
fn fix_symbol_pua(text: &str, symbol_font: bool) -> String {
    text.chars()
        .map(|c| {
            let u = c as u32;
            if (0xF020..=0xF0FF).contains(&u) {
                let code = (u - 0xF000) as u8;
                if symbol_font {
                    symbol_encoding(code).unwrap_or(c)
                } else if code >= 0x20 && code != 0x7F && !(0x80..0xA0).contains(&code) {
                    code as char
                } else {
                    c
                }
            } else {
                c
            }
        })
        .collect()
}

fn base_font_is_symbol(doc: &Document, d: &Dictionary) -> bool {
    dict_get(doc, d, b"BaseFont")
        .and_then(|o| o.as_name().ok())
        .is_some_and(|n| n.windows(6).any(|w| w == b"Symbol"))
}

impl Font {
    /// A plain one-byte font (WinAnsi, half-em glyphs) for fonts we cannot resolve and for tests.
    pub fn fallback() -> Font {
        let t = table("WinAnsiEncoding");
        Font {
            code_len: CodeLen::One,
            simple: t
                .iter()
                .map(|c| c.map(|c| c.to_string().into_boxed_str()))
                .collect(),
            simple_widths: vec![0.5; 256],
            cid_text: HashMap::new(),
            cid_widths: HashMap::new(),
            default_width: 0.5,
            size_scale: 1.0,
        }
    }

    /// Builds a font from its dictionary. Never fails: missing parts fall back.
    pub fn from_dict(doc: &Document, d: &Dictionary) -> Font {
        let subtype = dict_get(doc, d, b"Subtype")
            .and_then(|o| o.as_name().ok())
            .unwrap_or(b"");
        let symbol = base_font_is_symbol(doc, d);
        let to_unicode = stream_bytes(doc, d, b"ToUnicode").map(|b| {
            let mut t = ToUnicode::parse(&b);
            for v in t.map.values_mut() {
                if v.chars().any(|c| ('\u{F020}'..='\u{F0FF}').contains(&c)) {
                    *v = fix_symbol_pua(v, symbol);
                }
            }
            t
        });
        if subtype == b"Type0" {
            Self::composite(doc, d, to_unicode)
        } else {
            Self::simple(doc, d, subtype, to_unicode)
        }
    }

    fn simple(doc: &Document, d: &Dictionary, subtype: &[u8], tu: Option<ToUnicode>) -> Font {
        let base_font = dict_get(doc, d, b"BaseFont")
            .and_then(|o| o.as_name().ok())
            .unwrap_or(b"");
        let descriptor = dict_get(doc, d, b"FontDescriptor").and_then(|o| o.as_dict().ok());
        let flags = descriptor
            .and_then(|fd| dict_get(doc, fd, b"Flags"))
            .and_then(|o| o.as_i64().ok())
            .unwrap_or(0);
        let is_symbol_font = base_font.windows(6).any(|w| w == b"Symbol");
        let symbolic = flags & 4 != 0;

        // Base encoding: explicit name, else the font's built-in one.
        let enc_obj = dict_get(doc, d, b"Encoding");
        let mut base_name: &str = if is_symbol_font {
            "Symbol"
        } else if subtype == b"TrueType" || !symbolic {
            if subtype == b"TrueType" {
                "WinAnsiEncoding"
            } else {
                "StandardEncoding"
            }
        } else {
            "StandardEncoding"
        };
        let mut differences: Option<&Vec<Object>> = None;
        match enc_obj {
            Some(Object::Name(n)) => base_name = name_to_table(n, base_name),
            Some(Object::Dictionary(ed)) => {
                if let Some(Object::Name(n)) = dict_get(doc, ed, b"BaseEncoding") {
                    base_name = name_to_table(n, base_name);
                }
                differences = array(doc, ed, b"Differences");
            }
            _ => {}
        }
        let base = table(base_name);
        let mut simple: Vec<Option<Box<str>>> = base
            .iter()
            .map(|c| c.map(|c| c.to_string().into_boxed_str()))
            .collect();
        if let Some(diffs) = differences {
            let mut code: i64 = 0;
            for o in diffs {
                match deref(doc, o) {
                    Some(Object::Integer(i)) => code = *i,
                    Some(Object::Real(r)) => code = *r as i64,
                    Some(Object::Name(n)) => {
                        if (0..256).contains(&code) {
                            let v = glyph_to_unicode(n);
                            // An unknown name replaces the base mapping: the glyph is something
                            // else, and printing the base letter would invent text.
                            simple[code as usize] = v.map(String::into_boxed_str);
                        }
                        code += 1;
                    }
                    _ => {}
                }
            }
        }
        if let Some(tu) = &tu {
            for (code, slot) in simple.iter_mut().enumerate() {
                if let Some(t) = tu.get(code as u32, 1) {
                    if !unusable(t) {
                        *slot = Some(t.into());
                    }
                }
            }
        }
        // Codes still unmapped in a symbolic font with no better information: printable ASCII
        // codes are most likely themselves (what embedded TrueType symbol fonts usually mean).
        for (code, slot) in simple.iter_mut().enumerate() {
            if slot.is_none() && differences.is_none() && (0x21..0x7F).contains(&code) {
                *slot = Some((code as u8 as char).to_string().into_boxed_str());
            }
            if let Some(s) = slot {
                if unusable(s) && &**s != " " {
                    *slot = None;
                }
            }
        }

        // Widths.
        let mut scale = 0.001f32;
        let mut size_scale = 1.0f32;
        if subtype == b"Type3" {
            if let Some(m) = array(doc, d, b"FontMatrix") {
                let v: Vec<f32> = m.iter().filter_map(|o| num(doc, o)).collect();
                if v.len() == 6 {
                    scale = v[0];
                    size_scale = (v[3] / 0.001).abs().max(1e-3);
                    if !scale.is_finite() || scale == 0.0 {
                        scale = 0.001;
                    }
                }
            }
        }
        let missing = descriptor
            .and_then(|fd| dict_get(doc, fd, b"MissingWidth"))
            .and_then(|o| num(doc, o));
        let mut widths = vec![missing.map(|w| w * scale).unwrap_or(0.5); 256];
        let first = dict_get(doc, d, b"FirstChar")
            .and_then(|o| num(doc, o))
            .unwrap_or(0.0) as i64;
        if let Some(ws) = array(doc, d, b"Widths") {
            if missing.is_none() {
                widths.iter_mut().for_each(|w| *w = 0.0);
            }
            for (i, o) in ws.iter().enumerate() {
                let code = first + i as i64;
                if (0..256).contains(&code) {
                    if let Some(w) = num(doc, o) {
                        widths[code as usize] = w * scale;
                    }
                }
            }
        }
        Font {
            code_len: CodeLen::One,
            simple,
            simple_widths: widths,
            cid_text: HashMap::new(),
            cid_widths: HashMap::new(),
            default_width: 0.5,
            size_scale,
        }
    }

    fn composite(doc: &Document, d: &Dictionary, tu: Option<ToUnicode>) -> Font {
        let mut ranges: Vec<(u8, u32, u32)> = Vec::new();
        // A CMap stream as /Encoding defines its own codespace; Identity-H is two bytes.
        if let Some(Object::Stream(s)) = dict_get(doc, d, b"Encoding") {
            if let Ok(b) = s.get_plain_content_with_limit(super::MAX_STREAM_BYTES) {
                ranges = ToUnicode::parse(&b).codespace;
            }
        }
        if ranges.is_empty() {
            ranges.push((2, 0, 0xFFFF));
        }
        let mut cid_text = HashMap::new();
        if let Some(tu) = tu {
            for ((code, _len), text) in tu.map {
                if !unusable(&text) {
                    cid_text.insert(code, text.into_boxed_str());
                }
            }
        }
        let descendant = array(doc, d, b"DescendantFonts")
            .and_then(|a| a.first())
            .and_then(|o| deref(doc, o))
            .and_then(|o| o.as_dict().ok());
        let mut default_width = 1.0;
        let mut cid_widths = HashMap::new();
        if let Some(df) = descendant {
            if let Some(dw) = dict_get(doc, df, b"DW").and_then(|o| num(doc, o)) {
                default_width = dw * 0.001;
            }
            if let Some(w) = array(doc, df, b"W") {
                parse_cid_widths(doc, w, &mut cid_widths);
            }
        }
        Font {
            code_len: CodeLen::Ranges(ranges),
            simple: Vec::new(),
            simple_widths: Vec::new(),
            cid_text,
            cid_widths,
            default_width,
            size_scale: 1.0,
        }
    }

    /// Splits a shown string into character codes and calls `f` for each one.
    pub fn for_each_code(&self, bytes: &[u8], mut f: impl FnMut(Shown<'_>)) {
        match &self.code_len {
            CodeLen::One => {
                for &b in bytes {
                    let text = self
                        .simple
                        .get(b as usize)
                        .and_then(|s| s.as_deref())
                        .unwrap_or("");
                    let width = self.simple_widths.get(b as usize).copied().unwrap_or(0.5);
                    f(Shown {
                        text,
                        width,
                        is_space_code: b == 32,
                    });
                }
            }
            CodeLen::Ranges(ranges) => {
                let mut i = 0;
                while i < bytes.len() {
                    let mut len = 0usize;
                    // Shortest codespace range that matches wins (PDF 32000 9.7.6.2).
                    for n in 1..=4usize {
                        if i + n > bytes.len() {
                            break;
                        }
                        let code = bytes[i..i + n].iter().fold(0u32, |a, &b| a << 8 | b as u32);
                        if ranges
                            .iter()
                            .any(|&(l, lo, hi)| l as usize == n && code >= lo && code <= hi)
                        {
                            len = n;
                            break;
                        }
                    }
                    if len == 0 {
                        len = ranges
                            .first()
                            .map(|r| r.0 as usize)
                            .unwrap_or(2)
                            .clamp(1, 4);
                        len = len.min(bytes.len() - i);
                    }
                    let code = bytes[i..i + len]
                        .iter()
                        .fold(0u32, |a, &b| a << 8 | b as u32);
                    i += len;
                    let text = self.cid_text.get(&code).map(|s| &**s).unwrap_or("");
                    let width = self
                        .cid_widths
                        .get(&code)
                        .copied()
                        .unwrap_or(self.default_width);
                    f(Shown {
                        text,
                        width,
                        is_space_code: len == 1 && code == 32,
                    });
                }
            }
        }
    }
}

fn name_to_table<'a>(n: &[u8], default: &'a str) -> &'a str {
    match n {
        b"WinAnsiEncoding" => "WinAnsiEncoding",
        b"MacRomanEncoding" => "MacRomanEncoding",
        b"StandardEncoding" => "StandardEncoding",
        _ => default,
    }
}

/// `/W` arrays come in two forms, freely mixed: `c [w1 w2 ...]` (consecutive codes from c) and
/// `c_first c_last w` (one width for a range).
fn parse_cid_widths(doc: &Document, w: &[Object], out: &mut HashMap<u32, f32>) {
    let mut i = 0;
    while i < w.len() {
        let Some(first) = deref(doc, &w[i]).and_then(|o| num(doc, o)) else {
            i += 1;
            continue;
        };
        match w.get(i + 1).and_then(|o| deref(doc, o)) {
            Some(Object::Array(ws)) => {
                for (k, o) in ws.iter().enumerate() {
                    if let Some(v) = num(doc, o) {
                        out.insert(first as u32 + k as u32, v * 0.001);
                    }
                }
                i += 2;
            }
            Some(o) => {
                let last = num(doc, o);
                let v = w.get(i + 2).and_then(|o| num(doc, o));
                if let (Some(last), Some(v)) = (last, v) {
                    let (a, b) = (first as u32, last as u32);
                    // Cap absurd ranges so a hostile file cannot make us allocate gigabytes.
                    for c in a..=b.min(a.saturating_add(0x1_0000)) {
                        out.insert(c, v * 0.001);
                    }
                }
                i += 3;
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::dictionary;

    fn texts(f: &Font, bytes: &[u8]) -> String {
        let mut s = String::new();
        f.for_each_code(bytes, |g| s.push_str(g.text));
        s
    }

    #[test]
    fn winansi_and_macroman_degree() {
        let doc = Document::new();
        let win = dictionary! { "Type" => "Font", "Subtype" => "TrueType", "Encoding" => "WinAnsiEncoding" };
        let mac = dictionary! { "Type" => "Font", "Subtype" => "Type1", "Encoding" => "MacRomanEncoding" };
        assert_eq!(
            texts(&Font::from_dict(&doc, &win), &[b'4', b'5', 0xB0]),
            "45\u{B0}"
        );
        assert_eq!(
            texts(&Font::from_dict(&doc, &mac), &[b'4', b'5', 0xA1]),
            "45\u{B0}"
        );
    }

    #[test]
    fn differences_with_math_names() {
        let doc = Document::new();
        let f = dictionary! {
            "Type" => "Font", "Subtype" => "Type1",
            "Encoding" => dictionary! { "Differences" => vec![2.into(), Object::Name(b"H11002".to_vec()), Object::Name(b"H11006".to_vec())] },
            "FirstChar" => 0, "Widths" => vec![500.into(); 8],
        };
        let font = Font::from_dict(&doc, &f);
        assert_eq!(texts(&font, &[2, 3]), "\u{2212}\u{B1}");
        let mut w = 0.0;
        font.for_each_code(&[2], |g| w = g.width);
        assert!((w - 0.5).abs() < 1e-6);
    }

    #[test]
    fn symbol_private_use_recovered() {
        assert_eq!(fix_symbol_pua("\u{F0B0}", true), "\u{B0}");
        assert_eq!(fix_symbol_pua("\u{F02D}", true), "\u{2212}");
        assert_eq!(fix_symbol_pua("\u{F041}", false), "A");
    }

    #[test]
    fn cid_widths_both_forms() {
        let doc = Document::new();
        let w: Vec<Object> = vec![
            1.into(),
            vec![Object::Integer(250), Object::Integer(300)].into(),
            10.into(),
            12.into(),
            700.into(),
        ];
        let mut out = HashMap::new();
        parse_cid_widths(&doc, &w, &mut out);
        assert!((out[&2] - 0.3).abs() < 1e-6);
        assert!((out[&11] - 0.7).abs() < 1e-6);
        assert_eq!(out.get(&13), None);
    }
}
