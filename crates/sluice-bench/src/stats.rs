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

/// The cumulative buckets `(le, count)` of histogram `name` in a
/// Prometheus text, summed over the series whose labels contain every
/// one of `wanted`, by bound.
pub fn histogram_buckets(metrics: &str, name: &str, wanted: &[&str]) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for l in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        if !wanted.iter().all(|w| l.contains(w)) {
            continue;
        }
        let parsed = (|| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let n = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((le, n))
        })();
        if let Some((le, n)) = parsed {
            match buckets.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += n,
                None => buckets.push((le, n)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The least bucket bound (ms) under which `q` of the observations fell.
pub fn bucket_quantile_ms(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, n)| *n >= total * q)
        .map(|(le, _)| le * 1000.0)
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

    #[test]
    fn histogram_buckets_sum_the_matching_series_by_bound() {
        let text = "\
x_seconds_bucket{outcome=\"hit\",le=\"0.01\"} 1
x_seconds_bucket{outcome=\"hit\",le=\"0.05\"} 9
x_seconds_bucket{outcome=\"hit\",le=\"+Inf\"} 10
x_seconds_bucket{outcome=\"miss\",le=\"0.01\"} 0
x_seconds_bucket{outcome=\"miss\",le=\"0.05\"} 80
x_seconds_bucket{outcome=\"miss\",le=\"+Inf\"} 90
x_seconds_count{outcome=\"miss\"} 90
y_seconds_bucket{le=\"0.01\"} 5
";
        let all = histogram_buckets(text, "x_seconds", &[]);
        assert_eq!(all, [(0.01, 1.0), (0.05, 89.0), (f64::INFINITY, 100.0)]);
        assert_eq!(bucket_quantile_ms(&all, 0.5), Some(50.0));
        assert_eq!(bucket_quantile_ms(&all, 0.99), Some(f64::INFINITY));
        let hits = histogram_buckets(text, "x_seconds", &["outcome=\"hit\""]);
        assert_eq!(bucket_quantile_ms(&hits, 0.5), Some(50.0));
        assert_eq!(bucket_quantile_ms(&[], 0.5), None);
    }
}
