//! Layout: positioned glyphs -> words -> lines -> reading order.
//!
//! 1. *Runs*: consecutive glyphs in content-stream order that continue one baseline.
//! 2. *Lines*: runs on the same visual line merged (superscripts, cells of one row); word spaces
//!    come from gaps between glyphs (publishers rarely draw space glyphs; kerning in `TJ` is the
//!    space), and from explicit space glyphs.
//! 3. *Reading order*: a recursive XY-cut. A region is cut vertically when an empty column runs
//!    through all of it; otherwise it is cut into horizontal strips, and consecutive strips that
//!    share an empty column (the gutter of a two-column body) are regrouped before recursing, so a
//!    gap that happens to line up across both columns does not interleave them.

use super::content::{Glyph, PageGlyphs};

/// One output line of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub x0: f32,
    pub x1: f32,
    /// Baseline of the line's dominant (largest) glyphs.
    pub y: f32,
    /// Largest font size on the line.
    pub size: f32,
    /// First line of a layout block (a column piece, a caption, a title block).
    pub block_start: bool,
}

/// Gap (in ems) above which two glyphs on a baseline are separate words.
const WORD_GAP: f32 = 0.1;
/// Gap (in ems) above which two runs on a baseline are not the same line (a gutter, a table gap).
const LINE_GAP: f32 = 1.0;

struct Run {
    glyphs: Vec<usize>,
    x0: f32,
    x1: f32,
    y: f32,
    size: f32,
}

fn is_space(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Builds the page's lines in reading order. Vertical text inside the text body (figure axis
/// labels such as `Hand angle (°)`) follows as a final block; vertical text in the margins
/// (download stamps, arXiv identifiers, journal sidebars) is dropped.
pub fn page_lines(p: &PageGlyphs) -> Vec<Line> {
    let mut lines = upright_lines(p);
    if p.vertical.is_empty() {
        return lines;
    }
    let body: Vec<&Line> = lines.iter().filter(|l| l.text.len() >= 30).collect();
    if body.is_empty() {
        return lines;
    }
    let left = body.iter().map(|l| l.x0).fold(f32::INFINITY, f32::min);
    let right = body.iter().map(|l| l.x1).fold(f32::NEG_INFINITY, f32::max);
    let mut rot = PageGlyphs {
        text: p.text.clone(),
        ..PageGlyphs::default()
    };
    for (g, &x) in p.vertical.iter().zip(&p.vertical_page_x) {
        if x > left && x < right {
            rot.glyphs.push(*g);
        }
    }
    let mut extra = upright_lines(&rot);
    if let Some(first) = extra.first_mut() {
        first.block_start = true;
    }
    lines.extend(extra);
    lines
}

fn upright_lines(p: &PageGlyphs) -> Vec<Line> {
    let runs = runs(p);
    let mut lines = merge_runs(p, runs);
    if lines.is_empty() {
        return Vec::new();
    }
    let ids: Vec<usize> = (0..lines.len()).collect();
    let mut blocks: Vec<Vec<usize>> = Vec::new();
    xy_order(&lines, ids, &mut blocks, 0);
    let mut out = Vec::with_capacity(lines.len());
    for b in blocks {
        for (k, i) in b.into_iter().enumerate() {
            let mut l = std::mem::replace(
                &mut lines[i],
                Line {
                    text: String::new(),
                    x0: 0.0,
                    x1: 0.0,
                    y: 0.0,
                    size: 0.0,
                    block_start: false,
                },
            );
            l.block_start = k == 0;
            out.push(l);
        }
    }
    out
}

fn runs(p: &PageGlyphs) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, g) in p.glyphs.iter().enumerate() {
        let gx1 = g.x + g.w;
        if let Some(r) = runs.last_mut() {
            let s = r.size.max(g.size);
            let same_base = (g.y - r.y).abs() <= 0.15 * s;
            let gap = g.x - r.x1;
            if same_base && gap >= -0.6 * s && gap <= LINE_GAP * s {
                r.glyphs.push(i);
                r.x1 = r.x1.max(gx1);
                r.x0 = r.x0.min(g.x);
                r.size = r.size.max(g.size);
                continue;
            }
        }
        runs.push(Run {
            glyphs: vec![i],
            x0: g.x,
            x1: gx1,
            y: g.y,
            size: g.size,
        });
    }
    // Space-only runs carry no text of their own.
    runs.retain(|r| {
        r.glyphs
            .iter()
            .any(|&i| !is_space(p.glyph_text(&p.glyphs[i])))
    });
    runs
}

struct LineBuild {
    runs: Vec<Run>,
    x0: f32,
    x1: f32,
    y: f32,
    size: f32,
}

fn merge_runs(p: &PageGlyphs, runs: Vec<Run>) -> Vec<Line> {
    let mut lines: Vec<LineBuild> = Vec::new();
    for r in runs {
        let mut target = None;
        // Look back a few lines only: a superscript or the next cell follows its line closely in
        // the stream; a full search would be quadratic on dense pages.
        for (li, l) in lines.iter().enumerate().rev().take(6) {
            let s = l.size.max(r.size);
            let small = r.size.min(l.size);
            let vert_ok = if (r.size - l.size).abs() <= 0.1 * s {
                (r.y - l.y).abs() <= 0.15 * s
            } else {
                // Super/subscript: the smaller text's baseline sits within the bigger's body.
                let (big_y, big_s, small_y) = if r.size > l.size {
                    (r.y, r.size, l.y)
                } else {
                    (l.y, l.size, r.y)
                };
                small_y >= big_y - 0.35 * big_s && small_y <= big_y + 0.6 * big_s && small > 0.0
            };
            if !vert_ok {
                continue;
            }
            let gap_right = r.x0 - l.x1;
            let gap_left = l.x0 - r.x1;
            if (gap_right >= -0.3 * s && gap_right <= LINE_GAP * s)
                || (gap_left >= -0.3 * s && gap_left <= LINE_GAP * s)
            {
                target = Some(li);
                break;
            }
        }
        match target {
            Some(li) => {
                let l = &mut lines[li];
                l.x0 = l.x0.min(r.x0);
                l.x1 = l.x1.max(r.x1);
                if r.size > l.size {
                    l.size = r.size;
                    l.y = r.y;
                }
                l.runs.push(r);
            }
            None => lines.push(LineBuild {
                x0: r.x0,
                x1: r.x1,
                y: r.y,
                size: r.size,
                runs: vec![r],
            }),
        }
    }
    lines
        .into_iter()
        .filter_map(|mut l| {
            l.runs.sort_by(|a, b| a.x0.total_cmp(&b.x0));
            let text = line_text(p, &l.runs);
            let t = text.trim();
            if t.is_empty() {
                return None;
            }
            Some(Line {
                text: t.to_string(),
                x0: l.x0,
                x1: l.x1,
                y: l.y,
                size: l.size,
                block_start: false,
            })
        })
        .collect()
}

fn line_text(p: &PageGlyphs, runs: &[Run]) -> String {
    let mut s = String::new();
    let mut prev: Option<&Glyph> = None;
    let mut pending_space = false;
    for r in runs {
        for &gi in &r.glyphs {
            let g = &p.glyphs[gi];
            let t = p.glyph_text(g);
            if is_space(t) {
                pending_space = true;
                continue;
            }
            if let Some(pg) = prev {
                let gap = g.x - (pg.x + pg.w);
                let em = pg.size.max(g.size);
                // A baseline shift (superscript citation, affiliation mark) also separates words.
                let shifted = (g.y - pg.y).abs() > 0.15 * pg.size.min(g.size);
                if (pending_space || shifted || gap > WORD_GAP * em || gap < -em)
                    && !s.ends_with(' ')
                {
                    s.push(' ');
                }
            }
            pending_space = false;
            // Overprinted duplicates (fake bold): same glyph at nearly the same spot.
            if let Some(pg) = prev {
                if p.glyph_text(pg) == t
                    && (g.x - pg.x).abs() < 0.05 * g.size
                    && (g.y - pg.y).abs() < 0.05 * g.size
                {
                    continue;
                }
            }
            s.push_str(t);
            prev = Some(g);
        }
    }
    s
}

fn top(l: &Line) -> f32 {
    l.y + 0.8 * l.size
}
fn bottom(l: &Line) -> f32 {
    l.y - 0.25 * l.size
}

/// Empty x-intervals inside [lo, hi] not covered by any of the lines.
fn x_gaps(lines: &[Line], ids: &[usize], lo: f32, hi: f32) -> Vec<(f32, f32)> {
    let mut spans: Vec<(f32, f32)> = ids.iter().map(|&i| (lines[i].x0, lines[i].x1)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut gaps = Vec::new();
    let mut cur = lo;
    for (a, b) in spans {
        if a > cur {
            gaps.push((cur, a));
        }
        cur = cur.max(b);
    }
    if hi > cur {
        gaps.push((cur, hi));
    }
    gaps
}

fn median_size(lines: &[Line], ids: &[usize]) -> f32 {
    let mut s: Vec<f32> = ids.iter().map(|&i| lines[i].size).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(10.0)
}

fn xy_order(lines: &[Line], ids: Vec<usize>, out: &mut Vec<Vec<usize>>, depth: usize) {
    if ids.len() <= 1 || depth > 40 {
        push_sorted(lines, ids, out);
        return;
    }
    let lo = ids
        .iter()
        .map(|&i| lines[i].x0)
        .fold(f32::INFINITY, f32::min);
    let hi = ids
        .iter()
        .map(|&i| lines[i].x1)
        .fold(f32::NEG_INFINITY, f32::max);
    let min_gap = 0.5 * median_size(lines, &ids);
    // Vertical cut: widest interior empty column.
    let interior: Vec<(f32, f32)> = x_gaps(lines, &ids, lo, hi)
        .into_iter()
        .filter(|g| g.0 > lo && g.1 < hi && g.1 - g.0 >= min_gap)
        .collect();
    if let Some(&(a, b)) = interior
        .iter()
        .max_by(|p, q| (p.1 - p.0).total_cmp(&(q.1 - q.0)))
    {
        let mid = (a + b) / 2.0;
        let (left, right): (Vec<usize>, Vec<usize>) =
            ids.iter().partition(|&&i| lines[i].x1 <= mid);
        if !left.is_empty() && !right.is_empty() {
            xy_order(lines, left, out, depth + 1);
            xy_order(lines, right, out, depth + 1);
            return;
        }
    }
    // Horizontal strips: maximal runs of vertically overlapping lines, top to bottom.
    let mut sorted = ids;
    sorted.sort_by(|&a, &b| top(&lines[b]).total_cmp(&top(&lines[a])));
    let mut strips: Vec<Vec<usize>> = Vec::new();
    let mut strip_bottom = f32::INFINITY;
    for i in sorted {
        let l = &lines[i];
        match strips.last_mut() {
            Some(s) if top(l) > strip_bottom => {
                s.push(i);
                strip_bottom = strip_bottom.min(bottom(l));
            }
            _ => {
                strips.push(vec![i]);
                strip_bottom = bottom(l);
            }
        }
    }
    if strips.len() == 1 {
        push_sorted(lines, strips.pop().unwrap_or_default(), out);
        return;
    }
    // Regroup consecutive strips that share an interior empty column.
    type Group = (Vec<usize>, Vec<(f32, f32)>);
    let mut groups: Vec<Group> = Vec::new();
    for s in strips {
        let gaps: Vec<(f32, f32)> = x_gaps(lines, &s, lo, hi)
            .into_iter()
            .filter(|g| g.1 - g.0 >= min_gap)
            .collect();
        if let Some((g_ids, g_gaps)) = groups.last_mut() {
            let inter = intersect(g_gaps, &gaps, min_gap);
            let interior = inter.iter().any(|g| g.0 > lo && g.1 < hi);
            if interior {
                g_ids.extend(s);
                *g_gaps = inter;
                continue;
            }
        }
        groups.push((s, gaps));
    }
    // Consecutive groups without an interior gutter (plain lines of one column) are one block,
    // unless a clear vertical gap separates them.
    let mut merged: Vec<(Vec<usize>, bool)> = Vec::new();
    for (g, gaps) in groups {
        let split = gaps.iter().any(|x| x.0 > lo && x.1 < hi);
        if let Some((prev, prev_split)) = merged.last_mut() {
            if !*prev_split && !split {
                let prev_bottom = prev
                    .iter()
                    .map(|&i| bottom(&lines[i]))
                    .fold(f32::INFINITY, f32::min);
                let g_top = g
                    .iter()
                    .map(|&i| top(&lines[i]))
                    .fold(f32::NEG_INFINITY, f32::max);
                let size = g.iter().map(|&i| lines[i].size).fold(0.0, f32::max);
                if prev_bottom - g_top <= 0.9 * size {
                    prev.extend(g);
                    continue;
                }
            }
        }
        merged.push((g, split));
    }
    if merged.len() == 1 {
        // No cut separates anything here.
        let (g, _) = merged.pop().unwrap_or_default();
        push_sorted(lines, g, out);
        return;
    }
    for (g, _) in merged {
        xy_order(lines, g, out, depth + 1);
    }
}

fn intersect(a: &[(f32, f32)], b: &[(f32, f32)], min: f32) -> Vec<(f32, f32)> {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (l, h) = (a0.max(b0), a1.min(b1));
            if h - l >= min {
                out.push((l, h));
            }
        }
    }
    out
}

fn push_sorted(lines: &[Line], mut ids: Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if ids.is_empty() {
        return;
    }
    // Top to bottom, then left to right within a visual line. (A single comparator mixing both
    // would not be a total order.)
    ids.sort_by(|&a, &b| lines[b].y.total_cmp(&lines[a].y));
    let mut i = 0;
    while i < ids.len() {
        let mut j = i + 1;
        while j < ids.len() {
            let (la, lb) = (&lines[ids[j - 1]], &lines[ids[j]]);
            if (la.y - lb.y).abs() > 0.3 * la.size.min(lb.size) {
                break;
            }
            j += 1;
        }
        ids[i..j].sort_by(|&a, &b| lines[a].x0.total_cmp(&lines[b].x0));
        i = j;
    }
    out.push(ids);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::interpret_plain;

    fn text_of(content: &[u8]) -> Vec<String> {
        page_lines(&interpret_plain(content))
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn kerning_gap_becomes_space() {
        assert_eq!(
            text_of(b"BT /F 10 Tf 50 700 Td [(Hello) -300 (world)] TJ ET"),
            vec!["Hello world"]
        );
        assert_eq!(
            text_of(b"BT /F 10 Tf 50 700 Td [(Hel) -20 (lo)] TJ ET"),
            vec!["Hello"]
        );
    }

    #[test]
    fn two_columns_read_left_then_right() {
        let mut c = Vec::new();
        for (i, y) in [700, 688, 676].iter().enumerate() {
            c.extend_from_slice(
                format!("BT /F 10 Tf 50 {y} Td (left{i} aaaa bbbb) Tj ET ").as_bytes(),
            );
            c.extend_from_slice(
                format!("BT /F 10 Tf 300 {y} Td (right{i} cccc dddd) Tj ET ").as_bytes(),
            );
        }
        let t = text_of(&c);
        assert_eq!(
            t,
            vec![
                "left0 aaaa bbbb",
                "left1 aaaa bbbb",
                "left2 aaaa bbbb",
                "right0 cccc dddd",
                "right1 cccc dddd",
                "right2 cccc dddd"
            ]
        );
    }

    #[test]
    fn full_width_title_before_columns() {
        let mut c =
            b"BT /F 14 Tf 50 760 Td (A long title that spans both of the columns below it) Tj ET "
                .to_vec();
        for (i, y) in [700, 688].iter().enumerate() {
            c.extend_from_slice(
                format!("BT /F 10 Tf 300 {y} Td (right{i} cccc dddd) Tj ET ").as_bytes(),
            );
            c.extend_from_slice(
                format!("BT /F 10 Tf 50 {y} Td (left{i} aaaa bbbb) Tj ET ").as_bytes(),
            );
        }
        let t = text_of(&c);
        assert_eq!(t[0], "A long title that spans both of the columns below it");
        assert_eq!(
            &t[1..],
            &[
                "left0 aaaa bbbb",
                "left1 aaaa bbbb",
                "right0 cccc dddd",
                "right1 cccc dddd"
            ]
        );
    }

    #[test]
    fn superscript_stays_on_its_line() {
        let t = text_of(b"BT /F 10 Tf 50 700 Td (word) Tj /F 6 Tf 20 4 Td (12) Tj /F 10 Tf 7 -4 Td (next) Tj ET");
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0], "word 12 next");
    }
}
