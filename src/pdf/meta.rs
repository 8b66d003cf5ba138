//! DOI and title from the first page.

use super::layout::Line;

/// The paper's own DOI: the first one on page 1 (`text[..first_page_end]`). Later pages are not
/// searched: there, DOIs belong to cited works.
pub fn doi(text: &str, first_page_end: usize) -> Option<String> {
    find_doi(text.get(..first_page_end.min(text.len())).unwrap_or(""))
}

fn find_doi(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text.get(i..).and_then(|t| t.find("10.")) {
        let s = i + off;
        let mut j = s + 3;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let ndig = j - (s + 3);
        if (4..=9).contains(&ndig) && b.get(j) == Some(&b'/') {
            let mut k = j + 1;
            while k < b.len()
                && !b[k].is_ascii_whitespace()
                && b[k] != b'"'
                && b[k] != b'<'
                && b[k] < 0x80
            {
                k += 1;
            }
            let d = text[s..k].trim_end_matches(['.', ',', ';', ')', ']', ':']);
            if d.len() > j - s + 1 {
                return Some(d.to_string());
            }
        }
        i = s + 3;
    }
    None
}

/// Banner lines publishers set in large type above the title.
const NOT_TITLES: &[&str] = &[
    "public access",
    "manuscript",
    "journal",
    "research article",
    "original research",
    "open access",
    "brief communication",
    "research report",
    "department",
    "university",
    "received",
    "copyright",
];

/// The title: the largest-type run of consecutive page-1 lines that reads like a title.
pub fn title(page1: &[Line]) -> Option<String> {
    let round = |s: f32| (s * 4.0).round() / 4.0;
    // Consecutive lines (reading order) of the same size form a group.
    let mut groups: Vec<(f32, Vec<&str>)> = Vec::new();
    for l in page1 {
        let s = round(l.size);
        match groups.last_mut() {
            Some((gs, g)) if *gs == s => g.push(l.text.trim()),
            _ => groups.push((s, vec![l.text.trim()])),
        }
    }
    let mut best: Option<(f32, String)> = None;
    for (size, g) in groups {
        let t = super::clean::normalize_line(&g.join(" "));
        let lower = t.to_lowercase();
        let words = t.split_whitespace().count();
        let letters = t.chars().filter(|c| c.is_alphabetic()).count();
        let plausible = (2..=40).contains(&words)
            && letters >= 12
            && letters * 3 > t.len() * 2
            && !NOT_TITLES.iter().any(|n| lower.contains(n));
        if plausible && best.as_ref().is_none_or(|(bs, _)| size > *bs) {
            best = Some((size, t));
        }
    }
    best.map(|(_, t)| t)
}

/// The document information dictionary's /Title, when it looks like a real title.
pub fn info_title(doc: &lopdf::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = doc.dereference(info).ok()?.1.as_dict().ok()?;
    let t = info.get(b"Title").ok()?;
    let t = lopdf::decode_text_string(doc.dereference(t).ok()?.1).ok()?;
    let lower = t.to_lowercase();
    if t.split_whitespace().count() >= 4
        && !lower.contains(".doc")
        && !lower.contains(".pdf")
        && !lower.contains("microsoft")
    {
        Some(t.trim().to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doi_found_and_trimmed() {
        assert_eq!(
            doi("x doi: 10.1152/jn.00577.2016.\nmore", 100).as_deref(),
            Some("10.1152/jn.00577.2016")
        );
        assert_eq!(
            doi("https://doi.org/10.1038/s41598-019-50000-1)", 100).as_deref(),
            Some("10.1038/s41598-019-50000-1")
        );
        assert_eq!(doi("version 10.2 of 10.12/ab", 100), None);
        // DOIs after page 1 belong to references.
        assert_eq!(doi("page one\n\nref 10.1000/xyz", 8), None);
    }

    #[test]
    fn title_is_largest_wordy_group() {
        let l = |t: &str, s: f32| Line {
            text: t.into(),
            x0: 0.0,
            x1: 1.0,
            y: 0.0,
            size: s,
            block_start: false,
        };
        let p = vec![
            l("J", 30.0),
            l("Dissociable cognitive strategies", 18.0),
            l("for sensorimotor learning", 18.0),
            l("body", 9.0),
        ];
        assert_eq!(
            title(&p).as_deref(),
            Some("Dissociable cognitive strategies for sensorimotor learning")
        );
    }
}
