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

/// The title when type sizes tell nothing (a manuscript set in one size): the first lines of
/// page 1 (`page1` text) before the byline, when they read like a title.
pub fn title_from_top(page1: &str) -> Option<String> {
    let mut lines = Vec::new();
    for line in page1.lines().map(str::trim) {
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        // A byline or an affiliation ends the title: digits (superscripts), e-mail, commas.
        if line.chars().any(|c| c.is_ascii_digit()) || line.contains('@') {
            break;
        }
        lines.push(line);
        if lines.len() == 3 {
            break;
        }
    }
    let t = super::clean::normalize_line(&lines.join(" "));
    let words = t.split_whitespace().count();
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    ((4..=40).contains(&words) && letters * 3 > t.len() * 2).then_some(t)
}

/// Words that mark a line as an affiliation or front matter, not a byline.
const NOT_BYLINE: [&str; 12] = [
    "department",
    "university",
    "institute",
    "school",
    "college",
    "laborator",
    "correspond",
    "@",
    "received",
    "abstract",
    "hospital",
    "centre",
];

/// The authors' surnames, in order, from the byline that follows the title on page 1
/// (`page1`: the page's text). Superscript affiliation marks, ORCID marks (`X`), `and`, `&`
/// and initials are dropped; the last word of each name is its surname.
pub fn authors(page1: &str, title: &str) -> Vec<String> {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let title_f = fold(title);
    if title_f.len() < 8 {
        return Vec::new();
    }
    // Where the title ends: the page's text folded the same way, with a map back to lines.
    let lines: Vec<&str> = page1.lines().collect();
    let mut acc = String::new();
    let mut after = None;
    for (i, l) in lines.iter().enumerate() {
        acc.push_str(&fold(l));
        if acc.contains(&title_f) {
            after = Some(i + 1);
            break;
        }
    }
    let Some(start) = after else {
        return Vec::new();
    };
    let mut byline = String::new();
    for l in lines.iter().skip(start).map(|l| l.trim()) {
        if l.is_empty() {
            if byline.is_empty() {
                continue;
            }
            let open = byline.trim_end();
            if open.ends_with(['&', ','])
                || open.ends_with(" and")
                || byline.split_whitespace().count() < 4
            {
                // `Samuel D. McDougle` / `1 & Jordan A. Taylor 2,3`, or `Krista M. Bond and` /
                // `Jordan A. Taylor`, across lines
                continue;
            }
            break;
        }
        let lower = l.to_lowercase();
        let affiliation = l.chars().next().is_some_and(|c| c.is_ascii_digit())
            && l.split_whitespace()
                .nth(1)
                .is_some_and(|w| w.chars().next().is_some_and(char::is_uppercase));
        if affiliation || NOT_BYLINE.iter().any(|w| lower.contains(w)) || byline.len() > 400 {
            break;
        }
        byline.push(' ');
        byline.push_str(l);
    }
    let mut out = Vec::new();
    // Padded, so that an `and` ending the byline (its last name lost) still separates.
    let spaced = format!("{byline} ").replace('&', ",").replace(" and ", ",");
    for name in spaced.split(',') {
        let words: Vec<&str> = name
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphabetic() && c != '-' && c != '\''))
            .filter(|w| w.chars().any(char::is_alphabetic) && *w != "X")
            .collect();
        // A name has a capitalised first word and at least two words (given name, surname).
        if words.len() < 2 || words.len() > 5 {
            continue;
        }
        let Some(last) = words.last() else { continue };
        if last.chars().filter(|c| c.is_alphabetic()).count() < 2 {
            continue;
        }
        let mut surname: String = last.to_string();
        if let Some(first) = surname.chars().next() {
            surname = first
                .to_uppercase()
                .chain(surname.chars().skip(1))
                .collect();
        }
        out.push(surname);
    }
    out
}

/// Words after which a year dates the paper itself (not a cited work).
const DATING: [&str; 8] = [
    "©",
    "copyright",
    "published",
    "accepted",
    "received",
    "revised",
    "online",
    "issue",
];

/// The publication year. Page 1 also cites other works, so only years that date the paper
/// count: those in its first lines (the journal's header) and those right after a dating word
/// (`Received`, `Accepted`, `©`…); the latest of them wins (a paper is published after it is
/// received). Without one, the year the file was made (`/CreationDate`).
pub fn year(page1: &str, doc: &lopdf::Document) -> Option<u32> {
    let lower = page1.to_lowercase();
    let head_end = page1
        .char_indices()
        .nth(HEADER_CHARS)
        .map_or(page1.len(), |(i, _)| i);
    let mut best: Option<u32> = None;
    for (at, y) in years(page1) {
        let dated = at < head_end
            || DATING.iter().any(|w| {
                let from = at.saturating_sub(60);
                lower.get(from..at).is_some_and(|before| before.contains(w))
            });
        if dated {
            best = best.max(Some(y));
        }
    }
    best.or_else(|| info_year(doc))
}

/// Characters at the top of page 1 whose years are the journal header's.
const HEADER_CHARS: usize = 300;

/// Four-digit years (1950..=2100) of `text` with their byte offsets, not inside a longer number
/// or a DOI (`.2017`, `/2017`, `-2017`).
fn years(text: &str) -> Vec<(usize, u32)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= b.len() {
        let is_digit = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
        let bounded = !is_digit(i + 4) && (i == 0 || !is_digit(i - 1));
        if (0..4).all(|k| is_digit(i + k)) && bounded {
            let prev = if i > 0 { b[i - 1] } else { b' ' };
            if !matches!(prev, b'.' | b'/' | b'-') {
                if let Some(y) = text.get(i..i + 4).and_then(|s| s.parse::<u32>().ok()) {
                    if (1950..=2100).contains(&y) {
                        out.push((i, y));
                    }
                }
            }
            i += 4;
        } else {
            i += 1;
        }
    }
    out
}

fn info_year(doc: &lopdf::Document) -> Option<u32> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = doc.dereference(info).ok()?.1.as_dict().ok()?;
    let d = info.get(b"CreationDate").ok()?;
    let d = lopdf::decode_text_string(doc.dereference(d).ok()?.1).ok()?;
    let digits = d.trim_start_matches("D:");
    let y: u32 = digits.get(..4)?.parse().ok()?;
    (1950..=2100).contains(&y).then_some(y)
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
    fn bylines_give_surnames_in_order() {
        let p = "J Neurophysiol 120: 2775–2787, 2018.\n\nPlan-based generalization shapes local implicit adaptation to opposing\nvisuomotor transformations\n\nX Raphael Schween, 1 X Jordan A. Taylor, 2 and Mathias Hegele 1\n1 Neuromotor Behavior Laboratory, Giessen";
        let t = "Plan-based generalization shapes local implicit adaptation to opposing visuomotor transformations";
        assert_eq!(authors(p, t), vec!["Schween", "Taylor", "Hegele"]);
        let p2 = "OPEN\n\nDissociable cognitive strategies for sensorimotor\n\nlearning\n\nSamuel D. McDougle\n\n1 & Jordan A. Taylor 2,3\n\nMotor learning is driven by";
        assert_eq!(
            authors(
                p2,
                "Dissociable cognitive strategies for sensorimotor learning"
            ),
            vec!["McDougle", "Taylor"]
        );
        let p3 = "How different effectors\nand action effects\nRaphael Schween 1* , Lisa Langsdorf 1,2 , Jordan A. taylor 3 & Mathias Hegele 1,2\n\nHumans can";
        assert_eq!(
            authors(p3, "How different effectors and action effects"),
            vec!["Schween", "Langsdorf", "Taylor", "Hegele"]
        );
        // Bond 2017 (eNeuro): the byline breaks after `and`, with a blank line between.
        let p4 = "Sensory and Motor Systems\n\nStructural Learning in a Visuomotor Adaptation\nTask Is Explicitly Accessible\n\nKrista M. Bond and\n\nJordan A. Taylor\n\nDOI:http://dx.doi.org/10.1523/ENEURO.0122-17.2017\nDepartment of Psychology";
        assert_eq!(
            authors(
                p4,
                "Structural Learning in a Visuomotor Adaptation Task Is Explicitly Accessible"
            ),
            vec!["Bond", "Taylor"]
        );
        assert!(authors("no title here", "Something else entirely").is_empty());
    }

    #[test]
    fn years_that_date_the_paper_not_its_citations() {
        let page = format!(
            "The Journal of Neuroscience, February 19, 2014 • 34(8):3023–3032\n\nTitle\n{}as shown before (Smith, 2011; Jones, 2011; Lee, 2011).\nReceived Sept. 2, 2013; accepted Jan. 5, 2014. doi:10.1523/JNEUROSCI.2019-13.2014",
            "x ".repeat(200)
        );
        let doc = lopdf::Document::with_version("1.5");
        assert_eq!(year(&page, &doc), Some(2014));
        assert_eq!(years("10.1152/jn.00451.2018 and 1999"), vec![(26, 1999)]);
        assert_eq!(
            year(&format!("{}cited 2011, 2011, 2011", "y ".repeat(200)), &doc),
            None
        );
    }

    #[test]
    fn title_from_top_lines_stops_at_the_byline() {
        let p = "Generalization via superposition: Combined effects of mixed reference frame representations for explicit\nand implicit learning in a visuomotor adaptation task\nEugene Poh 1 and Jordan A. Taylor 1,2\n";
        assert_eq!(
            title_from_top(p).as_deref(),
            Some("Generalization via superposition: Combined effects of mixed reference frame representations for explicit and implicit learning in a visuomotor adaptation task")
        );
        assert_eq!(title_from_top("1 Department of X\n"), None);
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
