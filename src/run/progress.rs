//! Progress of a run on stderr. On a terminal: a bar with papers done, the ETA and the
//! generated tokens per second, each paper's line printed above it. Otherwise (SLURM logs,
//! pipes): one plain line per paper, as before, so that logs stay greppable.

use crate::run::record::PaperRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::Cell;

pub struct Progress {
    total: usize,
    bar: Option<ProgressBar>,
    /// Generated tokens and model seconds of the papers run so far (for tokens/s).
    tokens: Cell<usize>,
    secs: Cell<f64>,
}

impl Progress {
    /// A bar when `tty`, plain lines otherwise.
    pub fn new(total: usize, tty: bool) -> Self {
        let bar = tty.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} papers · ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(500));
            bar
        });
        Progress {
            total,
            bar,
            tokens: Cell::new(0),
            secs: Cell::new(0.0),
        }
    }

    /// One line about paper `done` of the total.
    pub fn line(&self, done: usize, msg: &str) {
        let text = format!("[{done}/{}] {msg}", self.total);
        match &self.bar {
            Some(bar) => {
                bar.println(text);
                bar.set_position(done as u64);
            }
            None => eprintln!("{text}"),
        }
    }

    /// A paper finished by the model: its line, and its tokens in the rate.
    pub fn paper(&self, done: usize, rec: &PaperRecord) {
        if let (crate::run::record::Outcome::Ok(r), Some(t)) = (&rec.outcome, &rec.timing) {
            self.tokens.set(self.tokens.get() + r.generated_tokens);
            self.secs
                .set(self.secs.get() + t.prefill_secs + t.decode_secs);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{:.1} generated tok/s", self.rate()));
        }
        self.line(done, &rec.progress_line());
    }

    /// The model starts on the remaining papers: the ETA counts from here, not from the
    /// papers found already done.
    pub fn model_starts(&self) {
        if let Some(bar) = &self.bar {
            bar.reset_eta();
            bar.set_message("model running");
        }
    }

    pub fn rate(&self) -> f64 {
        let s = self.secs.get();
        if s > 0.0 {
            self.tokens.get() as f64 / s
        } else {
            0.0
        }
    }

    /// Ends the bar (leaves it on screen).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_terminal_there_is_no_bar() {
        let p = Progress::new(3, false);
        assert!(p.bar.is_none());
        p.line(1, "a.pdf: already done");
        assert_eq!(p.rate(), 0.0);
    }
}
