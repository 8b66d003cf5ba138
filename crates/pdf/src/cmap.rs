//! ToUnicode (and embedded encoding) CMaps: `codespacerange`, `bfchar`, `bfrange` (both the
//! incrementing and the array form). Parsed with our content lexer, since CMaps are PostScript
//! with the same token syntax; malformed entries are skipped, never fatal.

use super::lexer::{Lexer, Token};
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct ToUnicode {
    /// (code, code length in bytes) -> text.
    pub map: HashMap<(u32, u8), String>,
    /// (length in bytes, low, high).
    pub codespace: Vec<(u8, u32, u32)>,
}

fn code_of(b: &[u8]) -> Option<(u32, u8)> {
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    Some((
        b.iter().fold(0u32, |a, &x| a << 8 | x as u32),
        b.len() as u8,
    ))
}

fn utf16(b: &[u8]) -> String {
    let units = b.chunks(2).map(|c| {
        if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            c[0] as u16
        }
    });
    char::decode_utf16(units)
        .filter_map(Result::ok)
        .filter(|&c| c != '\0')
        .collect()
}

/// Maximum number of codes one `bfrange` may expand to; bounds memory on hostile input.
const MAX_RANGE: u32 = 0x1_0000;

/// Maximum number of codes one CMap maps in all. A font has at most 65,536 glyphs (CIDs are
/// two bytes), so twice that is room for any real CMap, while a hostile one with thousands of
/// full ranges would otherwise grow the map by millions of entries per range.
const MAX_CODES: usize = 0x2_0000;

impl ToUnicode {
    pub fn get(&self, code: u32, len: u8) -> Option<&str> {
        self.map.get(&(code, len)).map(String::as_str)
    }

    pub fn parse(data: &[u8]) -> ToUnicode {
        let mut out = ToUnicode::default();
        let mut operands: Vec<Token<'_>> = Vec::new();
        let mut in_array: Option<Vec<Vec<u8>>> = None;
        for tok in Lexer::new(data) {
            match tok {
                Token::ArrayStart => in_array = Some(Vec::new()),
                Token::ArrayEnd => {
                    if let Some(items) = in_array.take() {
                        // Represent the array as a marker followed by its strings.
                        operands.push(Token::Keyword(b"[]"));
                        operands.push(Token::Number(items.len() as f32));
                        operands.extend(items.into_iter().map(Token::Str));
                    }
                }
                Token::Str(s) if in_array.is_some() => {
                    if let Some(a) = in_array.as_mut() {
                        a.push(s);
                    }
                }
                Token::Keyword(k) if k.starts_with(b"end") || k.starts_with(b"begin") => {
                    match k {
                        b"endcodespacerange" => {
                            let strs: Vec<&[u8]> = operands
                                .iter()
                                .filter_map(|t| {
                                    if let Token::Str(s) = t {
                                        Some(&s[..])
                                    } else {
                                        None
                                    }
                                })
                                .collect();
                            for pair in strs.chunks(2) {
                                if let [lo, hi] = pair {
                                    if let (Some((l, n)), Some((h, _))) = (code_of(lo), code_of(hi))
                                    {
                                        out.codespace.push((n, l, h));
                                    }
                                }
                            }
                        }
                        b"endbfchar" => {
                            let strs: Vec<&[u8]> = operands
                                .iter()
                                .filter_map(|t| {
                                    if let Token::Str(s) = t {
                                        Some(&s[..])
                                    } else {
                                        None
                                    }
                                })
                                .collect();
                            for pair in strs.chunks(2) {
                                if let [src, dst] = pair {
                                    if let Some(code) = code_of(src) {
                                        if out.map.len() >= MAX_CODES {
                                            break;
                                        }
                                        out.map.insert(code, utf16(dst));
                                    }
                                }
                            }
                        }
                        b"endbfrange" => out.bfrange(&operands),
                        _ => {}
                    }
                    operands.clear();
                }
                t => {
                    if in_array.is_none() {
                        operands.push(t)
                    }
                }
            }
        }
        out
    }

    fn bfrange(&mut self, ops: &[Token<'_>]) {
        let mut i = 0;
        while i + 2 < ops.len() {
            let (Token::Str(lo), Token::Str(hi)) = (&ops[i], &ops[i + 1]) else {
                i += 1;
                continue;
            };
            let (Some((lo_c, n)), Some((hi_c, _))) = (code_of(lo), code_of(hi)) else {
                i += 3;
                continue;
            };
            let hi_c = hi_c.min(lo_c.saturating_add(MAX_RANGE));
            match &ops[i + 2] {
                Token::Str(dst) => {
                    // The last UTF-16 unit increments across the range.
                    let mut units: Vec<u16> = dst
                        .chunks(2)
                        .map(|c| {
                            if c.len() == 2 {
                                u16::from_be_bytes([c[0], c[1]])
                            } else {
                                c[0] as u16
                            }
                        })
                        .collect();
                    if units.is_empty() {
                        i += 3;
                        continue;
                    }
                    for code in lo_c..=hi_c {
                        if self.map.len() >= MAX_CODES {
                            break;
                        }
                        let s: String = char::decode_utf16(units.iter().copied())
                            .filter_map(Result::ok)
                            .collect();
                        self.map.insert((code, n), s);
                        if let Some(last) = units.last_mut() {
                            *last = last.wrapping_add(1);
                        }
                    }
                    i += 3;
                }
                Token::Keyword(b"[]") => {
                    let count = match ops.get(i + 3) {
                        Some(Token::Number(c)) => *c as usize,
                        _ => 0,
                    };
                    for k in 0..count {
                        if let Some(Token::Str(dst)) = ops.get(i + 4 + k) {
                            let Some(code) =
                                u32::try_from(k).ok().and_then(|k| lo_c.checked_add(k))
                            else {
                                break;
                            };
                            if code <= hi_c && self.map.len() < MAX_CODES {
                                self.map.insert((code, n), utf16(dst));
                            }
                        }
                    }
                    i += 4 + count;
                }
                _ => i += 3,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfchar_bfrange_codespace() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
            1 begincodespacerange <0000> <FFFF> endcodespacerange
            2 beginbfchar <0003> <0020> <0011> <2212> endbfchar
            2 beginbfrange <0024> <0026> <0041> <0030> <0031> [<00660069> <00B1>] endbfrange
            endcmap";
        let t = ToUnicode::parse(cmap);
        assert_eq!(t.codespace, vec![(2, 0, 0xFFFF)]);
        assert_eq!(t.get(0x11, 2), Some("\u{2212}"));
        assert_eq!(t.get(0x25, 2), Some("B"));
        assert_eq!(t.get(0x30, 2), Some("fi"));
        assert_eq!(t.get(0x31, 2), Some("\u{B1}"));
        assert_eq!(t.get(0x27, 2), None);
    }

    #[test]
    fn an_array_range_at_the_top_of_the_code_space_does_not_overflow() {
        let t = ToUnicode::parse(
            b"1 beginbfrange <FFFFFFFE> <FFFFFFFF> [<0041> <0042> <0043>] endbfrange",
        );
        assert_eq!(t.get(0xFFFF_FFFE, 4), Some("A"));
        assert_eq!(t.get(0xFFFF_FFFF, 4), Some("B"));
    }

    #[test]
    fn hostile_range_is_bounded() {
        let t = ToUnicode::parse(b"1 beginbfrange <00000000> <FFFFFFFF> <0041> endbfrange");
        assert!(t.map.len() <= MAX_RANGE as usize + 1);
    }

    #[test]
    fn a_cmap_of_thousands_of_full_ranges_stays_bounded() {
        let mut data = b"1 begincodespacerange <00000000> <FFFFFFFF> endcodespacerange\n".to_vec();
        data.extend_from_slice(b"2000 beginbfrange\n");
        for r in 0u32..2000 {
            let lo = r << 16;
            data.extend_from_slice(format!("<{lo:08X}> <{:08X}> <0041>\n", lo | 0xFFFF).as_bytes());
        }
        data.extend_from_slice(
            b"endbfrange\n1 beginbfrange <FFFFFFFF> <FFFFFFFF> [<0042>] endbfrange",
        );
        let t = ToUnicode::parse(&data);
        assert_eq!(t.map.len(), MAX_CODES);
        assert_eq!(t.get(0, 4), Some("A"));
    }
}
