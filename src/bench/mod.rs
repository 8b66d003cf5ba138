//! GPU benchmark pieces for `paramx bench-gpu`: the rank-0 workload of a tensor-parallel Qwen2
//! built from random weights at the rank's shapes (the engine's `model::shapes` and
//! `model::load::random`), the arithmetic of
//! bytes moved and FLOPs per step ([`roofline`]), and peak device-memory sampling ([`peak`]).
//!
//! Nothing here asserts a speed: the command prints a table and writes JSON; tests only check
//! that the numbers are well-formed and the arithmetic matches hand counts.

pub mod cpu;
pub mod gpu;
pub mod peak;
pub mod prefix;
pub mod prefix_run;
pub mod roofline;

/// The median of `v` (the upper one of an even count; NaN when empty): the statistic every
/// benchmark table quotes.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}
