//! Summary statistics over repeated measurements.

use serde::{Deserialize, Serialize};

/// Mean, sample standard deviation and the half-width of a two-sided 95% Student-t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub std: f64,
    pub ci95: f64,
    pub n: usize,
}

impl Estimate {
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Self {
                mean,
                std: 0.0,
                ci95: 0.0,
                n,
            });
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let std = var.sqrt();
        Some(Self {
            mean,
            std,
            ci95: t_975(n - 1) * std / (n as f64).sqrt(),
            n,
        })
    }
}

/// A ratio's geometric mean and 95% interval from paired measurements: the Student-t interval
/// of the log ratios, exponentiated (so it is never negative and is symmetric in log scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioInterval {
    pub geomean: f64,
    pub low: f64,
    pub high: f64,
}

impl RatioInterval {
    /// `None` without ratios or with one that is not positive.
    pub fn of(ratios: &[f64]) -> Option<Self> {
        if ratios.iter().any(|&r| r.is_nan() || r <= 0.0) {
            return None;
        }
        let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
        let e = Estimate::of(&logs)?;
        Some(Self {
            geomean: e.mean.exp(),
            low: (e.mean - e.ci95).exp(),
            high: (e.mean + e.ci95).exp(),
        })
    }
}

/// The median: the middle value, or the mean of the two middle ones (`None` without values).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        // Beyond 30 the quantile is within 0.2% of 1.96 + 2.4 / df.
        _ => 1.96 + 2.4 / df as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_matches_hand_computation() {
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(e.mean, 2.5);
        assert!((e.std - 1.290_994).abs() < 1e-6);
        assert!((e.ci95 - 3.182 * 1.290_994 / 2.0).abs() < 1e-5);
        assert!(Estimate::of(&[]).is_none());
        assert_eq!(Estimate::of(&[7.0]).unwrap().ci95, 0.0);
        assert!((t_975(120) - 1.98).abs() < 0.005);
    }

    #[test]
    fn the_median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratio_interval_matches_scipy() {
        // Python: logs = np.log([1.2, 1.5, 1.1, 1.3]); m, s = logs.mean(), logs.std(ddof=1)
        // np.exp(m + np.array([-1, 0, 1]) * scipy.stats.t.ppf(0.975, 3) * s / 2)
        //   = [1.027053, 1.266637, 1.562109]
        let i = RatioInterval::of(&[1.2, 1.5, 1.1, 1.3]).unwrap();
        assert!((i.geomean - 1.266637).abs() < 1e-6, "{i:?}");
        assert!((i.low - 1.027053).abs() < 1e-4, "{i:?}");
        assert!((i.high - 1.562109).abs() < 1e-4, "{i:?}");
        assert!(RatioInterval::of(&[1.0, 0.0]).is_none());
        assert_eq!(RatioInterval::of(&[2.0]).unwrap().low, 2.0);
    }
}
