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

/// The mean of `samples` and its two-sided 95 % confidence interval
/// (Student's t, the samples taken as independent): `None` below two
/// finite samples.
pub(super) fn mean_ci95(samples: &[f64]) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n < 2 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Some((mean, mean - half, mean + half))
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (tables;
/// the normal's 1.96 from 120 on).
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        31..=40 => 2.021,
        41..=60 => 2.000,
        61..=119 => 1.980,
        _ => 1.960,
    }
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

    #[test]
    fn mean_and_its_interval() {
        assert_eq!(mean_ci95(&[1.0]), None);
        assert_eq!(mean_ci95(&[f64::NAN, 2.0]), None);
        // n = 4, mean 5, sample sd 2: half width t(3) * 2 / 2 = 3.182.
        let (m, lo, hi) = mean_ci95(&[3.0, 3.0, 7.0, 7.0]).unwrap();
        assert!((m - 5.0).abs() < 1e-12);
        let half = 3.182 * (16.0f64 / 3.0 / 4.0).sqrt();
        assert!((hi - m - half).abs() < 1e-9 && (m - lo - half).abs() < 1e-9);
        let (_, lo, hi) = mean_ci95(&[2.0; 50]).unwrap();
        assert_eq!((lo, hi), (2.0, 2.0));
    }
}
