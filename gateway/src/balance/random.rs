//! A small, fast random source per thread, for load balancing and sampling.
//!
//! Not for secrets: a xorshift generator seeded once per thread from the standard library's
//! per-process random hasher keys.

use std::{
    cell::Cell,
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish() | 1
}

/// A random `u64`.
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        // xorshift64*
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A random number below `bound` (which must not be 0).
pub fn below(bound: u64) -> u64 {
    // Lemire's multiply-shift: unbiased enough for balancing.
    ((u128::from(next_u64()) * u128::from(bound)) >> 64) as u64
}

/// True with probability `percent`/100.
pub fn chance(percent: u8) -> bool {
    percent >= 100 || (percent > 0 && below(100) < u64::from(percent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_below_and_covers_the_range() {
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let n = below(10);
            assert!(n < 10);
            seen[n as usize] += 1;
        }
        assert!(seen.iter().all(|count| *count > 800), "{seen:?}");
        assert!(chance(100) && !chance(0));
    }
}
