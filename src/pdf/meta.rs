//! DOI and title from the first page.

use super::layout::Line;

/// First DOI in `text[..first_page_end]`, else in the whole text.
pub fn doi(text: &str, first_page_end: usize) -> Option<String> {
    find_doi(text.get(..first_page_end).unwrap_or("")).or_else(|| find_doi(text))
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

/// The title: the largest-type group of lines on page 1 that reads like a title.
pub fn title(page1: &[Line]) -> Option<String> {
    let mut sizes: Vec<f32> = page1.iter().map(|l| (l.size * 2.0).round() / 2.0).collect();
    sizes.sort_by(|a, b| b.total_cmp(a));
    sizes.dedup();
    for s in sizes.into_iter().take(4) {
        let lines: Vec<&str> = page1
            .iter()
            .filter(|l| ((l.size * 2.0).round() / 2.0 - s).abs() < 0.01)
            .map(|l| l.text.trim())
            .collect();
        let t = lines.join(" ");
        let words = t.split_whitespace().count();
        let letters = t.chars().filter(|c| c.is_alphabetic()).count();
        if (4..=40).contains(&words)
            && letters * 2 > t.len()
            && !t.to_lowercase().starts_with("journal")
        {
            return Some(super::clean::normalize_line(&t));
        }
    }
    None
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
