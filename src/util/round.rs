//! Python's `round(x, n)`: the exact binary value of `x`, ties to even.
//!
//! `(x * 100).round() / 100` is wrong twice: `x * 100` is itself rounded, and `round` breaks
//! ties away from zero. Python gives `round(0.125, 2) == 0.12` and `round(0.825, 2) == 0.82`
//! (0.825 is stored as 0.82499999…).

/// Decimals of every score, weight, rate and ratio the API and the CLI print (stored values
/// keep full precision).
pub const DISPLAY_DECIMALS: u32 = 4;

/// A number as printed: rounded to [`DISPLAY_DECIMALS`].
pub fn display(x: f64) -> f64 {
    round_py(x, DISPLAY_DECIMALS)
}

/// Serializers for output types: `#[serde(serialize_with = "round::four")]`.
pub fn four<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(display(*x))
}

/// [`four`] for an optional number.
pub fn four_opt<S: serde::Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&display(*x)),
        None => s.serialize_none(),
    }
}

/// Rounds like Python's `round(x, decimals)`.
pub fn round_py(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    let scale = POW10
        .get(decimals as usize)
        .copied()
        .unwrap_or_else(|| 10f64.powi(decimals as i32));
    let y = x * scale;
    // Far from a half: the product's own rounding error cannot change the result.
    if y.abs() < 1e15 {
        let frac = y - floor(y);
        if (frac - 0.5).abs() > 1e-6 {
            return round(y) / scale;
        }
    }
    // Near a half: decide on the exact decimal expansion, which Rust's formatter computes
    // exactly and rounds half to even.
    let text = format!("{x:.prec$}", prec = decimals as usize);
    text.parse().unwrap_or(x)
}

/// `y.trunc()` for |y| < 2^52, without a call into libm (x86-64's baseline has no rounding
/// instruction): the conversion to an integer truncates.
fn trunc(y: f64) -> f64 {
    ((y as i64) as f64).copysign(y)
}

/// `y.floor()` for |y| < 2^52.
pub fn floor(y: f64) -> f64 {
    if y.abs() >= 4.5e15 {
        return y.floor();
    }
    let t = trunc(y);
    if t > y {
        t - 1.0
    } else {
        t
    }
}

/// `y.round()` (half away from zero) for |y| < 2^52.
pub fn round(y: f64) -> f64 {
    if y.abs() >= 4.5e15 || y.is_nan() {
        return y.round();
    }
    let t = trunc(y);
    // Exact: `y` and its integer part are close.
    let d = y - t;
    if d >= 0.5 {
        t + 1.0
    } else if d <= -0.5 {
        t - 1.0
    } else {
        t
    }
    .copysign(y)
}

#[cfg(test)]
mod tests {
    use super::{display, four, round_py};

    #[test]
    fn printed_numbers_have_four_decimals() {
        assert_eq!(display(0.9279999999999999), 0.928);
        assert_eq!(display(0.9140000000000001), 0.914);
        assert_eq!(display(2.0 / 3.0), 0.6667);
        #[derive(serde::Serialize)]
        struct S {
            #[serde(serialize_with = "four")]
            x: f64,
        }
        let json = serde_json::to_string(&S { x: 0.1 + 0.2 }).unwrap();
        assert_eq!(json, r#"{"x":0.3}"#);
    }

    #[test]
    fn floor_and_round_match_the_standard_library() {
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            1e15,
            -1e15,
            4.4e15,
            4.6e15,
            1e300,
            -1e300,
            0.1,
            -0.1,
            123.456,
            -123.456,
        ];
        let mut x = -1e6f64;
        while x < 1e6 {
            cases.push(x);
            x += 0.173_25;
        }
        for y in cases {
            assert_eq!(super::floor(y).to_bits(), y.floor().to_bits(), "floor {y}");
            assert_eq!(super::round(y).to_bits(), y.round().to_bits(), "round {y}");
        }
    }

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
