//! Medians and spreads of a handful of samples.
use serde::Serialize;

/// The centre and spread of some samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(super) struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Median absolute deviation from the median.
    pub mad: f64,
}

impl Summary {
    /// `None` when there is no (finite) sample.
    pub(super) fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let median = median_sorted(&v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        dev.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            median,
            min: v[0],
            max: v[v.len() - 1],
            mad: median_sorted(&dev),
        })
    }
}

/// The median of sorted samples (the mean of the middle two for an even count).
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of `samples`, NaN when there is none.
pub(super) fn median(samples: &[f64]) -> f64 {
    Summary::of(samples).map_or(f64::NAN, |s| s.median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(s.mad, 1.0);
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        // deviations 1.5, 0.5, 0.5, 1.5
        assert_eq!(s.mad, 1.0);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn an_outlier_moves_the_range_not_the_median() {
        let s = Summary::of(&[1.0, 1.01, 0.99, 1.0, 0.2]).unwrap();
        assert_eq!(s.median, 1.0);
        assert_eq!((s.min, s.max), (0.2, 1.01));
        assert!((s.mad - 0.01).abs() < 1e-12);
    }

    #[test]
    fn nothing_to_summarise() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert!(median(&[]).is_nan());
    }
}
