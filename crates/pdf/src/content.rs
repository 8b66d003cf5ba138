//! The content-stream interpreter: graphics and text state, matrices, `Tj`/`TJ`/`'`/`"`, and
//! Form XObjects. Output is positioned glyphs in page space; deciding what is a word, a line or
//! a column is `layout`'s job.
//!
//! The interpreter is generic over [`Env`] (where fonts and XObjects come from) so that it can be
//! fuzzed and unit-tested on raw bytes without a PDF file around it.

use super::font::Font;
use super::lexer::{Lexer, Token};
use std::rc::Rc;
use std::time::Instant;

pub type Matrix = [f32; 6];
pub const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `a × b` for PDF's row-vector convention (`[x y 1] × M`).
pub fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

/// A glyph as placed on the page (page space, y up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Glyph {
    /// Origin of the glyph on the baseline.
    pub x: f32,
    pub y: f32,
    /// Advance along the baseline in page space (≥ 0 for upright text).
    pub w: f32,
    /// Effective font size in page space.
    pub size: f32,
    /// Byte range of this glyph's text in [`PageGlyphs::text`].
    pub start: u32,
    pub end: u32,
}

/// Everything the interpreter saw on one page.
#[derive(Debug, Default)]
pub struct PageGlyphs {
    pub glyphs: Vec<Glyph>,
    pub text: String,
    /// Image XObjects and inline images painted.
    pub images: usize,
    /// Glyphs skipped because their baseline is neither horizontal nor vertical.
    pub rotated: usize,
    /// Text running up or down the page (axis labels, margin stamps), in its own upright frame;
    /// `layout` keeps the part inside the text body and drops margin stamps.
    pub vertical: Vec<Glyph>,
    /// Page-space x of each `vertical` glyph (to tell margins from figure labels).
    pub vertical_page_x: Vec<f32>,
}

impl PageGlyphs {
    pub fn glyph_text(&self, g: &Glyph) -> &str {
        self.text
            .get(g.start as usize..g.end as usize)
            .unwrap_or("")
    }
}

/// Where the interpreter finds named resources.
pub trait Env {
    /// A handle for one resource dictionary scope (page, or a Form XObject's own resources).
    type Scope: Clone;
    fn font(&mut self, scope: &Self::Scope, name: &[u8]) -> Option<Rc<Font>>;
    fn xobject(&mut self, scope: &Self::Scope, name: &[u8]) -> XObject<Self::Scope>;
}

pub enum XObject<S> {
    Form {
        content: Vec<u8>,
        matrix: Matrix,
        scope: S,
        key: u64,
    },
    Image,
    None,
}

/// Why interpretation stopped early.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Timeout,
}

#[derive(Clone)]
struct GState {
    ctm: Matrix,
    font: Option<Rc<Font>>,
    size: f32,
    char_spacing: f32,
    word_spacing: f32,
    hscale: f32,
    leading: f32,
    rise: f32,
}

impl Default for GState {
    fn default() -> Self {
        GState {
            ctm: IDENTITY,
            font: None,
            size: 0.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            hscale: 1.0,
            leading: 0.0,
            rise: 0.0,
        }
    }
}

/// Limits that keep one hostile page from taking the whole run down.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Option<Instant>,
    pub max_depth: usize,
    pub max_glyphs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: None,
            max_depth: 12,
            max_glyphs: 2_000_000,
        }
    }
}

pub struct Interpreter<'e, E: Env> {
    env: &'e mut E,
    out: PageGlyphs,
    limits: Limits,
    ops: usize,
    form_stack: Vec<u64>,
    fallback_font: Rc<Font>,
}

#[derive(Debug)]
enum Operand {
    Num(f32),
    Name(Vec<u8>),
    Str(Vec<u8>),
    Array(Vec<Operand>),
    Other,
}

impl<'e, E: Env> Interpreter<'e, E> {
    pub fn new(env: &'e mut E, limits: Limits) -> Self {
        Interpreter {
            env,
            out: PageGlyphs::default(),
            limits,
            ops: 0,
            form_stack: Vec::new(),
            fallback_font: Rc::new(Font::fallback()),
        }
    }

    /// Runs one content stream (a page's concatenated contents) with the given resources.
    pub fn run(&mut self, content: &[u8], scope: &E::Scope, ctm: Matrix) -> Result<(), Stop> {
        let gs = GState {
            ctm,
            ..GState::default()
        };
        self.run_stream(content, scope, gs, 0)
    }

    pub fn finish(self) -> PageGlyphs {
        self.out
    }

    fn run_stream(
        &mut self,
        content: &[u8],
        scope: &E::Scope,
        gs: GState,
        depth: usize,
    ) -> Result<(), Stop> {
        let mut gs = gs;
        let mut stack: Vec<GState> = Vec::new();
        let mut tm = IDENTITY;
        let mut tlm = IDENTITY;
        let mut operands: Vec<Operand> = Vec::new();
        let mut arrays: Vec<Vec<Operand>> = Vec::new();
        let mut dict_depth = 0usize;
        let mut lexer = Lexer::new(content);
        while let Some(tok) = lexer.next() {
            if dict_depth > 0 {
                match tok {
                    Token::DictStart => dict_depth += 1,
                    Token::DictEnd => dict_depth -= 1,
                    _ => {}
                }
                if dict_depth == 0 {
                    operands.push(Operand::Other);
                }
                continue;
            }
            let op = match tok {
                Token::Keyword(k) => k,
                Token::ArrayStart => {
                    arrays.push(Vec::new());
                    continue;
                }
                Token::ArrayEnd => {
                    if let Some(a) = arrays.pop() {
                        let v = Operand::Array(a);
                        match arrays.last_mut() {
                            Some(parent) => parent.push(v),
                            None => operands.push(v),
                        }
                    }
                    continue;
                }
                Token::DictStart => {
                    dict_depth = 1;
                    continue;
                }
                other => {
                    let v = match other {
                        Token::Number(n) => Operand::Num(n),
                        Token::Name(n) => Operand::Name(n.to_vec()),
                        Token::Str(s) => Operand::Str(s),
                        _ => Operand::Other,
                    };
                    match arrays.last_mut() {
                        Some(a) => a.push(v),
                        None => {
                            // Operand stacks in real files stay tiny; a runaway one is junk.
                            if operands.len() < 64 {
                                operands.push(v)
                            }
                        }
                    }
                    continue;
                }
            };
            arrays.clear();
            self.ops += 1;
            if self.ops & 1023 == 0 {
                if let Some(d) = self.limits.deadline {
                    if Instant::now() > d {
                        return Err(Stop::Timeout);
                    }
                }
            }
            let nums = |n: usize| -> Option<Vec<f32>> {
                if operands.len() < n {
                    return None;
                }
                operands[operands.len() - n..]
                    .iter()
                    .map(|o| {
                        if let Operand::Num(v) = o {
                            Some(*v)
                        } else {
                            None
                        }
                    })
                    .collect()
            };
            match op {
                // Nesting beyond 256 levels is junk; further saves are ignored.
                b"q" if stack.len() < 256 => stack.push(gs.clone()),
                b"q" => {}
                b"Q" => {
                    if let Some(s) = stack.pop() {
                        gs = s;
                    }
                }
                b"cm" => {
                    if let Some(v) = nums(6) {
                        gs.ctm = mul(&[v[0], v[1], v[2], v[3], v[4], v[5]], &gs.ctm);
                    }
                }
                b"BT" => {
                    tm = IDENTITY;
                    tlm = IDENTITY;
                }
                b"ET" => {}
                b"Tf" if operands.len() >= 2 => {
                    if let (Operand::Name(n), Operand::Num(s)) =
                        (&operands[operands.len() - 2], &operands[operands.len() - 1])
                    {
                        gs.font = self.env.font(scope, n);
                        gs.size = *s;
                    }
                }
                b"Tc" => {
                    if let Some(v) = nums(1) {
                        gs.char_spacing = v[0];
                    }
                }
                b"Tw" => {
                    if let Some(v) = nums(1) {
                        gs.word_spacing = v[0];
                    }
                }
                b"Tz" => {
                    if let Some(v) = nums(1) {
                        gs.hscale = v[0] / 100.0;
                    }
                }
                b"TL" => {
                    if let Some(v) = nums(1) {
                        gs.leading = v[0];
                    }
                }
                b"Ts" => {
                    if let Some(v) = nums(1) {
                        gs.rise = v[0];
                    }
                }
                b"Td" | b"TD" => {
                    if let Some(v) = nums(2) {
                        if op == b"TD" {
                            gs.leading = -v[1];
                        }
                        tlm = mul(&[1.0, 0.0, 0.0, 1.0, v[0], v[1]], &tlm);
                        tm = tlm;
                    }
                }
                b"Tm" => {
                    if let Some(v) = nums(6) {
                        tlm = [v[0], v[1], v[2], v[3], v[4], v[5]];
                        tm = tlm;
                    }
                }
                b"T*" => {
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.leading], &tlm);
                    tm = tlm;
                }
                b"Tj" | b"'" | b"\"" => {
                    if op != b"Tj" {
                        if op == b"\"" {
                            if let Some(v) = operands.len().checked_sub(3).and_then(|i| {
                                match (&operands[i], &operands[i + 1]) {
                                    (Operand::Num(a), Operand::Num(b)) => Some((*a, *b)),
                                    _ => None,
                                }
                            }) {
                                gs.word_spacing = v.0;
                                gs.char_spacing = v.1;
                            }
                        }
                        tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.leading], &tlm);
                        tm = tlm;
                    }
                    if let Some(Operand::Str(s)) = operands.last() {
                        self.show(s, &gs, &mut tm);
                    }
                }
                b"TJ" => {
                    if let Some(Operand::Array(items)) = operands.last() {
                        for it in items {
                            match it {
                                Operand::Str(s) => self.show(s, &gs, &mut tm),
                                Operand::Num(n) => {
                                    let tx = -n / 1000.0 * gs.size * gs.hscale;
                                    tm = mul(&[1.0, 0.0, 0.0, 1.0, tx, 0.0], &tm);
                                }
                                _ => {}
                            }
                        }
                    }
                }
                b"Do" => {
                    if let Some(Operand::Name(n)) = operands.last() {
                        match self.env.xobject(scope, n) {
                            XObject::Image => self.out.images += 1,
                            XObject::Form {
                                content,
                                matrix,
                                scope: sub,
                                key,
                            } => {
                                if depth < self.limits.max_depth && !self.form_stack.contains(&key)
                                {
                                    self.form_stack.push(key);
                                    let mut sub_gs = gs.clone();
                                    sub_gs.ctm = mul(&matrix, &gs.ctm);
                                    let r = self.run_stream(&content, &sub, sub_gs, depth + 1);
                                    self.form_stack.pop();
                                    r?;
                                }
                            }
                            XObject::None => {}
                        }
                    }
                }
                b"ID" => {
                    lexer.skip_inline_image();
                    self.out.images += 1;
                }
                _ => {}
            }
            operands.clear();
            if self.out.glyphs.len() >= self.limits.max_glyphs {
                break;
            }
        }
        Ok(())
    }

    fn show(&mut self, s: &[u8], gs: &GState, tm: &mut Matrix) {
        let font = gs
            .font
            .clone()
            .unwrap_or_else(|| self.fallback_font.clone());
        let size = gs.size;
        let hs = gs.hscale;
        let trm_base = mul(
            &[size * hs, 0.0, 0.0, size * font.size_scale, 0.0, gs.rise],
            &IDENTITY,
        );
        let out = &mut self.out;
        let max = self.limits.max_glyphs;
        font.for_each_code(s, |sh| {
            let trm = mul(&mul(&trm_base, tm), &gs.ctm);
            let adv = (sh.width * size
                + gs.char_spacing
                + if sh.is_space_code {
                    gs.word_spacing
                } else {
                    0.0
                })
                * hs;
            // Advance vector in page space: (adv, 0) through Tm × CTM.
            let m = mul(tm, &gs.ctm);
            let (dx, dy) = (adv * m[0], adv * m[1]);
            let gsize = (trm[2] * trm[2] + trm[3] * trm[3]).sqrt();
            // Baseline must run left to right; a skewed up-vector (synthetic oblique) is fine.
            let upright = trm[0] > 0.0
                && trm[3] > 0.0
                && trm[1].abs() <= 0.05 * trm[0]
                && trm[2].abs() <= 0.7 * trm[3];
            if !sh.text.is_empty() && out.glyphs.len() + out.vertical.len() < max {
                let finite =
                    gsize.is_finite() && gsize > 0.5 && trm[4].is_finite() && trm[5].is_finite();
                let vertical = trm[0].abs() <= 0.05 * trm[1].abs() && trm[1] != 0.0;
                if upright && finite {
                    let start = out.text.len() as u32;
                    out.text.push_str(sh.text);
                    out.glyphs.push(Glyph {
                        x: trm[4],
                        y: trm[5],
                        w: (sh.width * size * hs * m[0]).max(0.0),
                        size: gsize,
                        start,
                        end: out.text.len() as u32,
                    });
                } else if vertical && finite {
                    // Rotate into a frame where this text reads left to right.
                    let up = trm[1] > 0.0;
                    let (x, y) = if up {
                        (trm[5], -trm[4])
                    } else {
                        (-trm[5], trm[4])
                    };
                    let start = out.text.len() as u32;
                    out.text.push_str(sh.text);
                    out.vertical.push(Glyph {
                        x,
                        y,
                        w: (sh.width * size * hs * m[1].abs()).max(0.0),
                        size: gsize,
                        start,
                        end: out.text.len() as u32,
                    });
                    out.vertical_page_x.push(trm[4]);
                } else {
                    out.rotated += 1;
                }
            }
            let _ = dy;
            *tm = mul(&[1.0, 0.0, 0.0, 1.0, adv, 0.0], tm);
            let _ = dx;
        });
    }
}

/// An [`Env`] with one font for every name and no XObjects: what the fuzz target and unit tests
/// interpret raw content streams with.
pub struct PlainEnv {
    font: Rc<Font>,
}

impl Default for PlainEnv {
    fn default() -> Self {
        PlainEnv {
            font: Rc::new(Font::fallback()),
        }
    }
}

impl Env for PlainEnv {
    type Scope = ();
    fn font(&mut self, _: &(), _: &[u8]) -> Option<Rc<Font>> {
        Some(self.font.clone())
    }
    fn xobject(&mut self, _: &(), _: &[u8]) -> XObject<()> {
        XObject::None
    }
}

/// Interprets raw content bytes with [`PlainEnv`]; the fuzzing entry point.
pub fn interpret_plain(content: &[u8]) -> PageGlyphs {
    let mut env = PlainEnv::default();
    let mut it = Interpreter::new(
        &mut env,
        Limits {
            max_glyphs: 100_000,
            ..Limits::default()
        },
    );
    let _ = it.run(content, &(), IDENTITY);
    it.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tj_kerning_moves_glyphs() {
        let p = interpret_plain(b"BT /F1 10 Tf 1 0 0 1 100 700 Tm [(AB) -1000 (C)] TJ ET");
        let xs: Vec<f32> = p.glyphs.iter().map(|g| g.x).collect();
        // Fallback font: half-em glyphs; -1000 moves one em (10 units) right.
        assert_eq!(xs, vec![100.0, 105.0, 120.0]);
        assert_eq!(p.text, "ABC");
        assert!(p.glyphs.iter().all(|g| g.y == 700.0 && g.size == 10.0));
    }

    #[test]
    fn cm_and_q_restore() {
        let p = interpret_plain(b"q 2 0 0 2 10 10 cm BT /F 5 Tf (a) Tj ET Q BT /F 5 Tf (b) Tj ET");
        assert_eq!(p.glyphs[0].size, 10.0);
        assert_eq!((p.glyphs[0].x, p.glyphs[0].y), (10.0, 10.0));
        assert_eq!(p.glyphs[1].size, 5.0);
    }

    #[test]
    fn rotated_text_is_dropped() {
        let p = interpret_plain(b"BT /F 10 Tf 0 1 -1 0 20 300 Tm (margin) Tj ET");
        assert!(p.glyphs.is_empty());
        assert_eq!(p.vertical.len(), 6);
        let q = interpret_plain(b"BT /F 10 Tf 0.7 0.7 -0.7 0.7 20 300 Tm (diag) Tj ET");
        assert!(q.glyphs.is_empty() && q.vertical.is_empty());
        assert_eq!(q.rotated, 4);
    }

    #[test]
    fn leading_and_quote_operators() {
        let p = interpret_plain(b"BT /F 10 Tf 12 TL 0 100 Td (a) Tj T* (b) Tj (c) ' ET");
        let ys: Vec<f32> = p.glyphs.iter().map(|g| g.y).collect();
        assert_eq!(ys, vec![100.0, 88.0, 76.0]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            &b"Tj TJ Tf cm Td Tm ' \" BI ID \xff\xfe"[..],
            b"[[[[ ((( <<<< Do",
            b"1 2 3 4 5 6 cm [1 (x",
        ] {
            let _ = interpret_plain(s);
        }
    }
}
