//! Locality-sensitive hashing for the semantic cache: random hyperplanes
//! (SimHash). Each of `bands` bands takes `bits` hyperplanes; a vector's
//! bucket in a band is the side of each plane it falls on. Two vectors at
//! angle θ agree on a plane with probability 1 − θ/π, so near neighbours
//! share a bucket in some band with high probability while unrelated
//! vectors rarely do. Buckets only shortlist candidates: the cosine
//! similarity decides.
//!
//! With the defaults (32 bands of 8 bits), a neighbour at cosine 0.90
//! shares at least one bucket with probability above 0.9999, an unrelated
//! vector (cosine ≈ 0) with probability ≈ 0.12. How many it shares ranks
//! the candidates a lookup compares (`max_candidates`): about 9 of 32 at
//! cosine 0.90, 5 at 0.80, 14 at 0.95. With 8 bands the ranks tied too
//! often to tell the nearest apart in a crowded scope (docs/benchmarks.md,
//! "A lexicon: WordNet").

/// The hyperplanes for one embedding size; the same seed gives the same
/// planes in every process.
#[derive(Clone, Debug)]
pub struct Lsh {
    planes: Vec<Vec<f32>>,
    bits: usize,
}

impl Lsh {
    pub fn new(seed: u64, bands: usize, bits: usize, dims: usize) -> Self {
        let mut rng = SplitMix(seed ^ (dims as u64).rotate_left(32));
        let planes = (0..bands * bits)
            .map(|_| (0..dims).map(|_| rng.normal()).collect())
            .collect();
        Self { planes, bits }
    }

    pub fn dims(&self) -> usize {
        self.planes.first().map_or(0, Vec::len)
    }

    /// The vector's bucket in each band, as `band:signature`.
    pub fn buckets(&self, vector: &[f32]) -> Vec<String> {
        self.planes
            .chunks(self.bits)
            .enumerate()
            .map(|(band, planes)| {
                let signature = planes.iter().fold(0u32, |sig, plane| {
                    let dot: f32 = plane.iter().zip(vector).map(|(p, v)| p * v).sum();
                    (sig << 1) | u32::from(dot >= 0.0)
                });
                format!("{band}:{signature:x}")
            })
            .collect()
    }
}

/// The cosine similarity of two vectors (0 when either is zero or their
/// lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// SplitMix64: small, seedable, and the same everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller), so planes are uniformly
    /// oriented.
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(rng: &mut SplitMix, dims: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dims).map(|_| rng.normal()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// A unit vector at cosine `c` to unit `a`.
    fn at_cosine(a: &[f32], c: f32, rng: &mut SplitMix) -> Vec<f32> {
        let r = random_unit(rng, a.len());
        let d: f32 = r.iter().zip(a).map(|(x, y)| x * y).sum();
        let ortho: Vec<f32> = r.iter().zip(a).map(|(x, y)| x - d * y).collect();
        let n = ortho.iter().map(|x| x * x).sum::<f32>().sqrt();
        let s = (1.0 - c * c).sqrt();
        a.iter()
            .zip(&ortho)
            .map(|(x, o)| c * x + s * o / n)
            .collect()
    }

    fn share_a_bucket(lsh: &Lsh, a: &[f32], b: &[f32]) -> bool {
        let (x, y) = (lsh.buckets(a), lsh.buckets(b));
        x.iter().zip(&y).any(|(p, q)| p == q)
    }

    #[test]
    fn same_seed_same_buckets_and_one_bucket_per_band() {
        let mut rng = SplitMix(1);
        let v = random_unit(&mut rng, 64);
        let a = Lsh::new(7, 8, 8, 64);
        let b = Lsh::new(7, 8, 8, 64);
        assert_eq!(a.buckets(&v), b.buckets(&v));
        assert_eq!(a.buckets(&v).len(), 8);
        assert_ne!(a.buckets(&v), Lsh::new(8, 8, 8, 64).buckets(&v));
    }

    #[test]
    fn near_neighbours_share_buckets_and_strangers_rarely_do() {
        let lsh = Lsh::new(42, 8, 8, 128);
        let mut rng = SplitMix(99);
        let (mut near, mut far) = (0, 0);
        for _ in 0..200 {
            let a = random_unit(&mut rng, 128);
            near += usize::from(share_a_bucket(&lsh, &a, &at_cosine(&a, 0.97, &mut rng)));
            far += usize::from(share_a_bucket(&lsh, &a, &random_unit(&mut rng, 128)));
        }
        assert!(near >= 190, "near neighbours found {near}/200");
        assert!(far <= 20, "strangers shortlisted {far}/200");
    }

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-9);
        assert!((cosine(&[1.0, 1.0], &[1.0, 0.0]) - 0.5f64.sqrt()).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }
}
