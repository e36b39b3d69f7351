//! Quantiles of measured samples.

use std::time::Duration;

/// The `q` quantile of `sorted` (nearest index); `None` when it is empty.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let i = (last as f64 * q).round() as usize;
    Some(sorted[i.min(last)])
}

/// The `q` quantile of sorted durations, in milliseconds (0 when empty).
pub fn percentile(sorted: &[Duration], q: f64) -> f64 {
    quantile(sorted, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_index() {
        let ms: Vec<Duration> = (1..=101).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 0.5), 51.0);
        assert_eq!(percentile(&ms, 0.99), 100.0);
        assert_eq!(percentile(&ms, 1.0), 101.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[2.5_f64], 0.99), Some(2.5));
        assert_eq!(quantile::<f64>(&[], 0.5), None);
    }
}
