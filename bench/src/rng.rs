//! A small deterministic random number generator (xorshift64*), so every
//! allocator sees exactly the same sequence of requests.

/// xorshift64* (Vigna, 2016): fast, 64 bits of state, good enough to pick
/// sizes and slots.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// Combines a few numbers (workload id, thread index, generation...) into
/// one seed.
pub fn seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |acc, &p| {
        splitmix(acc ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Rng {
        let s = splitmix(seed);
        Rng(if s == 0 { 1 } else { s })
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    #[inline]
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// Log-uniform in `lo..=hi`: every doubling of size is equally likely.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi as f64 / lo as f64).ln();
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo as f64 * (u * span).exp()) as usize).clamp(lo, hi)
    }

    /// A steep power law in `lo..=hi`: half of all sizes fall in
    /// `lo..2*lo`, a quarter in `2*lo..4*lo`, and so on (uniform within
    /// each doubling), like the object sizes of most programs.
    pub fn power_law(&mut self, lo: usize, hi: usize) -> usize {
        let doublings = (hi / lo).max(1).ilog2();
        let k = (self.next_u64().trailing_zeros()).min(doublings);
        let base = lo << k;
        self.range(base, (2 * base - 1).min(hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = Rng::new(seed(&[1, 2]));
        let mut b = Rng::new(seed(&[1, 2]));
        let mut c = Rng::new(seed(&[2, 1]));
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
        for _ in 0..10_000 {
            let r = a.range(8, 1000);
            assert!((8..=1000).contains(&r));
            let l = a.log_uniform(64 << 10, 64 << 20);
            assert!((64 << 10..=64 << 20).contains(&l));
            let p = a.power_law(4, 4096);
            assert!((4..=4096).contains(&p));
            assert!(a.below(3) < 3);
        }
    }

    #[test]
    fn power_law_is_skewed() {
        let mut r = Rng::new(7);
        let small = (0..10_000).filter(|_| r.power_law(8, 32768) < 16).count();
        assert!((4_000..6_000).contains(&small), "{small}");
    }
}
