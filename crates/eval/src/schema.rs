//! The parameter schema (`configs/schema.toml`): which columns the parameter table has, what each
//! one means, and how a raw cell is read.
//!
//! Why a file and not code: the meaning of a field (its type, its vocabulary, its units, its
//! baseline answer) is domain knowledge that researchers edit; the scorer and the extraction
//! prompt must agree on it. Rust code here only knows the *types* (`FieldKind`); nothing
//! dispatches on a field's name.
//!
//! Reading a cell is [`Field::parse`] (raw text -> typed [`Value`]); [`Field::normalize`] renders
//! that value back as canonical text, which the extraction run writes into its table.

mod value;

pub use value::{NumItem, Value};

/// A number as every cell writes it: float noise from unit conversion removed, no trailing
/// zeros (`0.5`, `24`, `22.5`).
pub fn format_number(v: f64) -> String {
    value::fmt_num(v)
}

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The schema shipped with the repository, relative to the crate root.
pub const DEFAULT_SCHEMA: &str = "configs/schema.toml";

/// The root of the source tree this crate was built in (the workspace root, two levels above
/// `crates/eval`): `configs/` and the `../shared` corpus are found from it.
pub fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The same file, compiled in.
const EMBEDDED_SCHEMA: &str = include_str!("../../../configs/schema.toml");

/// How a field's cells are read and compared. Declared per field in the schema file.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// Parsed integers equal (`n_total`).
    Integer,
    /// Numbers within a relative `tolerance`; ranges and multisets of numbers (`age_mean`).
    Number { tolerance: f64 },
    /// Distinct magnitudes after unit conversion (`perturbation_magnitude`, `feedback_delay`).
    NumberSet,
    /// A set of directions (degrees mod 360) or a count of locations.
    Locations { count_words: Vec<String> },
    /// Items mapped through the vocabulary, compared as sets.
    Category,
    /// Token F1 over content words; never in the headline score.
    FreeText,
}

/// Whether a column identifies the row or describes the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Identifies the row (study_id, title, ...): used for alignment, never scored.
    Identity,
    /// A design parameter (scored unless `scored = false`).
    Parameter,
}

/// How per-experiment predictions merge when the gold annotates a paper as one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Lists and categories are unioned; for locations, the largest count wins over a list.
    Union,
    /// Per-experiment counts are added (`n_total`).
    Sum,
}

/// One vocabulary entry: the canonical term and the spellings that mean it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Term {
    pub canonical: String,
    #[serde(default)]
    pub synonyms: Vec<String>,
    /// Phrases that show a sentence states this term without naming it the way a cell would
    /// (`"stylus"` for a tablet): evidence for the term, never read as a cell's value.
    #[serde(default)]
    pub cues: Vec<String>,
    /// Phrases of running text in which a spelling of the term (a synonym, a cue, or the
    /// canonical name) says nothing of it: the spelling alone (`old` in `18-32 years old`,
    /// `both` in `both groups`) or a longer phrase over it (`no feedback washout`). A question
    /// never offers the term on a spelling one of them stands over. Each holds a spelling.
    #[serde(default)]
    pub not_evidence: Vec<String>,
    /// The term of the same field that this one is a kind of (`kinarm` is a
    /// `robot_manipulandum`): a sentence naming both (`a robotic manipulandum (KINARM
    /// End-Point)`) states this one, and is not offered the broader one beside it.
    #[serde(default)]
    pub broader: Option<String>,
}

/// A unit: `factor` converts a value in this unit to the field's first (base) unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Unit {
    pub symbol: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub factor: f64,
}

/// Schema-wide word lists, shared by every field (held behind an `Arc` so that a `Field` can
/// parse a cell on its own, without a reference back to the `Schema`).
#[derive(Debug, Clone)]
pub struct Lexicon {
    /// Lower-cased cell values meaning "unknown".
    pub empty: HashSet<String>,
    /// Item separators, tried in order.
    pub delimiters: Vec<String>,
    /// Words dropped from number sets.
    pub direction_words: HashSet<String>,
    /// Words dropped before free-text token F1.
    pub stopwords: HashSet<String>,
    /// Words that make the number after them a spread (`± 1.8`, `SD 3.24`), never a value of
    /// a field that does not name one of them among its `near`/`near_before` words.
    pub spread_words: HashSet<String>,
    /// Unit words of measured quantities (`°`, `%`, `s`, `cm`, `Hz`), lower-cased: the number
    /// before one is that quantity, never a value of a field without that unit (`remained
    /// on-screen for 1 s. Participants…` counts no one).
    pub measure_words: HashSet<String>,
    /// Words that deny a term spelled at most three words after them (`did not need to stop on
    /// the target` is no evidence of stopping at the target).
    pub negation_words: HashSet<String>,
    /// Openings of a sentence that gives an example rather than the study's design (`For
    /// example, with a 45° rotation, participants…`), lower-cased.
    pub example_openers: Vec<Vec<String>>,
    /// Phrases that make a sentence a report of earlier work (`have been shown`, `previous
    /// studies`), lower-cased: its numbers and terms are that work's design, not this study's.
    pub prior_work_phrases: Vec<Vec<String>>,
    /// Phrases that make a sentence speak of this study (`we`, `this experiment`), lower-cased:
    /// a prior-work phrase beside one does not set the sentence aside.
    pub own_work_phrases: Vec<Vec<String>>,
    /// Words that end a denial before a spelling (`only`, `see`), lower-cased.
    pub negation_breaks: HashSet<String>,
    /// Words of running text that join the items of a list beside the `delimiters` (`7.5°,
    /// 45°, or 95°`), lower-cased. Cells are never split on them.
    pub list_words: HashSet<String>,
    /// The experiments' heading words without a trailing full stop (`experiment`, `exp`): the
    /// number after one is a label (`Experiment 1 Participants`), never a value.
    pub label_words: HashSet<String>,
    /// Words that make a label after them a reference (`as in Experiment 1`), lower-cased.
    pub label_references: HashSet<String>,
    /// Nouns that a number after them labels (`block 1`, `Bout 2`, `Figure 3`), lower-cased.
    pub label_nouns: HashSet<String>,
    /// Words by which a sentence hands its items out one by one (`30° and 60° rotations,
    /// respectively`), lower-cased.
    pub distributive_words: HashSet<String>,
    /// Word-level spelling fixes.
    pub typos: HashMap<String, String>,
    /// Token-F1 threshold for free text.
    pub free_text_threshold: f64,
}

/// One column of the parameter table.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub description: String,
    pub kind: FieldKind,
    pub role: Role,
    /// False for identity columns and for columns marked `scored = false`.
    pub scored: bool,
    pub merge: Merge,
    /// What the experiments of one paper share unless one says otherwise (participant pool,
    /// apparatus): an experiment that states no value takes the nearest earlier experiment's,
    /// with that value's quote, marked inherited. Never a per-experiment count.
    pub inherit: bool,
    /// Values stated per experiment in one shared sentence (`80 subjects … for Experiment 1,
    /// and 26 … for Experiment 2`): such a sentence offers each experiment only its own
    /// clause's numbers. True for per-experiment counts (`merge = "sum"`) unless the schema
    /// says otherwise.
    pub by_clause: bool,
    /// One of the fields that show whether an extractor reads the paper.
    pub reads_paper: bool,
    /// The constant answer of the honesty baseline, if the baseline answers this field.
    pub baseline: Option<String>,
    pub vocabulary: Vec<Term>,
    /// First unit = base unit (factor 1 by convention, but any factor works).
    pub units: Vec<Unit>,
    /// Which question of an experiment asks for this field (`participants`, `feedback`...):
    /// fields of one group are asked together. `None`: the field is not asked.
    pub group: Option<String>,
    /// Words that mark a sentence as likely to state this field (`participants` for a sample
    /// size): used to retrieve the sentences a question shows.
    pub cues: Vec<String>,
    /// For number fields: words of which one must stand within a few words of a number for it
    /// to be a value of this field (`N`, `participants` for a sample size; `age`, `years` for an
    /// age). Empty: the field's units and count words, else its cues.
    pub near: Vec<String>,
    /// Like `near`, but the word must stand *before* the number with no other number between
    /// (`n = 20`, `a total of 94`).
    pub near_before: Vec<String>,
    /// Like `near`, but the word must stand *after* the number with no other number between:
    /// a count attaches to the noun that follows it (`80 human subjects`), so `Experiment 1,
    /// and 26 subjects` offers 26, never 1.
    pub near_after: Vec<String>,
    /// Words that bind a number (as `near_before`/`near_after` do) to something else than this
    /// field's value: `separated by 45°` is a spacing and `45° clockwise` a rotation, neither
    /// a target's direction.
    pub not_near_before: Vec<String>,
    /// See `not_near_before`: the word stands after the number (`140° apart`).
    pub not_near_after: Vec<String>,
    /// Phrases that make a sentence state no value of this field at all, wherever they stand
    /// in it: a rule for excluding trials (`hand angles ±90° from the target were excluded`)
    /// names angles that are no target direction.
    pub never_with: Vec<String>,
    lexicon: Arc<Lexicon>,
    /// Normalized spelling -> index into `vocabulary`.
    term_index: HashMap<String, usize>,
    /// Lower-cased unit spelling -> factor to the base unit.
    unit_index: HashMap<String, f64>,
}

/// The whole schema: fields in table column order plus the shared lexicon.
#[derive(Debug, Clone)]
pub struct Schema {
    pub path: PathBuf,
    pub version: u32,
    /// How experiments are named in a paper.
    pub experiments: Experiments,
    fields: Vec<Field>,
    lexicon: Arc<Lexicon>,
}

// ----- file format (serde) -----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    version: u32,
    #[serde(default)]
    empty: Vec<String>,
    #[serde(default)]
    delimiters: Vec<String>,
    #[serde(default)]
    direction_words: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    spread_words: Vec<String>,
    #[serde(default)]
    measure_words: Vec<String>,
    #[serde(default)]
    negation_words: Vec<String>,
    #[serde(default)]
    example_openers: Vec<String>,
    #[serde(default)]
    prior_work_phrases: Vec<String>,
    #[serde(default)]
    own_work_phrases: Vec<String>,
    #[serde(default)]
    negation_breaks: Vec<String>,
    #[serde(default)]
    list_words: Vec<String>,
    #[serde(default)]
    label_nouns: Vec<String>,
    #[serde(default)]
    distributive_words: Vec<String>,
    #[serde(default = "default_threshold")]
    free_text_threshold: f64,
    #[serde(default)]
    typos: BTreeMap<String, String>,
    #[serde(default)]
    experiments: Experiments,
    #[serde(default)]
    field: Vec<RawField>,
}

/// How a paper names its experiments (`[experiments]` in the schema file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiments {
    /// Words that, followed by a number, head an experiment's section (`Experiment 2`,
    /// `Study 1`, `Exp. 3`); compared case-insensitively.
    #[serde(default = "default_heading_words")]
    pub heading_words: Vec<String>,
    /// Headings that end the experiments (the text after them is shared again):
    /// `General Discussion`, compared case-insensitively at the start of a line.
    #[serde(default)]
    pub end_headings: Vec<String>,
    /// Words that make an experiment's name a reference rather than the sentence's subject
    /// when they stand at most three words before it (`as in Experiment 1`, `identical to
    /// Experiment 2`); compared case-insensitively.
    #[serde(default)]
    pub reference_words: Vec<String>,
    /// Lower-case words that may follow `Experiment N` on a heading line of their own
    /// (`Experiment 2 procedures`, `Experiment 1 analyses`): such a line opens the
    /// experiment's section like `Experiment 2: …`; compared case-insensitively.
    #[serde(default)]
    pub section_words: Vec<String>,
}

fn default_heading_words() -> Vec<String> {
    vec!["experiment".into()]
}

impl Default for Experiments {
    fn default() -> Self {
        Experiments {
            heading_words: default_heading_words(),
            end_headings: Vec::new(),
            reference_words: Vec::new(),
            section_words: Vec::new(),
        }
    }
}

fn default_threshold() -> f64 {
    0.5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scored: Option<bool>,
    #[serde(default)]
    merge: Option<String>,
    #[serde(default)]
    inherit: bool,
    #[serde(default)]
    by_clause: Option<bool>,
    #[serde(default)]
    reads_paper: bool,
    #[serde(default)]
    baseline: Option<String>,
    #[serde(default)]
    tolerance: Option<f64>,
    #[serde(default)]
    count_words: Vec<String>,
    #[serde(default)]
    term: Vec<Term>,
    #[serde(default)]
    unit: Vec<Unit>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    cues: Vec<String>,
    #[serde(default)]
    near: Vec<String>,
    #[serde(default)]
    near_before: Vec<String>,
    #[serde(default)]
    near_after: Vec<String>,
    #[serde(default)]
    not_near_before: Vec<String>,
    #[serde(default)]
    not_near_after: Vec<String>,
    #[serde(default)]
    never_with: Vec<String>,
}

impl Schema {
    /// `configs/schema.toml` of this crate (an absolute path, so it works from any directory
    /// when running from the source tree).
    pub fn default_path() -> PathBuf {
        source_root().join(DEFAULT_SCHEMA)
    }

    /// The default schema: `configs/schema.toml` of the source tree when it exists (so edits
    /// take effect without a rebuild), else the copy compiled into the binary (so an installed
    /// `paramx` works from any directory).
    pub fn load_default() -> Result<Schema> {
        let path = Self::default_path();
        if path.exists() {
            Self::load(&path)
        } else {
            Self::from_toml(EMBEDDED_SCHEMA, Path::new("<built-in configs/schema.toml>"))
                .context("invalid built-in schema")
        }
    }

    /// Load and validate a schema file.
    pub fn load(path: impl AsRef<Path>) -> Result<Schema> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read schema file {}", path.display()))?;
        Self::from_toml(&text, path)
            .with_context(|| format!("invalid schema file {}", path.display()))
    }

    /// Parse a schema from TOML text; `path` is only recorded for messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Schema> {
        let raw: RawSchema = toml::from_str(text)?;
        if raw.version != 1 {
            bail!(
                "unsupported schema version {} (this paramx reads version 1)",
                raw.version
            );
        }
        if !(0.0..=1.0).contains(&raw.free_text_threshold) {
            bail!("free_text_threshold must be within [0, 1]");
        }
        let lower = |v: Vec<String>| v.into_iter().map(|s| s.trim().to_lowercase()).collect();
        // Phrases matched word by word, split once here rather than at every sentence.
        let phrases = |v: Vec<String>| -> Vec<Vec<String>> {
            v.into_iter()
                .map(|p| {
                    p.split_whitespace()
                        .map(str::to_lowercase)
                        .collect::<Vec<_>>()
                })
                .filter(|p| !p.is_empty())
                .collect()
        };
        let lexicon = Arc::new(Lexicon {
            empty: lower(raw.empty),
            delimiters: raw
                .delimiters
                .into_iter()
                .map(|d| d.to_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            direction_words: lower(raw.direction_words),
            stopwords: lower(raw.stopwords),
            spread_words: lower(raw.spread_words),
            measure_words: lower(raw.measure_words),
            negation_words: lower(raw.negation_words),
            example_openers: phrases(raw.example_openers),
            prior_work_phrases: phrases(raw.prior_work_phrases),
            own_work_phrases: phrases(raw.own_work_phrases),
            negation_breaks: lower(raw.negation_breaks),
            list_words: lower(raw.list_words),
            label_words: raw
                .experiments
                .heading_words
                .iter()
                .map(|w| w.trim().trim_end_matches('.').to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            label_references: lower(raw.experiments.reference_words.clone()),
            label_nouns: lower(raw.label_nouns),
            distributive_words: lower(raw.distributive_words),
            typos: raw
                .typos
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v.to_lowercase()))
                .collect(),
            free_text_threshold: raw.free_text_threshold,
        });
        let mut fields = Vec::with_capacity(raw.field.len());
        let mut seen = HashSet::new();
        for rf in raw.field {
            if !seen.insert(rf.name.clone()) {
                bail!("field `{}` is declared twice", rf.name);
            }
            let name = rf.name.clone();
            fields.push(Field::build(rf, &lexicon).with_context(|| format!("field `{name}`"))?);
        }
        if fields.is_empty() {
            bail!("the schema declares no [[field]]");
        }
        if raw
            .experiments
            .heading_words
            .iter()
            .any(|w| w.trim().is_empty())
        {
            bail!("[experiments] heading_words holds an empty word");
        }
        Ok(Schema {
            path: path.to_path_buf(),
            version: raw.version,
            experiments: raw.experiments,
            fields,
            lexicon,
        })
    }

    /// All fields, in table column order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Fields that are scored (design parameters with `scored` not false).
    pub fn scored_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.scored)
    }

    /// Look a field up by column name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Fields the extraction run asks the model for: every non-identity column, scored or not.
    pub fn parameters(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.role == Role::Parameter)
    }

    /// The column names, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }
}

impl Field {
    /// Whether `word` (lower-cased) is a function word of the schema's lexicon (`of`, `over`):
    /// what breaks the bond between a number and a `near_before`/`near_after` word.
    pub fn is_stopword(&self, word: &str) -> bool {
        self.lexicon.stopwords.contains(word)
    }

    /// Whether a sentence (its `words`, lower-cased) states no design value of this study: it
    /// opens with an example opener (`For example, …`: it illustrates), or holds a phrase of
    /// earlier work (`… delays have been shown to attenuate adaptation`: it reports another
    /// study's design) and none of this study (`we`, `this experiment`).
    pub fn states_other_work(&self, words: &[String]) -> bool {
        let holds = |list: &[Vec<String>]| {
            list.iter()
                .any(|p| words.windows(p.len()).any(|win| win == p.as_slice()))
        };
        let lex = &self.lexicon;
        lex.example_openers.iter().any(|o| words.starts_with(o))
            || (holds(&lex.prior_work_phrases) && !holds(&lex.own_work_phrases))
    }

    /// Whether `word` (lower-cased) ends a denial before a spelling (`only`, `see`).
    pub fn is_negation_break(&self, word: &str) -> bool {
        self.lexicon.negation_breaks.contains(word)
    }

    /// Whether `word` (lower-cased) denies what follows it (`not`, `never`).
    pub fn is_negation(&self, word: &str) -> bool {
        self.lexicon.negation_words.contains(word)
    }

    /// Whether `word` (lower-cased) marks the number after it as a spread (`±`, `sd`) that is
    /// not this field's value: true unless the field names it among its `near` or
    /// `near_before` words (a standard deviation field reads exactly those numbers).
    pub fn is_foreign_spread(&self, word: &str) -> bool {
        self.lexicon.spread_words.contains(word)
            && !self
                .near
                .iter()
                .chain(&self.near_before)
                .any(|w| w.eq_ignore_ascii_case(word))
    }

    /// Whether `word` (lower-cased), written right after a number, makes it a measured
    /// quantity in a unit this field does not have (`1 s` for a count, `45°` for an age): no
    /// value of this field.
    pub fn is_foreign_measure(&self, word: &str) -> bool {
        self.lexicon.measure_words.contains(word) && self.unit_factor(word).is_none()
    }

    /// Whether `word` (lower-cased) heads an experiment (`experiment`, `study`, `exp`): the
    /// number after it is the experiment's label.
    pub fn is_label_word(&self, word: &str) -> bool {
        self.lexicon.label_words.contains(word)
    }

    /// Whether `words` (a sentence's, lower-cased) hand their items out one by one (`30° and
    /// 60° rotations, respectively`): a list there is no one set.
    pub fn distributes(&self, words: &[String]) -> bool {
        words
            .iter()
            .any(|w| self.lexicon.distributive_words.contains(w))
    }

    /// Whether `word` (lower-cased) is a noun that the number after it labels (`block 1`,
    /// `Bout 2`, `Figure 3`): that number is a name, never a value.
    pub fn is_label_noun(&self, word: &str) -> bool {
        self.lexicon.label_nouns.contains(word)
    }

    /// Whether `word` (lower-cased) before a label makes it a reference to that experiment
    /// (`as in Experiment 1`), not the subject of the sentence.
    pub fn is_label_reference(&self, word: &str) -> bool {
        self.lexicon.label_references.contains(word)
    }

    /// Whether `word` (lower-cased, one word of a sentence) may stand between two items of one
    /// list of this field's numbers: a unit spelling (`°`, `deg`), a direction word (`cw`,
    /// `counter` of `counter-clockwise`, `±`), a word among the schema's delimiters (`and`) or
    /// its `list_words` (`or`). Commas are no words: a sentence's `15°, 30°, and 45°` reads
    /// `15 ° 30 ° and 45 °`.
    pub fn joins_list(&self, word: &str) -> bool {
        let lex = &self.lexicon;
        let in_phrase = |phrase: &String| {
            phrase == word
                || phrase
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|part| part == word)
        };
        lex.direction_words.iter().any(in_phrase)
            || lex.delimiters.iter().any(|d| d.trim() == word)
            || lex.list_words.contains(word)
            || self.units.iter().any(|u| {
                std::iter::once(&u.symbol)
                    .chain(&u.aliases)
                    .any(|a| a.eq_ignore_ascii_case(word))
            })
    }

    fn build(rf: RawField, lexicon: &Arc<Lexicon>) -> Result<Field> {
        let kind = match rf.kind.as_str() {
            "integer" => FieldKind::Integer,
            "number" => {
                let tolerance = rf.tolerance.unwrap_or(0.01);
                if !(0.0..1.0).contains(&tolerance) {
                    bail!("tolerance must be within [0, 1)");
                }
                FieldKind::Number { tolerance }
            }
            "number_set" => FieldKind::NumberSet,
            "locations" => FieldKind::Locations {
                count_words: rf.count_words.iter().map(|w| w.to_lowercase()).collect(),
            },
            "category" => FieldKind::Category,
            "free_text" => FieldKind::FreeText,
            other => bail!(
                "unknown type `{other}` (expected integer, number, number_set, locations, category or free_text)"
            ),
        };
        if rf.tolerance.is_some() && !matches!(kind, FieldKind::Number { .. }) {
            bail!("`tolerance` only applies to type = \"number\"");
        }
        if !rf.count_words.is_empty() && !matches!(kind, FieldKind::Locations { .. }) {
            bail!("`count_words` only applies to type = \"locations\"");
        }
        if let FieldKind::Locations { count_words } = &kind {
            if count_words.is_empty() {
                bail!("a locations field needs `count_words` (e.g. [\"targets\"])");
            }
        }
        let role = match rf.role.as_deref() {
            None | Some("parameter") => Role::Parameter,
            Some("identity") => Role::Identity,
            Some(other) => bail!("unknown role `{other}` (expected identity or parameter)"),
        };
        let scored = match (role, rf.scored) {
            (Role::Identity, Some(true)) => bail!("an identity field cannot be scored"),
            (Role::Identity, _) => false,
            (Role::Parameter, s) => s.unwrap_or(true),
        };
        let merge = match rf.merge.as_deref() {
            None | Some("union") => Merge::Union,
            Some("sum") => Merge::Sum,
            Some(other) => bail!("unknown merge `{other}` (expected union or sum)"),
        };
        if rf.inherit && merge == Merge::Sum {
            bail!("a per-experiment count (merge = \"sum\") cannot be inherited");
        }
        let mut field = Field {
            name: rf.name,
            description: rf.description,
            kind,
            role,
            scored,
            merge,
            inherit: rf.inherit,
            by_clause: rf.by_clause.unwrap_or(merge == Merge::Sum),
            reads_paper: rf.reads_paper,
            baseline: rf.baseline,
            vocabulary: rf.term,
            units: rf.unit,
            group: rf.group.filter(|g| !g.trim().is_empty()),
            cues: lowered(&rf.cues),
            near: lowered(&rf.near),
            near_before: lowered(&rf.near_before),
            near_after: lowered(&rf.near_after),
            not_near_before: lowered(&rf.not_near_before),
            not_near_after: lowered(&rf.not_near_after),
            never_with: lowered(&rf.never_with),
            lexicon: Arc::clone(lexicon),
            term_index: HashMap::new(),
            unit_index: HashMap::new(),
        };
        for (i, term) in field.vocabulary.iter().enumerate() {
            for spelling in std::iter::once(&term.canonical).chain(&term.synonyms) {
                let key = value::term_key(spelling, lexicon);
                if key.is_empty() {
                    bail!("term `{}` has an empty spelling", term.canonical);
                }
                if let Some(&j) = field.term_index.get(&key) {
                    if j != i {
                        bail!(
                            "spelling `{spelling}` belongs to both `{}` and `{}`",
                            field.vocabulary[j].canonical,
                            term.canonical
                        );
                    }
                }
                field.term_index.insert(key, i);
            }
            for weak in &term.not_evidence {
                let known = std::iter::once(&term.canonical)
                    .chain(&term.synonyms)
                    .chain(&term.cues)
                    .any(|s| contains_phrase(weak, s));
                if !known {
                    bail!(
                        "term `{}`: not_evidence `{weak}` holds none of its spellings or cues",
                        term.canonical
                    );
                }
            }
        }
        for term in &field.vocabulary {
            if let Some(b) = &term.broader {
                if b == &term.canonical || !field.vocabulary.iter().any(|t| &t.canonical == b) {
                    bail!(
                        "term `{}`: broader `{b}` is no other term of this field",
                        term.canonical
                    );
                }
            }
        }
        for unit in &field.units {
            if !(unit.factor.is_finite() && unit.factor > 0.0) {
                bail!("unit `{}` needs a positive factor", unit.symbol);
            }
            for spelling in std::iter::once(&unit.symbol).chain(&unit.aliases) {
                field
                    .unit_index
                    .insert(spelling.to_lowercase(), unit.factor);
            }
        }
        if let Some(b) = &field.baseline {
            if field.parse(b).is_empty() {
                bail!("baseline `{b}` reads as an empty value");
            }
        }
        Ok(field)
    }

    /// Read a raw cell into a typed value (see the type rules in `configs/schema.toml`).
    pub fn parse(&self, raw: &str) -> Value {
        value::parse(self, raw)
    }

    /// Canonical text for a raw cell: the value read through the vocabulary and units, written
    /// back in one fixed form (`500ms, 2s` -> `0.5 s, 2 s`; `continous` -> `continuous`).
    /// Empty markers become `""`. `normalize` is idempotent and `parse(normalize(x))` compares
    /// equal to `parse(x)`; the extraction run writes this form into its table.
    pub fn normalize(&self, raw: &str) -> String {
        self.parse(raw).render(self)
    }

    /// One line describing the field for an extraction prompt, built only from the schema:
    /// `name: description (one of: a, b, ...; units: s, ms)`.
    pub fn prompt_line(&self) -> String {
        let mut extra = Vec::new();
        if !self.vocabulary.is_empty() {
            let terms: Vec<&str> = self
                .vocabulary
                .iter()
                .map(|t| t.canonical.as_str())
                .collect();
            extra.push(format!("one or more of: {}", terms.join(", ")));
        }
        if !self.units.is_empty() {
            let units: Vec<&str> = self.units.iter().map(|u| u.symbol.as_str()).collect();
            extra.push(format!("units: {}", units.join(", ")));
        }
        if extra.is_empty() {
            format!("{}: {}", self.name, self.description)
        } else {
            format!("{}: {} ({})", self.name, self.description, extra.join("; "))
        }
    }

    /// Whether this field is one that is reported outside the headline score (free text).
    pub fn is_free_text(&self) -> bool {
        self.kind == FieldKind::FreeText
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    /// Canonical term for one already-split item, if the vocabulary knows it.
    pub fn lookup_term(&self, item: &str) -> Option<&str> {
        let key = value::term_key(item, &self.lexicon);
        self.term_index
            .get(&key)
            .map(|&i| self.vocabulary[i].canonical.as_str())
    }

    /// Conversion factor of a unit spelling to the base unit.
    pub fn unit_factor(&self, spelling: &str) -> Option<f64> {
        self.unit_index.get(&spelling.to_lowercase()).copied()
    }

    /// Symbol of the base unit (the first unit listed), if the field has units.
    pub fn base_unit(&self) -> Option<&str> {
        self.units.first().map(|u| u.symbol.as_str())
    }

    pub(crate) fn term_count(&self) -> usize {
        self.vocabulary.len()
    }
}

/// Word lists as the schema's readers compare them: trimmed and lower-cased.
fn lowered(list: &[String]) -> Vec<String> {
    list.iter().map(|c| c.trim().to_lowercase()).collect()
}

/// Whether the words of `phrase` hold the words of `spelling` as one run (case, hyphens and
/// underscores aside): a `not_evidence` phrase must hold a spelling of its term to bar it.
fn contains_phrase(phrase: &str, spelling: &str) -> bool {
    let split = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    let (p, s) = (split(phrase), split(spelling));
    !s.is_empty() && p.windows(s.len()).any(|w| w == s.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::load(Schema::default_path()).unwrap()
    }

    #[test]
    fn default_schema_loads_and_covers_the_gold_columns_in_order() {
        let s = schema();
        let gold = source_root().join("../shared/corpus/gold/gold_standard.csv");
        let Ok(text) = std::fs::read_to_string(&gold) else {
            eprintln!("SKIP: {} not found", gold.display());
            return;
        };
        let header: Vec<String> = text
            .lines()
            .next()
            .unwrap()
            .trim_end()
            .split(',')
            .map(String::from)
            .collect();
        assert_eq!(s.column_names(), header);
    }

    #[test]
    fn identity_and_unscored_columns_are_not_scored() {
        let s = schema();
        for name in [
            "study_id",
            "title",
            "authors",
            "year",
            "doi_or_url",
            "lab",
            "dataset_link",
            "notes",
        ] {
            assert!(!s.field(name).unwrap().scored, "{name} must not be scored");
        }
        assert_eq!(s.field("study_id").unwrap().role, Role::Identity);
        assert!(s.field("n_total").unwrap().scored);
        assert_eq!(s.field("n_total").unwrap().merge, Merge::Sum);
        let reads: Vec<&str> = s
            .fields()
            .iter()
            .filter(|f| f.reads_paper)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            reads,
            [
                "n_total",
                "age_mean",
                "age_sd",
                "perturbation_magnitude",
                "feedback_type",
                "number_of_locations"
            ]
        );
    }

    #[test]
    fn vocabulary_lookup_uses_synonyms_and_typos() {
        let s = schema();
        let ft = s.field("feedback_type").unwrap();
        assert_eq!(ft.lookup_term("continous"), Some("continuous"));
        assert_eq!(ft.lookup_term("End-Point"), Some("endpoint"));
        assert_eq!(ft.lookup_term("endpoint_only"), Some("endpoint"));
        assert_eq!(ft.lookup_term("continous view of hand"), Some("continuous"));
        assert_eq!(
            s.field("coordinate_frame")
                .unwrap()
                .lookup_term("horiztonal"),
            Some("horizontal")
        );
        assert_eq!(ft.lookup_term("scalar point"), Some("scalar_point"));
        assert_eq!(ft.lookup_term("where cursor is hidden"), None);
    }

    #[test]
    fn normalize_canonicalizes_through_vocabulary_and_units() {
        let s = schema();
        assert_eq!(
            s.field("feedback_delay").unwrap().normalize("500ms, 2s"),
            "0.5 s, 2 s"
        );
        assert_eq!(
            s.field("feedback_delay").unwrap().normalize("0/2s"),
            "0 s, 2 s"
        );
        assert_eq!(
            s.field("perturbation_magnitude")
                .unwrap()
                .normalize("45, -45 CCW/CW"),
            "45°"
        );
        assert_eq!(
            s.field("feedback_type")
                .unwrap()
                .normalize("endpoint, continous"),
            "continuous, endpoint"
        );
        assert_eq!(
            s.field("n_total").unwrap().normalize(" 24 participants"),
            "24"
        );
        assert_eq!(s.field("age_mean").unwrap().normalize("18-30"), "18-30");
        assert_eq!(
            s.field("number_of_locations")
                .unwrap()
                .normalize("8 targets"),
            "8 targets"
        );
        assert_eq!(
            s.field("number_of_locations").unwrap().normalize("-45, 0"),
            "0°, 315°"
        );
        assert_eq!(s.field("effector").unwrap().normalize("?"), "");
    }

    #[test]
    fn the_built_in_copy_is_the_file() {
        let built_in = Schema::from_toml(EMBEDDED_SCHEMA, Path::new("x")).unwrap();
        assert_eq!(built_in.column_names(), schema().column_names());
        assert_eq!(
            Schema::load_default().unwrap().column_names(),
            schema().column_names()
        );
    }

    #[test]
    fn prompt_lines_come_from_the_schema() {
        let s = schema();
        let names: Vec<&str> = s.parameters().map(|f| f.name.as_str()).collect();
        assert!(
            !names.contains(&"study_id") && names.contains(&"n_total") && names.contains(&"notes")
        );
        let line = s.field("feedback_delay").unwrap().prompt_line();
        assert!(line.starts_with("feedback_delay: Delay"), "{line}");
        assert!(line.ends_with("(units: s, ms, min)"), "{line}");
        let line = s.field("effector").unwrap().prompt_line();
        assert!(
            line.contains("one or more of: arm, finger, wrist, eye, leg"),
            "{line}"
        );
    }

    #[test]
    fn bad_schemas_are_rejected_with_a_reason() {
        let p = Path::new("x.toml");
        let err = |t: &str| format!("{:#}", Schema::from_toml(t, p).unwrap_err());
        assert!(err("version = 2\n[[field]]\nname='a'\ntype='integer'").contains("version"));
        assert!(err("version = 1\n[[field]]\nname='a'\ntype='float'").contains("unknown type"));
        assert!(err(
            "version = 1\n[[field]]\nname='a'\ntype='integer'\n[[field]]\nname='a'\ntype='integer'"
        )
        .contains("twice"));
        assert!(err("version = 1\n[[field]]\nname='a'\ntype='locations'").contains("count_words"));
        assert!(err("version = 1").contains("no [[field]]"));
        let dup =
            "version = 1\n[[field]]\nname='a'\ntype='category'\n[[field.term]]\ncanonical='x'\n\
                   synonyms=['y']\n[[field.term]]\ncanonical='z'\nsynonyms=['Y']";
        assert!(err(dup).contains("belongs to both"));
    }
}
