//! nginx's smooth weighted round-robin, unrolled into one full cycle when a table is compiled,
//! so a 3:1 split interleaves as a a b a, not a a a b.

/// Longest schedule kept; larger weight sums are scaled down to fit.
pub const MAX_SCHEDULE_LEN: u64 = 4096;

/// Backend indexes in the order requests get them, one full cycle of the weights.
pub fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE_LEN {
        // Keep the proportions, and every backend with a weight keeps at least one slot.
        for weight in &mut weights {
            if *weight > 0 {
                *weight = (*weight * MAX_SCHEDULE_LEN / total).max(1);
            }
        }
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, weight) in weights.iter().enumerate() {
            current[i] += *weight as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_weights_are_scaled_into_a_bounded_schedule() {
        let schedule = smooth_schedule(&[1_000_000, 999_999, 1]);
        assert!(schedule.len() as u64 <= MAX_SCHEDULE_LEN + 3);
        assert!(schedule.contains(&2), "the smallest weight keeps a slot");
    }
}
