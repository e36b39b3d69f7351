//! Exact integer splits: a total that a provider reported for a whole
//! batch call, shared across the batch's jobs so that the parts sum to it.

/// Splits `total` in proportion to `weights` by the largest-remainder
/// method. The parts always sum to `total` exactly; an all-zero weight
/// vector splits evenly. Ties in the remainder go to the earlier job.
pub fn split_proportional(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let weights: Vec<u128> = if sum == 0 {
        vec![1; weights.len()]
    } else {
        weights.iter().map(|&w| u128::from(w)).collect()
    };
    let sum: u128 = weights.iter().sum();
    let total = u128::from(total);
    let mut parts: Vec<u128> = weights.iter().map(|w| total * w / sum).collect();
    let mut remainders: Vec<(usize, u128)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (i, total * w % sum))
        .collect();
    remainders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let assigned: u128 = parts.iter().sum();
    let missing = usize::try_from(total - assigned).unwrap_or(usize::MAX);
    for (i, _) in remainders.into_iter().take(missing) {
        parts[i] += 1;
    }
    parts
        .into_iter()
        .map(|p| u64::try_from(p).unwrap_or(u64::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sum_to_the_total() {
        for (total, weights) in [
            (100, vec![1, 1, 1]),
            (7, vec![3, 0, 5, 9]),
            (0, vec![4, 4]),
            (13, vec![0, 0]),
            (u64::MAX, vec![u64::MAX, 1]),
        ] {
            let parts = split_proportional(total, &weights);
            assert_eq!(parts.len(), weights.len());
            let sum: u128 = parts.iter().map(|&p| u128::from(p)).sum();
            assert_eq!(sum, u128::from(total), "{total} {weights:?} -> {parts:?}");
        }
    }

    #[test]
    fn parts_follow_the_weights() {
        assert_eq!(split_proportional(100, &[1, 3]), vec![25, 75]);
        assert_eq!(split_proportional(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split_proportional(5, &[0, 1]), vec![0, 5]);
    }
}
