//! A forgiving tokenizer for PDF content streams and CMaps.
//!
//! Why our own and not `lopdf::content::Content::decode`: lopdf rejects a whole stream on the first
//! malformed token, while real publisher streams carry junk (truncated inline images, stray
//! bytes). This lexer never fails: unknown bytes are skipped, and every token borrows from the
//! input, so interpreting a page allocates only for strings that are actually shown.

/// One lexical token. Strings are decoded (escapes resolved, hex converted) into owned bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Token<'a> {
    Number(f32),
    Name(&'a [u8]),
    Str(Vec<u8>),
    ArrayStart,
    ArrayEnd,
    DictStart,
    DictEnd,
    /// A bare keyword: an operator (`Tj`, `BT`) or `true`/`false`/`null`.
    Keyword(&'a [u8]),
}

pub struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
}

#[inline]
pub fn is_white(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0c | 0)
}

#[inline]
pub fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl<'a> Lexer<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Lexer { data, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn skip_white_and_comments(&mut self) {
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            if is_white(b) {
                self.pos += 1;
            } else if b == b'%' {
                while self.pos < self.data.len() && !matches!(self.data[self.pos], b'\n' | b'\r') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    /// Skips the binary payload of an inline image: everything up to `EI` surrounded by
    /// whitespace. Called right after the `ID` keyword.
    pub fn skip_inline_image(&mut self) {
        let d = self.data;
        let mut i = self.pos + 1;
        while i + 1 < d.len() {
            if d[i] == b'E'
                && d[i + 1] == b'I'
                && is_white(d[i - 1])
                && (i + 2 >= d.len() || is_white(d[i + 2]))
            {
                self.pos = i + 2;
                return;
            }
            i += 1;
        }
        self.pos = d.len();
    }

    fn literal_string(&mut self) -> Vec<u8> {
        // self.pos is just after '('
        let d = self.data;
        let mut out = Vec::new();
        let mut depth = 1usize;
        while self.pos < d.len() {
            let b = d[self.pos];
            self.pos += 1;
            match b {
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return out;
                    }
                    out.push(b);
                }
                b'\\' => {
                    let Some(&e) = d.get(self.pos) else { break };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'\r' => {
                            if d.get(self.pos) == Some(&b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        b'0'..=b'7' => {
                            let mut v: u32 = (e - b'0') as u32;
                            for _ in 0..2 {
                                match d.get(self.pos) {
                                    Some(&c @ b'0'..=b'7') => {
                                        v = v * 8 + (c - b'0') as u32;
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push((v & 0xff) as u8);
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    fn hex_string(&mut self) -> Vec<u8> {
        // self.pos is just after '<'
        let d = self.data;
        let mut out = Vec::new();
        let mut hi: Option<u8> = None;
        while self.pos < d.len() {
            let b = d[self.pos];
            self.pos += 1;
            if b == b'>' {
                break;
            }
            if let Some(v) = hex_val(b) {
                match hi.take() {
                    Some(h) => out.push(h << 4 | v),
                    None => hi = Some(v),
                }
            }
        }
        if let Some(h) = hi {
            out.push(h << 4);
        }
        out
    }

    fn number(&mut self) -> Option<f32> {
        let d = self.data;
        let start = self.pos;
        let mut neg = false;
        let mut i = self.pos;
        while i < d.len() && matches!(d[i], b'+' | b'-') {
            neg ^= d[i] == b'-';
            i += 1;
        }
        let mut int: f64 = 0.0;
        let mut frac: f64 = 0.0;
        let mut scale = 1.0f64;
        let mut seen_dot = false;
        let mut digits = 0;
        while i < d.len() {
            match d[i] {
                c @ b'0'..=b'9' => {
                    digits += 1;
                    if seen_dot {
                        scale /= 10.0;
                        frac += (c - b'0') as f64 * scale;
                    } else {
                        int = int * 10.0 + (c - b'0') as f64;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            self.pos = start;
            return None;
        }
        self.pos = i;
        let v = int + frac;
        let v = if neg { -v } else { v };
        Some(v.clamp(-1e30, 1e30) as f32)
    }

    fn regular(&mut self) -> &'a [u8] {
        let d = self.data;
        let start = self.pos;
        while self.pos < d.len() && !is_white(d[self.pos]) && !is_delim(d[self.pos]) {
            self.pos += 1;
        }
        &d[start..self.pos]
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            self.skip_white_and_comments();
            let d = self.data;
            let b = *d.get(self.pos)?;
            match b {
                b'/' => {
                    self.pos += 1;
                    return Some(Token::Name(self.regular()));
                }
                b'(' => {
                    self.pos += 1;
                    return Some(Token::Str(self.literal_string()));
                }
                b'<' => {
                    if d.get(self.pos + 1) == Some(&b'<') {
                        self.pos += 2;
                        return Some(Token::DictStart);
                    }
                    self.pos += 1;
                    return Some(Token::Str(self.hex_string()));
                }
                b'>' => {
                    self.pos += 1;
                    if d.get(self.pos) == Some(&b'>') {
                        self.pos += 1;
                        return Some(Token::DictEnd);
                    }
                    continue;
                }
                b'[' => {
                    self.pos += 1;
                    return Some(Token::ArrayStart);
                }
                b']' => {
                    self.pos += 1;
                    return Some(Token::ArrayEnd);
                }
                b'{' | b'}' | b')' => {
                    self.pos += 1;
                    continue;
                }
                b'0'..=b'9' | b'+' | b'-' | b'.' => {
                    if let Some(n) = self.number() {
                        return Some(Token::Number(n));
                    }
                    // A lone sign or dot: skip it.
                    self.pos += 1;
                    continue;
                }
                _ => {
                    let word = self.regular();
                    if word.is_empty() {
                        self.pos += 1;
                        continue;
                    }
                    return Some(Token::Keyword(word));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[u8]) -> Vec<Token<'_>> {
        Lexer::new(s).collect()
    }

    #[test]
    fn numbers_names_ops() {
        let t = toks(b"BT /F1 9.5 Tf -.5 0 Td ET");
        assert_eq!(
            t,
            vec![
                Token::Keyword(b"BT"),
                Token::Name(b"F1"),
                Token::Number(9.5),
                Token::Keyword(b"Tf"),
                Token::Number(-0.5),
                Token::Number(0.0),
                Token::Keyword(b"Td"),
                Token::Keyword(b"ET"),
            ]
        );
    }

    #[test]
    fn strings_with_escapes_and_hex() {
        let t = toks(b"(a\\(b\\)c\\101\\\nd) <48 65 6>");
        assert_eq!(
            t,
            vec![
                Token::Str(b"a(b)cAd".to_vec()),
                Token::Str(vec![0x48, 0x65, 0x60])
            ]
        );
    }

    #[test]
    fn arrays_dicts_and_comments() {
        let t = toks(b"[(A) -120 (B)] TJ % comment\n<</MCID 3>> BDC");
        assert_eq!(t.len(), 11);
        assert_eq!(t[0], Token::ArrayStart);
        assert_eq!(t[2], Token::Number(-120.0));
        assert_eq!(t[6], Token::DictStart);
    }

    #[test]
    fn unterminated_input_never_panics() {
        for s in [
            &b"(abc"[..],
            b"<4",
            b"/",
            b"-",
            b"[[[",
            b"<<",
            b"\\",
            b"(\\",
        ] {
            let _ = toks(s);
        }
    }
}
