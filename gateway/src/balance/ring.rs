//! Consistent hashing: a ring of points, each endpoint owning as many as its weight earns, so
//! a key keeps its endpoint while endpoints come and go — adding or removing one of N moves
//! about 1/N of the keys, and no others.
//!
//! A key is hashed to a point and served by the first endpoint point at or after it (wrapping
//! around). Points come from hashing `address#i`, so an endpoint's points are the same in every
//! table: a table rebuilt for an unrelated change moves no key.

use std::hash::{BuildHasher, Hash};

/// Points an endpoint of average weight gets; more points, smoother shares.
pub const POINTS_PER_ENDPOINT: u64 = 160;

/// A ring over endpoints `0..n`.
#[derive(Debug, Default)]
pub struct Ring {
    /// (point, endpoint index), sorted by point.
    points: Box<[(u64, u32)]>,
}

/// A hash that is the same in every process and every table.
///
/// The fast hash is finished with MurmurHash3's 64-bit mix, so that inputs differing in a few
/// low bits (`address#0`, `address#1`, …; a client's sequential ids) land spread over the
/// whole ring rather than in clusters.
pub fn stable_hash(value: impl Hash) -> u64 {
    fmix64(foldhash::fast::FixedState::with_seed(0x5745_4952).hash_one(value))
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

impl Ring {
    /// A ring of endpoints named by `identities` (stable across tables: their addresses) with
    /// relative `weights`; an endpoint of weight 0 gets no point.
    pub fn new<I: Hash>(identities: &[I], weights: &[f64]) -> Self {
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Self::default();
        }
        let average = total / weights.iter().filter(|w| **w > 0.0).count().max(1) as f64;
        let mut points = Vec::new();
        for (index, (identity, weight)) in identities.iter().zip(weights).enumerate() {
            if *weight <= 0.0 {
                continue;
            }
            let count = ((POINTS_PER_ENDPOINT as f64 * weight / average).round() as u64).max(1);
            for i in 0..count {
                points.push((stable_hash((identity, i)), index as u32));
            }
        }
        points.sort_unstable();
        Self {
            points: points.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The endpoints in the order a key meets them on the ring, starting with its own: the
    /// first that `usable` accepts serves it.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(point, _)| *point < key);
        self.points[start..]
            .iter()
            .chain(&self.points[..start])
            .map(|(_, index)| *index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn address(i: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 8080))
    }

    /// Which endpoint (by address) serves each of `keys`.
    fn owners(ring: &Ring, endpoints: &[SocketAddr], keys: &[u64]) -> Vec<SocketAddr> {
        keys.iter()
            .map(|key| endpoints[ring.walk(*key).next().unwrap()])
            .collect()
    }

    proptest! {
        /// Adding one endpoint to N moves about 1/(N+1) of the keys, all of them to it; removing
        /// one moves only that endpoint's keys.
        #[test]
        fn adding_or_removing_one_endpoint_moves_about_one_nth_of_the_keys(n in 3u16..20, seed in any::<u64>()) {
            let keys: Vec<u64> = (0..4000u64).map(|i| stable_hash((seed, i))).collect();
            let before: Vec<SocketAddr> = (0..n).map(address).collect();
            let ring = Ring::new(&before, &vec![1.0; before.len()]);
            let owned = owners(&ring, &before, &keys);

            let mut grown = before.clone();
            grown.push(address(n));
            let ring_grown = Ring::new(&grown, &vec![1.0; grown.len()]);
            let owned_grown = owners(&ring_grown, &grown, &keys);
            let moved: Vec<_> = owned.iter().zip(&owned_grown).filter(|(a, b)| a != b).collect();
            prop_assert!(moved.iter().all(|(_, to)| **to == address(n)), "keys move only to the new endpoint");
            let share = moved.len() as f64 / keys.len() as f64;
            let ideal = 1.0 / f64::from(n + 1);
            prop_assert!(share <= ideal * 1.6 + 0.01, "moved {share}, ideal {ideal}");

            let mut shrunk = before.clone();
            let gone = shrunk.remove(0);
            let ring_shrunk = Ring::new(&shrunk, &vec![1.0; shrunk.len()]);
            let owned_shrunk = owners(&ring_shrunk, &shrunk, &keys);
            for (old, new) in owned.iter().zip(&owned_shrunk) {
                if *old != gone {
                    prop_assert_eq!(old, new, "a key of a remaining endpoint stays");
                }
            }
        }

        /// Shares follow weights: an endpoint of weight 3 serves about three times the keys of
        /// one of weight 1.
        #[test]
        fn weights_are_honoured(seed in any::<u64>()) {
            let endpoints: Vec<SocketAddr> = (0..4).map(address).collect();
            let weights = [3.0, 1.0, 1.0, 1.0];
            let ring = Ring::new(&endpoints, &weights);
            let keys: Vec<u64> = (0..12_000u64).map(|i| stable_hash((seed, i))).collect();
            let owned = owners(&ring, &endpoints, &keys);
            let share = |e: SocketAddr| owned.iter().filter(|o| **o == e).count() as f64 / keys.len() as f64;
            prop_assert!((share(endpoints[0]) - 0.5).abs() < 0.08, "weight 3 of 6: {}", share(endpoints[0]));
            for e in &endpoints[1..] {
                prop_assert!((share(*e) - 1.0 / 6.0).abs() < 0.06, "weight 1 of 6: {}", share(*e));
            }
        }
    }

    #[test]
    fn a_weight_of_zero_gets_no_key() {
        let endpoints: Vec<SocketAddr> = (0..3).map(address).collect();
        let ring = Ring::new(&endpoints, &[1.0, 0.0, 1.0]);
        for key in 0..1000u64 {
            assert_ne!(ring.walk(stable_hash(key)).next(), Some(1));
        }
    }
}
