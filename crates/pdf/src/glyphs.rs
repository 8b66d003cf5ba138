//! Glyph names -> Unicode.
//!
//! Order of trust: the math-font names publishers' typesetting fonts use (`H11002` is a minus in
//! the "MathematicalPi"-style fonts several journals embed; pdf-extract turns these into control
//! characters and flips the sign of `-45°`), then `uniXXXX`/`uXXXXX` names, then the Adobe Glyph
//! List as shipped inside lopdf, then suffixed (`one.oldstyle`) and ligature (`f_f_i`) names.

use std::cell::RefCell;
use std::collections::HashMap;

/// Names used by math-pi typesetting fonts (embedded without ToUnicode, custom Differences).
/// Every entry marked `*` was checked against its context in the corpus papers (`1280 × 1024
/// pixel`, `cos(θ rotation)`, `BIC > 10`, `ln(n)`, bracketed matrices); the Greek letters
/// follow the same font's alphabetical numbering (H9251 = α ... H9275 = ω).
const MATH_FONT_NAMES: &[(&str, &str)] = &[
    ("H11001", "+"),        // *
    ("H11002", "\u{2212}"), // * minus
    ("H11003", "\u{00D7}"), // * times
    ("H11005", "="),        // *
    ("H11006", "\u{00B1}"), // * plus-minus
    ("H11011", "\u{223C}"), // * tilde operator ("at ∼100 trials")
    ("H11021", "<"),        // *
    ("H11022", ">"),        // *
    ("H11349", "\u{2264}"),
    ("H11350", "\u{2265}"), // *
    ("H20849", "("),        // *
    ("H20850", ")"),        // *
    ("H20851", "["),        // *
    ("H20852", "]"),        // *
    ("H20875", "["),        // * large matrix bracket
    ("H20876", "]"),        // *
    ("H20877", "{"),        // * cases brace
    ("H9004", "\u{0394}"),  // * Delta
    ("H9251", "\u{03B1}"),  // *
    ("H9252", "\u{03B2}"),
    ("H9253", "\u{03B3}"),
    ("H9254", "\u{03B4}"), // *
    ("H9255", "\u{03B5}"),
    ("H9256", "\u{03B6}"),
    ("H9257", "\u{03B7}"), // *
    ("H9258", "\u{03B8}"), // *
    ("H9259", "\u{03B9}"),
    ("H9260", "\u{03BA}"),
    ("H9261", "\u{03BB}"),
    ("H9262", "\u{03BC}"), // *
    ("H9263", "\u{03BD}"),
    ("H9264", "\u{03BE}"),
    ("H9266", "\u{03C0}"),
    ("H9267", "\u{03C1}"),
    ("H9268", "\u{03C3}"), // *
    ("H9270", "\u{03C4}"), // *
    ("H9272", "\u{03C6}"),
    ("H9273", "\u{03C7}"),
    ("H9274", "\u{03C8}"),
    ("H9275", "\u{03C9}"),
];

/// Names the AGL lacks or maps to presentation forms we would only have to expand again.
const EXTRA_NAMES: &[(&str, &str)] = &[
    ("ff", "ff"),
    ("fi", "fi"),
    ("fl", "fl"),
    ("ffi", "ffi"),
    ("ffl", "ffl"),
    ("f_f", "ff"),
    ("f_i", "fi"),
    ("f_l", "fl"),
    ("f_f_i", "ffi"),
    ("f_f_l", "ffl"),
    ("minus", "\u{2212}"),
    ("hyphenminus", "-"),
    ("degree", "\u{00B0}"),
    ("plusminus", "\u{00B1}"),
    ("mu", "\u{03BC}"),
    ("micro", "\u{00B5}"),
    ("endash", "\u{2013}"),
    ("emdash", "\u{2014}"),
    ("quoteright", "\u{2019}"),
    ("quoteleft", "\u{2018}"),
    ("quotedblleft", "\u{201C}"),
    ("quotedblright", "\u{201D}"),
    ("bullet", "\u{2022}"),
    ("space", " "),
    ("nbspace", " "),
    ("nonbreakingspace", " "),
];

thread_local! {
    static AGL_CACHE: RefCell<HashMap<Vec<u8>, Option<String>>> = RefCell::new(HashMap::new());
}

/// Looks a name up in the Adobe Glyph List that lopdf carries (its table is private, but an
/// `/Encoding << /Differences [0 /name] >>` font resolves it for us; results are cached).
fn agl_lookup(name: &[u8]) -> Option<String> {
    AGL_CACHE.with(|c| {
        if let Some(v) = c.borrow().get(name) {
            return v.clone();
        }
        let v = agl_lookup_uncached(name);
        c.borrow_mut().insert(name.to_vec(), v.clone());
        v
    })
}

fn agl_lookup_uncached(name: &[u8]) -> Option<String> {
    use lopdf::{Dictionary, Object};
    let doc = lopdf::Document::new();
    let mut enc = Dictionary::new();
    enc.set(
        "Differences",
        Object::Array(vec![Object::Integer(0), Object::Name(name.to_vec())]),
    );
    let mut font = Dictionary::new();
    font.set("Type", Object::Name(b"Font".to_vec()));
    font.set("Encoding", Object::Dictionary(enc));
    let encoding = font.get_font_encoding(&doc).ok()?;
    let s = encoding.bytes_to_string(&[0]).ok()?;
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

fn hex_char(h: &str) -> Option<char> {
    u32::from_str_radix(h, 16).ok().and_then(char::from_u32)
}

/// Unicode text for a glyph name, or `None` when the name carries no usable meaning
/// (`g123`, `cid45`, `.notdef`).
pub fn glyph_to_unicode(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    if s.is_empty() || s == ".notdef" {
        return None;
    }
    if let Some((_, v)) = MATH_FONT_NAMES
        .iter()
        .chain(EXTRA_NAMES)
        .find(|(n, _)| *n == s)
    {
        return Some((*v).to_string());
    }
    if let Some(hex) = s.strip_prefix("uni") {
        if hex.len() >= 4 && hex.len() % 4 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let units: Vec<u16> = (0..hex.len() / 4)
                .filter_map(|i| u16::from_str_radix(&hex[i * 4..i * 4 + 4], 16).ok())
                .collect();
            let out: String = char::decode_utf16(units).filter_map(Result::ok).collect();
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
    if let Some(hex) = s.strip_prefix('u') {
        if (4..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(c) = hex_char(hex) {
                return Some(c.to_string());
            }
        }
    }
    if let Some(v) = agl_lookup(name) {
        return Some(v);
    }
    // `one.oldstyle`, `a.sc`: the part before the dot names the glyph.
    if let Some((base, _)) = s.split_once('.') {
        if !base.is_empty() {
            return glyph_to_unicode(base.as_bytes());
        }
    }
    // `f_f_i`-style ligatures: concatenate the components.
    if s.contains('_') {
        let mut out = String::new();
        for part in s.split('_') {
            out.push_str(&glyph_to_unicode(part.as_bytes())?);
        }
        return Some(out);
    }
    None
}

/// The Adobe Symbol font's built-in encoding for the codes that matter in papers (Greek, math
/// operators, degree and prime signs). Codes not listed fall back to ASCII.
pub fn symbol_encoding(code: u8) -> Option<char> {
    let c = match code {
        0x20 => ' ',
        0x22 => '\u{2200}',
        0x24 => '\u{2203}',
        0x27 => '\u{220B}',
        0x2A => '\u{2217}',
        0x2D => '\u{2212}',
        0x40 => '\u{2245}',
        0x41 => 'Α',
        0x42 => 'Β',
        0x43 => 'Χ',
        0x44 => 'Δ',
        0x45 => 'Ε',
        0x46 => 'Φ',
        0x47 => 'Γ',
        0x48 => 'Η',
        0x49 => 'Ι',
        0x4A => 'ϑ',
        0x4B => 'Κ',
        0x4C => 'Λ',
        0x4D => 'Μ',
        0x4E => 'Ν',
        0x4F => 'Ο',
        0x50 => 'Π',
        0x51 => 'Θ',
        0x52 => 'Ρ',
        0x53 => 'Σ',
        0x54 => 'Τ',
        0x55 => 'Υ',
        0x56 => 'ς',
        0x57 => 'Ω',
        0x58 => 'Ξ',
        0x59 => 'Ψ',
        0x5A => 'Ζ',
        0x5C => '\u{2234}',
        0x5E => '\u{22A5}',
        0x60 => '\u{F8E5}',
        0x61 => 'α',
        0x62 => 'β',
        0x63 => 'χ',
        0x64 => 'δ',
        0x65 => 'ε',
        0x66 => 'φ',
        0x67 => 'γ',
        0x68 => 'η',
        0x69 => 'ι',
        0x6A => 'ϕ',
        0x6B => 'κ',
        0x6C => 'λ',
        0x6D => 'μ',
        0x6E => 'ν',
        0x6F => 'ο',
        0x70 => 'π',
        0x71 => 'θ',
        0x72 => 'ρ',
        0x73 => 'σ',
        0x74 => 'τ',
        0x75 => 'υ',
        0x76 => 'ϖ',
        0x77 => 'ω',
        0x78 => 'ξ',
        0x79 => 'ψ',
        0x7A => 'ζ',
        0x7E => '\u{223C}',
        0xA1 => 'ϒ',
        0xA2 => '\u{2032}',
        0xA3 => '\u{2264}',
        0xA4 => '\u{2044}',
        0xA5 => '\u{221E}',
        0xA7 => '\u{2663}',
        0xAB => '\u{2194}',
        0xAC => '\u{2190}',
        0xAD => '\u{2191}',
        0xAE => '\u{2192}',
        0xAF => '\u{2193}',
        0xB0 => '\u{00B0}',
        0xB1 => '\u{00B1}',
        0xB2 => '\u{2033}',
        0xB3 => '\u{2265}',
        0xB4 => '\u{00D7}',
        0xB5 => '\u{221D}',
        0xB6 => '\u{2202}',
        0xB7 => '\u{2022}',
        0xB8 => '\u{00F7}',
        0xB9 => '\u{2260}',
        0xBA => '\u{2261}',
        0xBB => '\u{2248}',
        0xBC => '\u{2026}',
        0xC5 => '\u{2295}',
        0xC6 => '\u{2205}',
        0xC7 => '\u{2229}',
        0xC8 => '\u{222A}',
        0xD1 => '\u{2207}',
        0xD6 => '\u{221A}',
        0xD7 => '\u{22C5}',
        0xD8 => '\u{00AC}',
        0xD9 => '\u{2227}',
        0xDA => '\u{2228}',
        0xE1 => '\u{2329}',
        0xE5 => '\u{2211}',
        0xF1 => '\u{232A}',
        0xF2 => '\u{222B}',
        0x21..=0x7E => code as char,
        _ => return None,
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn math_font_signs() {
        assert_eq!(glyph_to_unicode(b"H11002").as_deref(), Some("\u{2212}"));
        assert_eq!(glyph_to_unicode(b"H11001").as_deref(), Some("+"));
        assert_eq!(glyph_to_unicode(b"H11006").as_deref(), Some("\u{00B1}"));
    }

    #[test]
    fn agl_uni_and_suffixed_names() {
        assert_eq!(glyph_to_unicode(b"A").as_deref(), Some("A"));
        assert_eq!(glyph_to_unicode(b"degree").as_deref(), Some("\u{00B0}"));
        assert_eq!(glyph_to_unicode(b"eacute").as_deref(), Some("\u{00E9}"));
        assert_eq!(glyph_to_unicode(b"uni2212").as_deref(), Some("\u{2212}"));
        assert_eq!(glyph_to_unicode(b"u1D6FC").as_deref(), Some("\u{1D6FC}"));
        assert_eq!(glyph_to_unicode(b"one.oldstyle").as_deref(), Some("1"));
        assert_eq!(glyph_to_unicode(b"f_f_i").as_deref(), Some("ffi"));
        assert_eq!(glyph_to_unicode(b"g123"), None);
        assert_eq!(glyph_to_unicode(b".notdef"), None);
    }

    #[test]
    fn symbol_font_minus_and_degree() {
        assert_eq!(symbol_encoding(0x2D), Some('\u{2212}'));
        assert_eq!(symbol_encoding(0xB0), Some('\u{00B0}'));
        assert_eq!(symbol_encoding(0x6D), Some('μ'));
    }
}
