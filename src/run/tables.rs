//! Tables that the text layer wrote column by column, read back as rows.
//!
//! A PDF table is a grid of separately placed text runs. Our text layer orders runs by column
//! blocks, so a table such as Schween et al. 2018's Table 1 comes out as its caption, then each
//! column as a header followed by one line per row, the columns parted by blank lines:
//!
//! ```text
//! Table 1. Overview of included and excluded participants …
//!
//! Experiment
//!
//! 1
//! 2
//!
//! n Analyzed
//!
//! 22
//! 20
//! ```
//!
//! Read as prose, that is a run of unlabeled numbers: no sentence says that experiment 2
//! analyzed 20 participants, so a per-experiment count or age that a paper gives only in its
//! table is lost. This module finds such tables and rebuilds each row with its column
//! headers (`Experiment 2: n Analyzed 20; Age, yr 21 (19; 30)`), which the question module
//! then shows and quotes like any sentence, with the table's place in the text as its span.
//!
//! It reads only tables it can read without guessing: every column has a short header and
//! exactly the same number of cells, one per line. A ragged column (an empty cell the layer
//! dropped), a cell broken over two lines, or a grid the layer wrote row by row ends the table
//! where it stops being regular; a table with fewer than [`MIN_COLUMNS`] regular columns is
//! left as the text has it.

/// One row of a column-wise table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// Byte range of the whole table (caption to last cell) in the text: the row's span.
    pub start: usize,
    pub end: usize,
    /// `Table 1. Overview of …`, as printed (its first line).
    pub caption: String,
    /// The first column's header and this row's cell in it (`Experiment`, `2`).
    pub label: (String, String),
    /// The other columns: (header, this row's cell).
    pub cells: Vec<(String, String)>,
}

/// Fewest columns (the label column included) read as a table.
pub const MIN_COLUMNS: usize = 3;
/// Rows a table may have: a table of one row is no grid, and a column of more lines than this
/// is more likely a paragraph of short lines.
const MAX_ROWS: usize = 40;
/// Longest header line and cell (characters): column text is short, prose lines are not.
const MAX_HEADER_CHARS: usize = 60;
const MAX_CELL_CHARS: usize = 40;
/// Most lines a header may wrap over (`No. of Exclusions` / `(movement)`).
const MAX_HEADER_LINES: usize = 3;

/// A block of consecutive non-blank lines: its lines and its byte range.
struct Block<'t> {
    lines: Vec<&'t str>,
    end: usize,
}

/// The blocks of `text[from..]`, up to the first of `limit` blocks.
fn blocks(text: &str, from: usize, limit: usize) -> Vec<Block<'_>> {
    let mut out: Vec<Block> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut at = from;
    let mut end = from;
    for line in text[from..].split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if !current.is_empty() {
                out.push(Block {
                    lines: std::mem::take(&mut current),
                    end,
                });
                if out.len() >= limit {
                    return out;
                }
            }
        } else {
            current.push(trimmed);
            end = at + line.trim_end().len();
        }
        at += line.len();
    }
    if !current.is_empty() {
        out.push(Block {
            lines: current,
            end,
        });
    }
    out
}

/// Whether `line` opens a table's caption: `Table 3.`, `Table 2:`, `Table 1 Patients with…`,
/// never a sentence that cites one (`Table 1). Note that…`, `Table 1 presents…`).
fn is_caption(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("Table ") else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    let tail = tail.strip_prefix(['.', ':']).unwrap_or(tail);
    let tail = tail.trim_start();
    // `Table 1`, alone on its line, or followed by a capitalised caption; a lower-case verb
    // after it (`Table 1 presents`) is running text.
    tail.is_empty() || tail.chars().next().is_some_and(char::is_uppercase)
}

fn header_ok(b: &Block) -> bool {
    (1..=MAX_HEADER_LINES).contains(&b.lines.len())
        && b.lines
            .iter()
            .all(|l| l.chars().count() <= MAX_HEADER_CHARS && l.chars().any(char::is_alphabetic))
}

fn cells_ok(b: &Block, rows: usize) -> bool {
    b.lines.len() == rows && b.lines.iter().all(|l| l.chars().count() <= MAX_CELL_CHARS)
}

/// The rows of the column-wise table whose caption line starts at byte `at`, if it is one.
fn table_at(text: &str, at: usize) -> Vec<TableRow> {
    let caption_line = text[at..].lines().next().unwrap_or("").trim();
    let caption_end = at + text[at..].find('\n').unwrap_or(text.len() - at);
    // The caption may wrap; the columns start after the first blank line.
    let Some(gap) = text[caption_end..].find("\n\n") else {
        return Vec::new();
    };
    let columns_from = caption_end + gap;
    let found = blocks(text, columns_from, 2 * 64);
    let mut columns: Vec<(String, &Block)> = Vec::new();
    let mut rows = 0;
    let mut k = 0;
    while k + 1 < found.len() {
        let (head, body) = (&found[k], &found[k + 1]);
        if !header_ok(head) {
            break;
        }
        if columns.is_empty() {
            rows = body.lines.len();
            if !(2..=MAX_ROWS).contains(&rows) {
                break;
            }
        }
        // A header never has as many lines as a column has cells (that would be a column of
        // cells read as a header), and a column holds exactly one cell per row.
        if head.lines.len() >= rows || !cells_ok(body, rows) {
            break;
        }
        columns.push((head.lines.join(" "), body));
        k += 2;
    }
    if columns.len() < MIN_COLUMNS {
        return Vec::new();
    }
    let end = columns.last().map_or(at, |(_, b)| b.end);
    let (label_head, label_col) = &columns[0];
    (0..rows)
        .map(|r| TableRow {
            start: at,
            end,
            caption: caption_line.to_string(),
            label: (label_head.clone(), label_col.lines[r].to_string()),
            cells: columns[1..]
                .iter()
                .map(|(h, b)| (h.clone(), b.lines[r].to_string()))
                .collect(),
        })
        .collect()
}

/// Every row of every column-wise table of `text`, in the order of the text.
pub fn rows(text: &str) -> Vec<TableRow> {
    let mut out = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if is_caption(line.trim_start()) {
            out.extend(table_at(text, at + (line.len() - line.trim_start().len())));
        }
        at += line.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHWEEN: &str = "screen (Samsung 2233RZ) running at 120 Hz.\n\n\
Table 1. Overview of included and excluded participants and trials for all experiments\n\n\
Experiment\n\n1\n2\n3\n4\n\nn Analyzed\n\n22\n20\n19\n21\n\nMen\n\n7\n4\n7\n9\n\n\
Age, yr [mean (min; max)]\n\n25 (20; 30)\n21 (19; 30)\n24 (19; 29)\n24 (20; 29)\n\n\
No. of Exclusions\n(movement)\n\n462 (5.5%)\n353 (4.1%)\n401 (4.9%)\n320 (3.5%)\n\n\
Reasons for excluding participants: a did not finish testing (because of bug in software); \
b did not meet inclusion criteria.\n\nA\n\nB\n\nRRID:SCR_002881). On movement practice trials";

    #[test]
    fn a_column_wise_table_is_read_back_as_rows_with_their_headers() {
        let rows = rows(SCHWEEN);
        assert_eq!(rows.len(), 4);
        let second = &rows[1];
        assert_eq!(second.label, ("Experiment".to_string(), "2".to_string()));
        assert_eq!(
            second.cells,
            vec![
                ("n Analyzed".to_string(), "20".to_string()),
                ("Men".to_string(), "4".to_string()),
                (
                    "Age, yr [mean (min; max)]".to_string(),
                    "21 (19; 30)".to_string()
                ),
                (
                    "No. of Exclusions (movement)".to_string(),
                    "353 (4.1%)".to_string()
                ),
            ]
        );
        assert!(second.caption.starts_with("Table 1. Overview"));
        // The span runs from the caption to the last cell read, not into the footnote.
        assert_eq!(&SCHWEEN[second.start..second.start + 8], "Table 1.");
        assert!(SCHWEEN[..second.end].ends_with("320 (3.5%)"));
    }

    #[test]
    fn ragged_columns_and_citations_of_a_table_are_no_table() {
        // Wong et al.: the "Exp 2" column lost two empty cells, so it has 12 lines for 14
        // patients; only two regular columns remain before it, too few to read.
        let ragged = "Table 1 Patients with cerebellar degeneration\n\nvisible during the \
outward reach\n\nPatient\n\nP1\nP2\nP3\n\nExp 2\n\nY\nY\n\nAge\n\n73\n71\n63\n";
        assert!(rows(ragged).is_empty());
        let cited =
            "as in\nTable 1). Note that\n\nExperiment\n\n1\n2\n\nn\n\n3\n4\n\nMen\n\n1\n2\n";
        assert!(rows(cited).is_empty());
        assert!(!is_caption("Table 1 presents the correlation matrix"));
        assert!(is_caption("Table 2: Demographics"));
        assert!(is_caption("Table 1"));
    }

    #[test]
    fn a_table_ends_where_its_columns_stop_being_regular() {
        // Bond & Taylor: a row-wise grid whose first block is a list of labels and whose
        // next blocks are cells of one row each: no regular column pairs.
        let rowwise = "Table 1. Average endpoint hand angles\n\nphase (excluding the exposure \
phase)\n\nExperiment phase\nBaseline\nHand angle\nAim\n\nStructure-report\n\n2.98 ± 6.36\n0 ± 0\n\n\
-0.06 ± 1.38\n";
        assert!(rows(rowwise).is_empty());
    }
}
