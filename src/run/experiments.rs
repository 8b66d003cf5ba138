//! A paper's experiments, found from its headings before any model runs.
//!
//! Papers head each experiment's own text: `Experiment 2: Vector based feedback`, a run-in
//! `Experiment 1. Experiment 1 was designed…`, `Exp. 3`, or a named one such as `Clamp-only
//! experiment. The design…`. Methods and Results often repeat the numbered headings, so an
//! experiment owns every span its heading opens. What lies outside every experiment's spans
//! (title page, general methods, shared apparatus) is shared by all of them: a value stated
//! there is inherited, and keeps the quote it came from.
//!
//! The heading words come from the schema (`[experiments]` in `configs/schema.toml`).

use crate::schema::Experiments as Naming;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// One experiment of a paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// As the paper numbers it (named experiments come after the numbered ones).
    pub number: u32,
    /// Its first heading line, as printed.
    pub label: String,
    /// Byte ranges of the paper's text that are this experiment's own.
    pub spans: Vec<Range<usize>>,
}

impl Experiment {
    pub fn owns(&self, offset: usize) -> bool {
        self.spans.iter().any(|s| s.contains(&offset))
    }
}

/// A heading line: which experiment it opens (a number, or a name) and where.
#[derive(Debug, Clone, PartialEq)]
enum Heading {
    Numbered(u32),
    /// A section of several experiments: `Experiments 2 and 3`, `Experiments 1–3`.
    Several(Vec<u32>),
    Named(String),
}

const MAX_NUMBER: u32 = 20;
const MAX_HEADING_CHARS: usize = 120;

fn parse_number(s: &str) -> Option<(u32, &str)> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    if !digits.is_empty() {
        let n: u32 = digits.parse().ok()?;
        return (1..=MAX_NUMBER)
            .contains(&n)
            .then(|| (n, &s[digits.len()..]));
    }
    None
}

/// Whether what follows `Experiment N` makes the line a heading rather than running text: the
/// end of the line, a colon or dash, a full stop and a new sentence, a capitalised word
/// (`Experiment 2 Results`), or only the schema's `section_words` (`Experiment 2
/// procedures`, `Experiment 1 analyses`). `Experiment 2 was designed…`, `Experiment 1,
/// participants…`, `Experiment 2 (Fig. 3) consisted…` are running text.
fn heading_tail(rest: &str, naming: &Naming) -> bool {
    let rest = rest.trim_end();
    if rest.is_empty() {
        return true;
    }
    let section = |w: &str| {
        naming
            .section_words
            .iter()
            .any(|s| s.eq_ignore_ascii_case(w))
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    if rest.starts_with(' ')
        && words.iter().any(|w| section(w))
        && words.iter().all(|w| *w == "and" || section(w))
    {
        return true;
    }
    let mut chars = rest.chars();
    match chars.next() {
        Some(':' | '–' | '—') => true,
        Some('.') => {
            let after = chars.as_str().trim_start();
            after.is_empty() || after.chars().next().is_some_and(|c| c.is_uppercase())
        }
        Some(' ') => {
            let after = rest.trim_start();
            if let Some(a) = after.strip_prefix(['-', '–', '—', ':']) {
                return a.starts_with(' ') || a.is_empty();
            }
            after.chars().next().is_some_and(|c| c.is_uppercase())
        }
        _ => false,
    }
}

/// What heading `line` is, if any.
/// The experiments a plural heading names after its word (`2 and 3`, `1, 2 and 3`, `1–3`),
/// with the rest of the line; `None` unless they run consecutively (a section of experiments
/// 2 and 3 shares their methods; `1 and 3` is a comparison, no section).
fn several(rest: &str) -> Option<(Vec<u32>, &str)> {
    let (first, mut tail) = parse_number(rest)?;
    let mut list = vec![first];
    loop {
        let t = tail.trim_start();
        let (joined, range) = if let Some(t) = t.strip_prefix("and ") {
            (t, false)
        } else if let Some(t) = t.strip_prefix(',') {
            (t.trim_start().strip_prefix("and ").unwrap_or(t), false)
        } else if let Some(t) = t.strip_prefix(['-', '–', '—']) {
            (t, true)
        } else if let Some(t) = t.strip_prefix("to ") {
            (t, true)
        } else {
            break;
        };
        let Some((n, after)) = parse_number(joined.trim_start()) else {
            break;
        };
        let last = *list.last()?;
        if range && n > last {
            list.extend(last + 1..=n);
        } else {
            list.push(n);
        }
        tail = after;
    }
    let consecutive = list.windows(2).all(|w| w[1] == w[0] + 1);
    (list.len() >= 2 && consecutive).then_some((list, tail))
}

fn heading_of(line: &str, naming: &Naming) -> Option<Heading> {
    let line = line.trim();
    if line.is_empty() || line.chars().count() > MAX_HEADING_CHARS {
        return None;
    }
    let lower = line.to_ascii_lowercase();
    for w in &naming.heading_words {
        let w = w.to_ascii_lowercase();
        // `Experiments 2 and 3` heads the section the two share.
        let plural = format!("{}s ", w.trim_end_matches('.'));
        if let Some(rest) = lower.strip_prefix(&plural) {
            let rest_orig = &line[line.len() - rest.len()..];
            if let Some((list, tail)) = several(rest_orig.trim_start()) {
                if heading_tail(tail, naming) && line.chars().next().is_some_and(char::is_uppercase)
                {
                    return Some(Heading::Several(list));
                }
            }
        }
        if let Some(rest) = lower.strip_prefix(&w) {
            let rest_orig = &line[line.len() - rest.len()..];
            // `Experiment 2`, `Exp. 3`, `Exp.3`, `Study 1`
            let r = rest_orig.trim_start();
            if rest_orig.len() == r.len() && !w.ends_with('.') {
                continue; // `Experimental`, `Studying`
            }
            if let Some((n, tail)) = parse_number(r) {
                if heading_tail(tail, naming) && line.chars().next().is_some_and(char::is_uppercase)
                {
                    return Some(Heading::Numbered(n));
                }
            }
        }
    }
    // A named run-in heading: `Clamp-only experiment. The design…` (one to three words before
    // the heading word, capitalised, then a sentence).
    for w in &naming.heading_words {
        let w = w.to_ascii_lowercase();
        if w.ends_with('.') {
            continue;
        }
        let Some(pos) = lower.find(&format!(" {w}. ")) else {
            continue;
        };
        let name = &line[..pos];
        let words = name.split_whitespace().count();
        let after = &line[pos + w.len() + 3..];
        let capital = name.chars().next().is_some_and(char::is_uppercase)
            && after.chars().next().is_some_and(char::is_uppercase);
        let plain = name
            .chars()
            .all(|c| c.is_alphabetic() || c == '-' || c == ' ' || c == '\'');
        if (1..=3).contains(&words) && capital && plain {
            let key = name.to_lowercase();
            if !matches!(
                key.as_str(),
                "this" | "the" | "each" | "every" | "our" | "that"
            ) {
                return Some(Heading::Named(format!("{name} {w}")));
            }
        }
    }
    None
}

fn is_end_heading(line: &str, naming: &Naming) -> bool {
    let l = line
        .trim()
        .trim_end_matches(['.', ':'])
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .to_lowercase();
    naming.end_headings.iter().any(|h| l == h.to_lowercase())
}

/// The experiments of `text`. A paper with fewer than two headed experiments has one
/// experiment that owns nothing: all of its text is shared.
pub fn detect(text: &str, naming: &Naming) -> Vec<Experiment> {
    // Every heading line with its byte offset, and the end headings.
    let mut heads: Vec<(usize, Heading, &str)> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut pos = 0usize;
    for line in text.split('\n') {
        if let Some(h) = heading_of(line, naming) {
            heads.push((pos, h, line.trim()));
        } else if is_end_heading(line, naming) {
            ends.push(pos);
        }
        pos += line.len() + 1;
    }
    // The first run 1, 2, …, k fixes how many numbered experiments there are; a plural
    // heading that goes on from it (`Experiment 1` … `Experiments 2 and 3`) extends it.
    let mut k = 0u32;
    for (_, h, _) in &heads {
        match h {
            Heading::Numbered(n) if *n == k + 1 => k += 1,
            Heading::Several(list) if k >= 1 && list.first() == Some(&(k + 1)) => {
                k = list.last().copied().unwrap_or(k);
            }
            _ => {}
        }
    }
    let mut named: Vec<String> = Vec::new();
    if k >= 1 {
        for (_, h, _) in &heads {
            if let Heading::Named(n) = h {
                let key = n.to_lowercase();
                if !named.iter().any(|m| m.to_lowercase() == key) {
                    named.push(n.clone());
                }
            }
        }
    }
    let total = k as usize + named.len();
    if total < 2 {
        return vec![Experiment {
            number: 1,
            label: String::new(),
            spans: Vec::new(),
        }];
    }
    let mut exps: Vec<Experiment> = (1..=k)
        .map(|n| Experiment {
            number: n,
            label: String::new(),
            spans: Vec::new(),
        })
        .chain(named.iter().enumerate().map(|(i, n)| Experiment {
            number: k + 1 + i as u32,
            label: n.clone(),
            spans: Vec::new(),
        }))
        .collect();
    // Each accepted heading opens a span up to the next heading or end heading. Numbered
    // headings count once the first run has started (`Experiment 1` seen).
    let mut started = false;
    for (i, (start, h, line)) in heads.iter().enumerate() {
        let owners: Vec<usize> = match h {
            Heading::Numbered(n) if *n >= 1 && *n <= k => {
                if *n == 1 {
                    started = true;
                }
                if !started {
                    continue;
                }
                vec![(*n - 1) as usize]
            }
            Heading::Several(list) if started => list
                .iter()
                .filter(|&&n| n >= 1 && n <= k)
                .map(|&n| (n - 1) as usize)
                .collect(),
            Heading::Named(name) if started => {
                let key = name.to_lowercase();
                match named.iter().position(|m| m.to_lowercase() == key) {
                    Some(j) => vec![k as usize + j],
                    None => continue,
                }
            }
            _ => continue,
        };
        let next_head = heads.get(i + 1).map_or(text.len(), |h| h.0);
        let next_end = ends
            .iter()
            .copied()
            .find(|&e| e > *start)
            .unwrap_or(text.len());
        let end = next_head.min(next_end);
        for idx in owners {
            let e = &mut exps[idx];
            if e.label.is_empty() {
                e.label = line.to_string();
            }
            e.spans.push(*start..end);
        }
    }
    exps
}

/// Phrases by which an experiment's own text says it repeats an earlier one's methods.
const SAME_AS: [&str; 5] = [
    "same as",
    "identical to",
    "as in",
    "similar to",
    "as described for",
];

/// The earlier experiment whose methods `exp` says it repeats (`The apparatus and procedures
/// were the same as in Experiment 1`), found in its own text: the first mention of a lower
/// experiment number within a few words after one of the [`SAME_AS`] phrases.
pub fn repeats(text: &str, exp: &Experiment, naming: &Naming) -> Option<u32> {
    for span in &exp.spans {
        let own = text.get(span.clone())?.to_ascii_lowercase();
        let own: String = own.split_whitespace().collect::<Vec<_>>().join(" ");
        for phrase in SAME_AS {
            let mut from = 0;
            while let Some(at) = own[from..].find(phrase) {
                let after = from + at + phrase.len();
                let window: String = own[after..].chars().take(40).collect();
                for w in &naming.heading_words {
                    let w = w.to_ascii_lowercase();
                    if let Some(k) = window.find(&w) {
                        let rest = window[k + w.len()..].trim_start();
                        if let Some((n, _)) = parse_number(rest) {
                            if n < exp.number {
                                return Some(n);
                            }
                        }
                    }
                }
                from = after;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    fn naming() -> Naming {
        Schema::load_default().expect("schema").experiments
    }

    #[test]
    fn numbered_headings_in_methods_and_results_each_open_a_span() {
        let text = "Title\nIntroduction\nIn Experiment 1, we asked.\nExperiment 2 was designed to test.\nGeneral Methods\nTwenty people took part.\nExperiment 1: Cursor feedback\nTwelve people.\nExperiment 2. Vector feedback\nSixteen people.\nResults\nExperiment 1\nr1\nExperiment 2 Results\nr2\nGeneral Discussion\nd\n";
        let e = detect(text, &naming());
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].label, "Experiment 1: Cursor feedback");
        assert_eq!(e[0].spans.len(), 2);
        let own0 = &text[e[0].spans[0].clone()];
        assert!(own0.contains("Twelve people") && !own0.contains("Sixteen"));
        let last = e[1].spans.last().expect("span");
        assert!(text[last.clone()].contains("r2") && !text[last.clone()].contains("d\n"));
        // general methods are shared
        let shared = text.find("Twenty").expect("shared text");
        assert!(!e[0].owns(shared) && !e[1].owns(shared));
    }

    #[test]
    fn a_plural_heading_opens_a_span_that_its_experiments_share() {
        let text = "Methods\nThree experiments were conducted.\nExperiment 1\nYoung people reached.\nExperiments 2 and 3\nExperiment 2 (Fig. 3) consisted of a baseline block.\nExperiment 3 (Fig. 3) was identical to Experiment 2.\nResults\nDiscussion\nd\n";
        let e = detect(text, &naming());
        assert_eq!(e.len(), 3, "{e:?}");
        let at = text.find("consisted").expect("own text");
        assert!(!e[0].owns(at) && e[1].owns(at) && e[2].owns(at));
        assert_eq!(e[2].label, "Experiments 2 and 3");
        let n = naming();
        assert_eq!(
            heading_of("Experiments 1–3", &n),
            Some(Heading::Several(vec![1, 2, 3]))
        );
        assert_eq!(
            heading_of("Experiments 1, 2 and 3: Methods", &n),
            Some(Heading::Several(vec![1, 2, 3]))
        );
        // Two experiments compared in running text, or not consecutive: no section.
        assert_eq!(heading_of("Experiments 1 and 2 showed that", &n), None);
        assert_eq!(heading_of("Experiments 1 and 3", &n), None);
        assert_eq!(heading_of("Experimental design", &n), None);
    }

    #[test]
    fn an_experiment_that_repeats_an_earlier_one_says_which() {
        let text = "Methods\nExperiment 1: A\nTwelve people used a tablet.\nExperiment 2: B\nThe apparatus and procedures in experiment 2 were the same as in\nExperiment 1, except the feedback.\nExperiment 3: C\nNew people.\n";
        let e = detect(text, &naming());
        assert_eq!(e.len(), 3);
        assert_eq!(repeats(text, &e[1], &naming()), Some(1));
        assert_eq!(repeats(text, &e[2], &naming()), None);
        assert_eq!(repeats(text, &e[0], &naming()), None);
    }

    #[test]
    fn running_text_is_not_a_heading() {
        let n = naming();
        for line in [
            "Experiment 2 was designed to examine",
            "Experiment 1, participants reached",
            "Experiment 2 (Fig. 3) consisted of a baseline",
            "Experimental procedures",
            "experiment 1 was run online",
            "Experiment 1 procedures were identical to",
            "Experiment 2 and",
            "Experiment 3 results",
        ] {
            assert_eq!(heading_of(line, &n), None, "{line}");
        }
        for line in [
            "Experiment 1",
            "Experiment 3: Single target vector based feedback",
            "Experiment 1. Experiment 1 was designed to compare",
            "Exp. 1",
            "Experiment 2 Results",
            "Experiment 1 procedures",
            "Experiment 2 analyses",
            "Experiment 3 methods and analyses",
        ] {
            assert!(
                matches!(heading_of(line, &n), Some(Heading::Numbered(_))),
                "{line}"
            );
        }
        assert_eq!(
            heading_of("Clamp-only experiment. The design and logic of", &n),
            Some(Heading::Named("Clamp-only experiment".into()))
        );
    }

    #[test]
    fn named_experiments_follow_the_numbered_ones_and_one_experiment_owns_nothing() {
        let text = "Methods\nExperiment 1. Experiment 1 was designed.\na\nExperiment 2. In Experiment 2 we.\nb\nClamp-only experiment. The design rests.\nc\n";
        let e = detect(text, &naming());
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].number, 3);
        assert_eq!(e[2].label, "Clamp-only experiment");
        let single = detect("Methods\nTwenty people.\nExperiment 1\nx\n", &naming());
        assert_eq!(single.len(), 1);
        assert!(single[0].spans.is_empty());
    }
}
