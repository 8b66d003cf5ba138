//! Strict equality of two parsed cells ([`Value`]s of one field).
//!
//! The field's schema type already decided how each side was read (`Field::parse`); here two
//! values of the same shape are compared. Values of different shapes (a count against a
//! category, a number against `clamped`) are never equal. Every rule is symmetric and
//! reflexive, which the property tests check.

use crate::schema::{Field, FieldKind, NumItem, Value};
use std::collections::HashMap;

/// Whether the prediction equals the gold value under the field's type rule.
pub fn equal(field: &Field, gold: &Value, pred: &Value) -> bool {
    match (gold, pred) {
        (Value::Empty, Value::Empty) => true,
        (Value::Integer(a), Value::Integer(b)) => a == b,
        (Value::Numbers(a), Value::Numbers(b)) => {
            let tol = match field.kind {
                FieldKind::Number { tolerance } => tolerance,
                _ => 0.0,
            };
            numbers_equal(a, b, tol)
        }
        (Value::Magnitudes(a), Value::Magnitudes(b))
        | (Value::Directions(a), Value::Directions(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| exact(*x, *y))
        }
        (Value::Count(a), Value::Count(b)) => a == b,
        (Value::Count(n), Value::Directions(d)) | (Value::Directions(d), Value::Count(n)) => {
            *n as usize == d.len()
        }
        (Value::Terms(a), Value::Terms(b)) => a == b,
        (
            Value::Text {
                tokens: a,
                text: ta,
            },
            Value::Text {
                tokens: b,
                text: tb,
            },
        ) => {
            if a.is_empty() && b.is_empty() {
                ta.to_lowercase() == tb.to_lowercase()
            } else {
                token_f1(a, b) >= field.lexicon().free_text_threshold
            }
        }
        (Value::Literal(a), Value::Literal(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => false,
    }
}

/// Equal "after unit conversion": values are already rounded to 1e-9 by the parser, so only
/// float noise is tolerated here, never a difference a reader could see.
fn exact(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn within(a: f64, b: f64, tol: f64) -> bool {
    exact(a, b) || (a - b).abs() <= tol * a.abs().max(b.abs())
}

/// Multisets of numbers/ranges: same size, sorted pairwise equal within `tol`; a range only
/// equals a range.
fn numbers_equal(a: &[NumItem], b: &[NumItem], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (NumItem::Single(x), NumItem::Single(y)) => within(*x, *y, tol),
            (NumItem::Range(x0, x1), NumItem::Range(y0, y1)) => {
                within(*x0, *y0, tol) && within(*x1, *y1, tol)
            }
            _ => false,
        })
}

/// Token F1 between two token multisets (0 when either is empty).
pub fn token_f1(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in a {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0usize;
    for t in b {
        if let Some(c) = counts.get_mut(t.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f64 / b.len() as f64;
    let r = common as f64 / a.len() as f64;
    2.0 * p * r / (p + r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn schema() -> &'static Schema {
        static S: OnceLock<Schema> = OnceLock::new();
        S.get_or_init(|| Schema::load(Schema::default_path()).unwrap())
    }

    /// Raw-text comparison through the field's parser, as the scorer does.
    fn eq(field: &str, gold: &str, pred: &str) -> bool {
        let f = schema().field(field).unwrap();
        equal(f, &f.parse(gold), &f.parse(pred))
    }

    // --- traps named in the issue ------------------------------------------------------

    #[test]
    fn eight_never_matches_one_eighty() {
        assert!(!eq("n_total", "8", "180"));
        assert!(!eq("number_of_locations", "8", "180"));
        assert!(!eq("perturbation_magnitude", "8", "180"));
        assert!(!eq("number_of_locations", "8 targets", "180°"));
    }

    #[test]
    fn forty_five_never_matches_one_forty_five() {
        assert!(!eq("perturbation_magnitude", "45", "145"));
        assert!(!eq("perturbation_magnitude", "45°", "145°"));
        assert!(!eq("n_total", "45", "145"));
        assert!(!eq("age_mean", "45", "145"));
    }

    #[test]
    fn continous_typo_equals_continuous() {
        assert!(eq("feedback_type", "continous", "continuous"));
        assert!(eq(
            "feedback_type",
            "endpoint, continous",
            "Continuous; end-point"
        ));
        assert!(eq("coordinate_frame", "horiztonal", "horizontal plane"));
        assert!(!eq("feedback_type", "continous", "endpoint"));
    }

    #[test]
    fn eight_targets_equals_an_eight_angle_list() {
        let list = "0°, 45°, 90°, 135°, 180°, 225°, 270°, 315°";
        assert!(eq("number_of_locations", "8 targets", list));
        assert!(eq("number_of_locations", list, "8 targets"));
        assert!(eq("number_of_locations", list, "8"));
        assert!(!eq("number_of_locations", "7 targets", list));
    }

    #[test]
    fn milliseconds_and_seconds_convert() {
        assert!(eq("feedback_delay", "500ms, 2s", "0.5 s, 2 s"));
        assert!(eq("feedback_delay", "1.5s", "1500 ms"));
        assert!(!eq("feedback_delay", "500ms, 2s", "500 s, 2 s"));
        assert!(!eq("feedback_delay", "500ms, 2s", "0.5 s"));
    }

    #[test]
    fn signed_and_direction_words_equal_plus_minus() {
        assert!(eq("perturbation_magnitude", "45, -45 CCW/CW", "±45"));
        assert!(eq("perturbation_magnitude", "45 CCW/CW", "±45°"));
        assert!(eq(
            "perturbation_magnitude",
            "45 CCW",
            "45 degrees counterclockwise"
        ));
        assert!(!eq(
            "perturbation_magnitude",
            "0, 2, 4, 8, 16 CCW/CW",
            "0, 2, 4, 8 CCW/CW"
        ));
    }

    #[test]
    fn negative_angle_equals_its_positive_location() {
        assert!(eq("number_of_locations", "-45", "315°"));
        // A bare integer above 0 is a count, so `315` alone is 315 targets.
        assert!(!eq("number_of_locations", "-45", "315"));
        assert!(eq("number_of_locations", "0, -45", "315°, 0°"));
        assert!(eq(
            "number_of_locations",
            "0, 45, 90, 75, 180, 275, 360",
            "0, 45, 75, 90, 180, 275"
        ));
    }

    #[test]
    fn bare_number_takes_the_next_unit() {
        assert!(eq("feedback_delay", "0/2s", "0 s, 2 s"));
        assert!(eq("feedback_delay", "0/2s", "0 ms, 2000 ms"));
        assert!(!eq("feedback_delay", "0/2s", "0 s, 2 ms"));
    }

    // --- each type rule -------------------------------------------------------------------

    #[test]
    fn integers_compare_parsed() {
        assert!(eq("n_total", "24", "24 participants"));
        assert!(eq("n_total", "24", "N = 24"));
        assert!(!eq("n_total", "24", "25"));
        assert!(!eq("n_total", "24", "twenty-four"));
    }

    #[test]
    fn numbers_within_one_percent_and_ranges_exact() {
        assert!(eq("age_mean", "24.8", "24.9"));
        assert!(!eq("age_mean", "24.8", "25.2"));
        assert!(eq("age_mean", "18-30", "18 to 30"));
        assert!(!eq("age_mean", "18-30", "18-32"));
        assert!(!eq("age_mean", "18-30", "24"));
        assert!(eq(
            "age_mean",
            "64 (SCA), 61 (old), 22 (young)",
            "22, 61, 64"
        ));
        assert!(!eq("age_mean", "64 (SCA), 61 (old), 22 (young)", "22, 64"));
    }

    #[test]
    fn number_set_text_compares_as_category() {
        assert!(eq("perturbation_magnitude", "clamped", "error clamp"));
        assert!(!eq("perturbation_magnitude", "clamped", "45"));
    }

    #[test]
    fn categories_are_sets_through_the_vocabulary() {
        assert!(eq(
            "environment",
            "tablet/mouse",
            "mouse, digitizing tablet"
        ));
        assert!(eq(
            "environment",
            "3D motion tracking (miniBirds, Acension Technologies)",
            "Optotrak"
        ));
        assert!(!eq("environment", "tablet/mouse", "tablet"));
        assert!(eq(
            "cue_modalities",
            "Spatial and verbal",
            "verbal; spatial location"
        ));
        assert!(eq(
            "population_type",
            "healthy_adult",
            "Healthy young adults"
        ));
        // Outside the vocabulary: literal text only (no substring match).
        assert!(eq(
            "target_hit_criteria",
            "shooting, predetermined",
            "predetermined, shoot"
        ));
        assert!(!eq(
            "target_hit_criteria",
            "shooting, predetermined",
            "shooting, predetermined path"
        ));
    }

    #[test]
    fn free_text_token_f1() {
        assert!(eq(
            "primary_outcomes",
            "Only cursor group showed aftereffect",
            "the cursor group showed an aftereffect"
        ));
        assert!(!eq(
            "primary_outcomes",
            "Only cursor group showed aftereffect",
            "no learning in any group"
        ));
    }

    #[test]
    fn different_shapes_never_match() {
        assert!(!eq("number_of_locations", "8 targets", "many"));
        let f = schema().field("perturbation_magnitude").unwrap();
        assert!(!equal(
            f,
            &Value::Magnitudes(vec![45.0]),
            &Value::Terms(["45".to_string()].into())
        ));
    }

    // --- properties -------------------------------------------------------------------------

    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,3}",
            "-?[0-9]{1,3}(\\.[0-9])?( ?(ms|s|°|deg))?(, ?-?[0-9]{1,3}( ?(ms|s|°))?){0,3}",
            "[0-9]{1,2}-[0-9]{1,2}",
            "[0-9] targets",
            "(continous|endpoint|tablet|arm|clamped|shooting|Text|healthy_adult|\\?)(, |/| and )?(continuous|mouse|hand|abrupt)?",
            "[a-z ]{0,20}",
            ".{0,12}",
        ]
    }

    fn scored_fields() -> Vec<&'static Field> {
        schema().scored_fields().collect()
    }

    proptest! {
        #[test]
        fn equality_is_symmetric(a in cell(), b in cell(), fi in 0usize..24) {
            let fields = scored_fields();
            let f = fields[fi % fields.len()];
            let (va, vb) = (f.parse(&a), f.parse(&b));
            prop_assert_eq!(equal(f, &va, &vb), equal(f, &vb, &va), "field {} a={:?} b={:?}", f.name, a, b);
        }

        #[test]
        fn equality_is_reflexive_and_normalize_preserves_meaning(a in cell(), fi in 0usize..24) {
            let fields = scored_fields();
            let f = fields[fi % fields.len()];
            let v = f.parse(&a);
            prop_assert!(equal(f, &v, &v));
            let n = f.normalize(&a);
            prop_assert!(equal(f, &v, &f.parse(&n)), "field {} raw={:?} normalized={:?}", f.name, a, n);
            prop_assert_eq!(f.normalize(&n), n.clone());
        }

        #[test]
        fn token_f1_is_symmetric_and_bounded(a in proptest::collection::vec("[a-d]", 0..6), b in proptest::collection::vec("[a-d]", 0..6)) {
            let x = token_f1(&a, &b);
            prop_assert!((0.0..=1.0).contains(&x));
            prop_assert!((x - token_f1(&b, &a)).abs() < 1e-12);
        }
    }
}
