//! Python's `round(x, n)`: the exact binary value of `x`, ties to even.
//!
//! `(x * 100).round() / 100` is wrong twice: `x * 100` is itself rounded, and `round` breaks
//! ties away from zero. Python gives `round(0.125, 2) == 0.12` and `round(0.825, 2) == 0.82`
//! (0.825 is stored as 0.82499999…).

/// Rounds like Python's `round(x, decimals)`.
pub fn round_py(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(decimals as i32);
    let y = x * scale;
    let frac = y - y.floor();
    // Far from a half: the product's own rounding error cannot change the result.
    if (frac - 0.5).abs() > 1e-6 && y.abs() < 1e15 {
        return y.round() / scale;
    }
    // Near a half: decide on the exact decimal expansion, which Rust's formatter computes
    // exactly and rounds half to even.
    let text = format!("{x:.prec$}", prec = decimals as usize);
    text.parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::round_py;

    #[test]
    fn matches_python_on_ties_and_near_ties() {
        assert_eq!(round_py(0.625, 2), 0.62);
        assert_eq!(round_py(0.125, 2), 0.12);
        assert_eq!(round_py(1.875, 2), 1.88);
        assert_eq!(round_py(0.825, 2), 0.82);
        assert_eq!(round_py(2.675, 2), 2.67);
        assert_eq!(round_py(0.375, 2), 0.38);
        assert_eq!(round_py(1.005, 2), 1.0);
        assert_eq!(round_py(0.6, 2), 0.6);
        assert_eq!(round_py(0.75 * 0.8, 2), 0.6);
        assert_eq!(round_py(625.0, 2), 625.0);
        assert_eq!(round_py(0.0005, 2), 0.0);
        assert_eq!(round_py(2.5, 0), 2.0);
        assert_eq!(round_py(3.5, 0), 4.0);
    }

    #[test]
    fn agrees_with_exact_formatting_everywhere() {
        // The fast path must give what the exact path gives.
        let mut x = 0.0f64;
        while x < 50.0 {
            let exact: f64 = format!("{x:.2}").parse().unwrap();
            assert_eq!(round_py(x, 2), exact, "x = {x}");
            x += 0.0012345;
        }
    }
}
