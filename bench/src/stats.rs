//! Median, geometric mean and the sign test.

/// The median of `xs` (mean of the middle two for an even count); NaN when
/// empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The geometric mean of positive `xs`; NaN when empty.
pub fn geomean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

/// The one-sided sign test: `P(X >= k)` for `X ~ Binomial(n, 1/2)`, the
/// chance that at least `k` of `n` paired repetitions go one way when
/// either way is equally likely (1 when `k == 0`, 0 when `k > n`).
pub fn sign_test(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    // C(n, i) built up term by term: n is a count of repetitions (small).
    let (mut c, mut tail) = (1.0f64, 0.0f64);
    for i in 0..=n {
        if i >= k {
            tail += c;
        }
        c = c * (n - i) as f64 / (i + 1) as f64;
    }
    tail / 2f64.powi(n as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_geomean() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0]), 5.0);
        assert!(median(&[]).is_nan());
        assert!((geomean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert!((geomean(&[0.5, 2.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!(geomean(&[]).is_nan());
    }

    #[test]
    fn sign_test_tails() {
        assert_eq!(sign_test(3, 3), 0.125);
        assert_eq!(sign_test(7, 7), 1.0 / 128.0);
        assert_eq!(sign_test(5, 0), 1.0);
        assert_eq!(sign_test(4, 5), 0.0);
        // (C(11,9) + C(11,10) + C(11,11)) / 2^11 = 67 / 2048.
        assert!((sign_test(11, 9) - 67.0 / 2048.0).abs() < 1e-15);
        // (1 + 7) / 128: 6 or 7 of 7.
        assert!((sign_test(7, 6) - 8.0 / 128.0).abs() < 1e-15);
    }
}
