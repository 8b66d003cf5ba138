//! Grammar-constrained decoding: the model can only produce text that parses as the requested
//! JSON Schema.
//!
//! Without this, a small model's answer fails to parse a good share of the time (the reference
//! project lost half its answers that way). llguidance computes, at each step, the set of tokens
//! that keep the output a valid prefix of the grammar; we set every other token's logit to -inf.
//! The tokenizer is bridged to llguidance through the bytes of each token, which we take from the
//! HF `tokenizer.json` serialisation of whatever tokenizer the model uses.

use anyhow::{anyhow, bail, Context, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;

/// Our tokenizer, as llguidance sees it: a trie of token bytes plus real tokenization (so the
/// grammar's forced prefixes are tokenized the way the model was trained).
struct HfTokEnv {
    trie: TokTrie,
    tokenizer: tokenizers::Tokenizer,
}

impl TokenizerEnv for HfTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => match self.tokenizer.encode(text, false) {
                Ok(enc) => enc.get_ids().to_vec(),
                Err(_) => self.trie.greedy_tokenize(s),
            },
            // a partial UTF-8 sequence: no tokenizer can split it better than the trie
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Everything needed to build per-request constraints for one model: built once per run.
pub struct GrammarEnv {
    factory: ParserFactory,
    vocab_size: usize,
}

impl GrammarEnv {
    /// `vocab_size` is the width of the model's logits, which may exceed the tokenizer's
    /// vocabulary (Qwen pads its embedding to a multiple of 128): the padding rows are never
    /// allowed. `eos` is the token that ends the answer (the chat template's end of turn).
    pub fn new(tokenizer: &tokenizers::Tokenizer, vocab_size: usize, eos: u32) -> Result<Self> {
        let json = tokenizer
            .to_string(false)
            .map_err(|e| anyhow!("cannot serialise the tokenizer for the grammar: {e}"))?;
        let value: serde_json::Value =
            serde_json::from_str(&json).context("tokenizer JSON for the grammar")?;
        let mut words = llguidance::token_bytes_from_tokenizer_json(&value)
            .context("cannot read token bytes from the tokenizer")?;
        if words.len() > vocab_size {
            bail!(
                "tokenizer has {} tokens but the model's logits have only {vocab_size}",
                words.len()
            );
        }
        words.resize(vocab_size, Vec::new());
        let info = TokRxInfo::new(vocab_size as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(HfTokEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)?;
        // llguidance logs grammar warnings to stderr by default; ours are reported as errors.
        factory.set_stderr_log_level(0);
        Ok(GrammarEnv {
            factory,
            vocab_size,
        })
    }

    /// A fresh constraint for a grammar in llguidance's Lark dialect (used for the answers to
    /// questions: JSON whose values can only be made of their sentences, see
    /// `question::questions_for`).
    pub fn lark_constraint(&self, grammar: &str) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
            .context("cannot compile the answer grammar")?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            vocab_size: self.vocab_size,
        })
    }

    /// A fresh constraint that accepts exactly the JSON documents valid under `schema`.
    pub fn json_constraint(&self, schema: &serde_json::Value) -> Result<Constraint> {
        let grammar = TopLevelGrammar::from_json_schema(schema.clone());
        let parser = self
            .factory
            .create_parser(grammar)
            .context("cannot compile the output JSON Schema into a grammar")?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            vocab_size: self.vocab_size,
        })
    }
}

/// The grammar state of one sequence being generated.
pub struct Constraint {
    matcher: Matcher,
    vocab_size: usize,
}

impl Constraint {
    /// Sets the logits of every token the grammar forbids to -inf. When the grammar is complete
    /// only the end-of-sequence token remains allowed.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.allowed()?;
        if logits.len() != self.vocab_size {
            bail!(
                "logits have {} entries, grammar expects {}",
                logits.len(),
                self.vocab_size
            );
        }
        // (SimpleVob::apply_to writes a 0/1 bias, not a mask: set the forbidden entries here.)
        for (i, l) in logits.iter_mut().enumerate() {
            if !mask.is_allowed(i as TokenId) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn allowed(&mut self) -> Result<SimpleVob> {
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| anyhow!("grammar error: {e}"))
    }

    /// Advances the grammar by the token the sampler chose.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| anyhow!("grammar rejected token {token}: {e}"))
    }

    /// The tokens the grammar now forces (its fixed text up to the next choice), consumed: the
    /// caller must emit exactly these. Empty when the next token is a real choice.
    pub fn forced(&mut self) -> Vec<u32> {
        if self.matcher.is_stopped() {
            return Vec::new();
        }
        self.matcher.consume_ff_tokens()
    }

    /// True once the grammar has accepted the end of the document (or an end token).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};

    /// A real byte-level BPE tokenizer with one token per byte plus an end token: every string
    /// is representable, so the constraint alone decides what comes out.
    fn byte_tokenizer() -> Tokenizer {
        let mut vocab: std::collections::HashMap<String, u32> = Default::default();
        for (i, c) in ByteLevel::alphabet().into_iter().enumerate() {
            vocab.insert(c.to_string(), i as u32);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                Vec::new(),
            )
            .build()
            .expect("bpe");
        let mut tk = Tokenizer::new(bpe);
        tk.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
        tk.with_decoder(Some(ByteLevel::default()));
        tk.add_special_tokens([AddedToken::from("<|end|>", true)])
            .unwrap();
        tk
    }

    /// A tiny xorshift generator: reproducible pseudo-random logits without a dependency.
    fn xorshift(state: &mut u64) -> f32 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 10_000) as f32 / 1000.0
    }

    #[test]
    fn random_logits_under_the_constraint_always_give_valid_json() -> Result<()> {
        let tk = byte_tokenizer();
        let eos = tk.token_to_id("<|end|>").expect("end token");
        let vocab = tk.get_vocab_size(true) + 5; // padded, like Qwen's embedding
        let env = GrammarEnv::new(&tk, vocab, eos)?;
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 0, "maximum": 999},
                "kind": {"type": "string", "enum": ["abrupt", "gradual"]},
            },
            "required": ["n", "kind"],
            "additionalProperties": false
        });
        for seed in 1..=5u64 {
            let mut c = env.json_constraint(&schema)?;
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let out = walk(&mut c, vocab, eos, &mut state, 200)?;
            let text = tk.decode(&out, true).map_err(|e| anyhow!("{e}"))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("seed {seed}: not JSON: {text:?}"))?;
            assert!(v["n"].is_i64(), "seed {seed}: {text}");
            assert!(
                matches!(v["kind"].as_str(), Some("abrupt" | "gradual")),
                "{text}"
            );
        }
        Ok(())
    }

    /// Random logits under a question's grammar: every answer parses, and every value is made
    /// of what the sentence it points at offers (support by construction).
    #[test]
    fn question_grammars_only_let_values_come_from_their_sentences() -> Result<()> {
        use crate::run::question::{questions_for, read_answer, sentences, table_value};
        let tk = byte_tokenizer();
        let eos = tk.token_to_id("<|end|>").expect("end token");
        let vocab = tk.get_vocab_size(true);
        let env = GrammarEnv::new(&tk, vocab, eos)?;
        let schema = crate::schema::Schema::load_default()?;
        let text =
            "Methods\nTwenty-four right-handed participants (N = 24, aged 18-30 years) took \
part. Participants moved a stylus on a digitizing tablet to 8 targets at 0°, 45° and 90°. The \
cursor was rotated by 45° or 30° after a delay of 500 ms, with endpoint feedback.";
        let doc = crate::pdf::Document {
            path: "t.pdf".into(),
            sha256: String::new(),
            pages: vec![crate::pdf::Page {
                number: 1,
                start: 0,
                end: text.len(),
            }],
            text: text.into(),
            sections: crate::pdf::sections::find(text),
            doi: None,
            title: None,
            authors: Vec::new(),
            year: None,
            page_errors: Vec::new(),
        };
        let all = sentences(&doc);
        let exps = crate::run::experiments::detect(text, &schema.experiments);
        let questions = questions_for(
            &schema,
            &all,
            &exps[0],
            &exps,
            crate::run::question::MAX_SENTENCES,
        );
        assert!(questions.len() >= 3, "{questions:?}");
        let mut values = 0;
        for (qi, q) in questions.iter().enumerate() {
            for seed in 1..=3u64 {
                let mut c = env.lark_constraint(&q.grammar)?;
                let mut state = (seed + 10 * qi as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
                let out = walk(&mut c, vocab, eos, &mut state, 2000)?;
                let text = tk.decode(&out, true).map_err(|e| anyhow!("{e}"))?;
                for a in read_answer(q, &text).with_context(|| format!("{}: {text}", q.group))? {
                    let field = schema.field(&a.field).expect("field");
                    let value = table_value(field, &a.value);
                    let quote = &all[a.sentence].text;
                    crate::run::evidence::support(field, &value, quote)
                        .map_err(|e| anyhow!("{}: {value:?} from {quote:?}: {e}", a.field))?;
                    values += 1;
                }
            }
        }
        assert!(values > 0, "the random walks gave no value at all");
        Ok(())
    }

    /// Greedy over random logits under the constraint, until the end token, the end of the
    /// grammar or `steps` tokens.
    fn walk(
        c: &mut Constraint,
        vocab: usize,
        eos: u32,
        state: &mut u64,
        steps: usize,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for _ in 0..steps {
            let mut logits: Vec<f32> = (0..vocab).map(|_| xorshift(state)).collect();
            c.mask_logits(&mut logits)?;
            let tok = argmax_index(&logits);
            if tok == eos {
                break;
            }
            c.commit(tok)?;
            out.push(tok);
            if c.is_finished() {
                break;
            }
        }
        Ok(out)
    }

    fn argmax_index(v: &[f32]) -> u32 {
        let mut best = 0;
        for (i, &x) in v.iter().enumerate() {
            if x > v[best] {
                best = i;
            }
        }
        best as u32
    }

    #[test]
    fn padding_rows_and_wrong_widths_are_handled() -> Result<()> {
        let tk = byte_tokenizer();
        let eos = tk.token_to_id("<|end|>").expect("end token");
        let vocab = tk.get_vocab_size(true) + 3;
        let env = GrammarEnv::new(&tk, vocab, eos)?;
        let mut c = env.json_constraint(&serde_json::json!({"type": "integer"}))?;
        let mut logits = vec![1.0f32; vocab];
        c.mask_logits(&mut logits)?;
        assert!(
            logits[vocab - 1].is_infinite(),
            "padding row must never be allowed"
        );
        let mut short = vec![0.0f32; vocab - 1];
        assert!(c.mask_logits(&mut short).is_err());
        assert!(
            GrammarEnv::new(&tk, 10, eos).is_err(),
            "vocab smaller than tokenizer"
        );
        Ok(())
    }
}
