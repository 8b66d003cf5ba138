//! Bootstrap 95% interval of micro-F1 over papers, with a fixed-seed generator so that the same
//! inputs always print the same interval.
//!
//! The generator is the crate's SplitMix64 (`paramx_rng`), good enough for resampling indices.

use super::Counts;

pub use paramx_rng::SplitMix64;

/// 2.5% and 97.5% percentiles of micro-F1 over `resamples` resamples (with replacement) of the
/// per-paper counts. `(0, 0)` when there are no papers.
pub fn micro_f1_interval(papers: &[Counts], resamples: usize, seed: u64) -> (f64, f64) {
    if papers.is_empty() || resamples == 0 {
        return (0.0, 0.0);
    }
    let mut rng = SplitMix64::new(seed);
    let mut f1s: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut total = Counts::default();
            for _ in 0..papers.len() {
                total.add(&papers[rng.below(papers.len())]);
            }
            total.f1()
        })
        .collect();
    f1s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let at = |q: f64| f1s[((q * (f1s.len() - 1) as f64).round() as usize).min(f1s.len() - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_seed_same_interval() {
        let papers: Vec<Counts> = (0..12)
            .map(|i| Counts {
                tp: i,
                fp: 12 - i,
                fn_: 3,
                wrong: 0,
            })
            .collect();
        let a = micro_f1_interval(&papers, 1000, 7);
        assert_eq!(a, micro_f1_interval(&papers, 1000, 7));
        let point = papers.iter().fold(Counts::default(), |mut t, c| {
            t.add(c);
            t
        });
        assert!(
            a.0 <= point.f1() && point.f1() <= a.1,
            "{a:?} vs {}",
            point.f1()
        );
        assert!(a.0 < a.1);
    }

    #[test]
    fn identical_papers_give_a_point_interval() {
        let papers = vec![
            Counts {
                tp: 3,
                fp: 1,
                fn_: 1,
                wrong: 0
            };
            5
        ];
        let (lo, hi) = micro_f1_interval(&papers, 200, 1);
        assert_eq!(lo, hi);
        assert_eq!(micro_f1_interval(&[], 200, 1), (0.0, 0.0));
    }

    proptest! {
        #[test]
        fn interval_is_ordered_and_within_unit(cs in proptest::collection::vec((0u64..20, 0u64..20, 0u64..20), 1..15), seed in any::<u64>()) {
            let papers: Vec<Counts> = cs.into_iter().map(|(tp, fp, fn_)| Counts { tp, fp, fn_, wrong: 0 }).collect();
            let (lo, hi) = micro_f1_interval(&papers, 100, seed);
            prop_assert!(0.0 <= lo && lo <= hi && hi <= 1.0);
        }

        #[test]
        fn below_stays_in_range(n in 1usize..1000, seed in any::<u64>()) {
            let mut r = SplitMix64::new(seed);
            for _ in 0..20 { prop_assert!(r.below(n) < n); }
        }
    }
}
