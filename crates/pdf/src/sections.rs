//! Section headings: Abstract, Introduction, Methods (and its many names), Participants /
//! Subjects, Procedure, Results, Discussion, References... A heading is a short line whose text
//! (after numbering like `2.1` or `II.`) is a known name, or a run-in heading such as
//! `Participants. Twenty-four ...` for the subsections where journals use that style.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectionKind {
    Abstract,
    Introduction,
    Methods,
    Participants,
    Procedure,
    Results,
    Discussion,
    Conclusion,
    Acknowledgments,
    References,
    Other(String),
}

impl SectionKind {
    /// Whether this kind belongs to the body of a paper, which its abstract precedes.
    fn is_body(&self) -> bool {
        use SectionKind::*;
        matches!(
            self,
            Introduction | Methods | Participants | Procedure | Results | Discussion | Conclusion
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub kind: SectionKind,
    pub heading: String,
    /// Byte range in `Document::text`, from the heading to the next section's heading.
    pub start: usize,
    pub end: usize,
}

fn classify(name: &str) -> Option<SectionKind> {
    use SectionKind::*;
    let n = name.to_lowercase().replace('&', "and");
    let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
    let kind = match n.as_str() {
        "abstract" | "summary" => Abstract,
        "introduction" | "background" | "general introduction" => Introduction,
        "methods"
        | "method"
        | "materials and methods"
        | "material and methods"
        | "methods and materials"
        | "experimental procedures"
        | "general methods"
        | "general method"
        | "methodology"
        | "experimental methods"
        | "experimental procedure and methods"
        | "methods and procedures"
        | "star methods"
        | "online methods" => Methods,
        "participants" | "subjects" | "participant" | "patients and methods" | "patients" => {
            Participants
        }
        "procedure"
        | "procedures"
        | "experimental procedure"
        | "task and procedure"
        | "apparatus"
        | "apparatus and procedure"
        | "experimental design"
        | "task"
        | "design and procedure" => Procedure,
        "results" | "result" | "results and discussion" => Results,
        "discussion" | "general discussion" => Discussion,
        "conclusion" | "conclusions" | "concluding remarks" => Conclusion,
        "acknowledgments" | "acknowledgements" | "acknowledgment" | "acknowledgement" => {
            Acknowledgments
        }
        "references" | "bibliography" | "literature cited" | "references and notes" => References,
        _ => {
            // "Experiment 2", "Experiment 2: Results", "Experiment 1 procedures" - but not a
            // sentence that happens to start with "Experiment 3 was designed".
            let w: Vec<&str> = n.split(' ').collect();
            let numbered = w.len() >= 2
                && w[0] == "experiment"
                && w[1]
                    .trim_end_matches([':', '.'])
                    .chars()
                    .all(|c| c.is_ascii_digit());
            let rest_ok = w.len() <= 4
                && w[2.min(w.len())..]
                    .iter()
                    .all(|x| EXPERIMENT_SUFFIXES.contains(&x.trim_end_matches([':', '.'])));
            if numbered && rest_ok {
                Other(name.to_string())
            } else {
                return None;
            }
        }
    };
    Some(kind)
}

/// Strips `2.`, `2.1`, `2.1.`, `II.`, `A.` numbering.
fn strip_numbering(s: &str) -> &str {
    let t = s.trim();
    let first = t.split(' ').next().unwrap_or("");
    let is_num = !first.is_empty()
        && (first
            .trim_end_matches('.')
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            || (first.ends_with('.')
                && first.len() <= 5
                && first
                    .trim_end_matches('.')
                    .chars()
                    .all(|c| "IVX".contains(c))));
    if is_num && first.len() < t.len() {
        t[first.len()..].trim_start()
    } else {
        t
    }
}

const EXPERIMENT_SUFFIXES: &[&str] = &[
    "results",
    "methods",
    "method",
    "procedure",
    "procedures",
    "analyses",
    "analysis",
    "design",
    "participants",
    "discussion",
    "and",
];

const RUN_IN: &[&str] = &[
    "Participants",
    "Subjects",
    "Procedure",
    "Apparatus",
    "Methods",
    "Method",
];

fn heading_of(line: &str) -> Option<(SectionKind, String)> {
    // Headings are capitalised; a wrapped sentence ending "...participants." is not one.
    if !line
        .chars()
        .find(|c| c.is_alphabetic())
        .is_some_and(char::is_uppercase)
    {
        return None;
    }
    if line.len() <= 60 {
        let name = strip_numbering(line).trim_end_matches(['.', ':']);
        if let Some(k) = classify(name) {
            return Some((k, line.trim().to_string()));
        }
    }
    let body = strip_numbering(line);
    for r in RUN_IN {
        if let Some(rest) = body.strip_prefix(r) {
            let rest = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(": "));
            if rest.is_some_and(|x| {
                x.chars()
                    .next()
                    .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
            }) {
                return classify(r).map(|k| (k, r.to_string()));
            }
        }
    }
    None
}

/// Finds sections in the assembled text. Ranges are contiguous and cover from the first
/// heading to the end of the text.
pub fn find(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut pos = 0usize;
    for line in text.split('\n') {
        let start = pos;
        pos += line.len() + 1;
        if let Some((kind, heading)) = heading_of(line) {
            // An abstract opens a paper: an `Abstract` or `Summary` heading once the body has
            // begun (J Neurosci's Discussion opens with a `Summary`) is a part of the section
            // before it, whose kind it keeps, so that a discussion of other studies is never
            // read as the paper's own summary.
            let kind = match (&kind, out.last()) {
                (SectionKind::Abstract, Some(prev)) if out.iter().any(|s| s.kind.is_body()) => {
                    prev.kind.clone()
                }
                _ => kind,
            };
            if let Some(prev) = out.last_mut() {
                prev.end = start;
            }
            out.push(Section {
                kind,
                heading,
                start,
                end: text.len(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_inside_the_body_keeps_the_section_before_it() {
        let text = "Abstract\nWe ask.\nIntroduction\nPatients differ.\nMethods\nWe did.\nDiscussion\nSummary\nOther studies used patients.\nReferences\nA.";
        let kinds: Vec<SectionKind> = find(text).into_iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SectionKind::Abstract,
                SectionKind::Introduction,
                SectionKind::Methods,
                SectionKind::Discussion,
                SectionKind::Discussion,
                SectionKind::References,
            ]
        );
    }

    #[test]
    fn headings_and_variants() {
        let text = "Title\nAbstract\nWe did x.\n1. Introduction\nText\nMATERIALS AND METHODS\nParticipants. Twenty people.\n2.3 Procedure\nStuff\nResults\nr\nGeneral Discussion\nd\nReferences\nA. B. (2001)";
        let s = find(text);
        let kinds: Vec<SectionKind> = s.iter().map(|s| s.kind.clone()).collect();
        use SectionKind::*;
        assert_eq!(
            kinds,
            vec![
                Abstract,
                Introduction,
                Methods,
                Participants,
                Procedure,
                Results,
                Discussion,
                References
            ]
        );
        assert_eq!(&text[s[0].start..s[0].end], "Abstract\nWe did x.\n");
        assert_eq!(s.last().map(|x| x.end), Some(text.len()));
    }

    #[test]
    fn ordinary_sentences_are_not_headings() {
        assert!(find(
            "The results were clear.\nMethods like ours are common.\nExperiment 3 was designed\n"
        )
        .is_empty());
        assert_eq!(find("Experiment 2 results\nx").len(), 1);
    }
}
