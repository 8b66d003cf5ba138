//! GPU benchmark pieces for `paramx bench-gpu`: the rank-0 workload of a tensor-parallel Qwen2
//! built from random weights at the rank's shapes ([`shapes`], [`random`]), the arithmetic of
//! bytes moved and FLOPs per step ([`roofline`]), and peak device-memory sampling ([`peak`]).
//!
//! Nothing here asserts a speed: the command prints a table and writes JSON; tests only check
//! that the numbers are well-formed and the arithmetic matches hand counts.

pub mod peak;
pub mod prefix;
pub mod random;
pub mod roofline;
pub mod shapes;
