//! Locality-sensitive hashing for the semantic cache: random hyperplanes
//! (SimHash). Each of `bands` bands takes `bits` hyperplanes; a vector's
//! bucket in a band is the side of each plane it falls on. Two vectors at
//! angle θ agree on a plane with probability 1 − θ/π, so near neighbours
//! share a bucket in some band with high probability while unrelated
//! vectors rarely do. Buckets only shortlist candidates: the cosine
//! similarity decides.
//!
//! Real sentence embedders are anisotropic: every text's vector leans the
//! same way (multilingual-e5-small puts unrelated questions of one kind at
//! cosine 0.78–0.88), so planes through the origin put most of a scope on
//! one side, and each bucket held a fifth of it: a lookup read the whole
//! scope. The planes therefore pass through a centre, the mean of the
//! embedder's vectors for the [`REFERENCE`] texts ([`Lsh::centred`]).
//! Centred, the cosines that decide are smaller (a question's rewording
//! at 0.90 is about 0.5 from the centre), so a band takes 6 bits, not 8:
//! with 32 bands a rewording at 0.90 then shares a bucket as surely as
//! before and the lookup compares the same neighbours as with every
//! entry compared, while a lookup in a scope of 10,000 questions of one
//! kind reads a fifth of the bucket entries it read through the origin
//! with 8 bits, in a third of the time (docs/benchmarks.md, "Crowded
//! buckets"). How many buckets a neighbour shares ranks the candidates a
//! lookup compares (`max_candidates`); with 8 bands the ranks tied too
//! often to tell the nearest apart in a crowded scope (docs/benchmarks.md,
//! "A lexicon: WordNet").

/// Texts of every kind, whose mean vector is an embedder's centre: what
/// all its vectors share, whatever they say. Changing them moves every
/// bucket (entries filed before are not found until asked again).
pub const REFERENCE: &str = include_str!("lsh_reference.txt");

/// The [`REFERENCE`] texts, one per line.
pub fn reference_texts() -> Vec<String> {
    REFERENCE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The hyperplanes for one embedding size; the same seed gives the same
/// planes in every process.
#[derive(Clone, Debug)]
pub struct Lsh {
    planes: Vec<Vec<f32>>,
    /// Each plane's offset from the origin: its dot product with the
    /// centre (0 when uncentred).
    offsets: Vec<f32>,
    bits: usize,
}

impl Lsh {
    pub fn new(seed: u64, bands: usize, bits: usize, dims: usize) -> Self {
        let mut rng = SplitMix(seed ^ (dims as u64).rotate_left(32));
        let planes: Vec<Vec<f32>> = (0..bands * bits)
            .map(|_| (0..dims).map(|_| rng.normal()).collect())
            .collect();
        let offsets = vec![0.0; planes.len()];
        Self {
            planes,
            offsets,
            bits,
        }
    }

    /// The same planes moved to pass through the mean of `vectors` (each
    /// normalised first, as cosine sees them): a vector's side of a plane
    /// is then its side relative to what the embedder's vectors share.
    pub fn centred(mut self, vectors: &[Vec<f32>]) -> Self {
        let dims = self.dims();
        let mut centre = vec![0.0f64; dims];
        let mut n = 0usize;
        for v in vectors.iter().filter(|v| v.len() == dims) {
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                centre
                    .iter_mut()
                    .zip(v)
                    .for_each(|(c, x)| *c += f64::from(*x) / norm);
                n += 1;
            }
        }
        if n > 0 {
            self.offsets = self
                .planes
                .iter()
                .map(|p| {
                    let dot: f64 = p.iter().zip(&centre).map(|(a, c)| f64::from(*a) * c).sum();
                    (dot / n as f64) as f32
                })
                .collect();
        }
        self
    }

    pub fn dims(&self) -> usize {
        self.planes.first().map_or(0, Vec::len)
    }

    /// The vector's bucket in each band, as `band:signature`. The vector
    /// is normalised, as the centre's vectors were.
    pub fn buckets(&self, vector: &[f32]) -> Vec<String> {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
        self.planes
            .chunks(self.bits)
            .zip(self.offsets.chunks(self.bits))
            .enumerate()
            .map(|(band, (planes, offsets))| {
                let signature = planes
                    .iter()
                    .zip(offsets)
                    .fold(0u32, |sig, (plane, offset)| {
                        let dot: f32 = plane.iter().zip(vector).map(|(p, v)| p * v).sum();
                        (sig << 1) | u32::from(dot * scale >= *offset)
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

    /// Vectors leaning one way, as a real embedder's do: a shared
    /// direction plus a random one, at cosine about 0.8 to each other.
    fn leaning(shared: &[f32], rng: &mut SplitMix) -> Vec<f32> {
        at_cosine(shared, 0.9, rng)
    }

    #[test]
    fn centred_planes_keep_a_leaning_scope_out_of_one_bucket_and_still_find_neighbours() {
        let dims = 128;
        let mut rng = SplitMix(5);
        let shared = random_unit(&mut rng, dims);
        let reference: Vec<Vec<f32>> = (0..64).map(|_| leaning(&shared, &mut rng)).collect();
        let raw = Lsh::new(42, 8, 8, dims);
        let centred = Lsh::new(42, 8, 8, dims).centred(&reference);
        let (mut raw_far, mut far, mut near) = (0, 0, 0);
        for _ in 0..200 {
            let a = leaning(&shared, &mut rng);
            let stranger = leaning(&shared, &mut rng);
            // A neighbour: a rewording near `a`, still leaning the same way.
            let b = at_cosine(&a, 0.99, &mut rng);
            raw_far += usize::from(share_a_bucket(&raw, &a, &stranger));
            far += usize::from(share_a_bucket(&centred, &a, &stranger));
            near += usize::from(share_a_bucket(&centred, &a, &b));
        }
        assert!(
            raw_far >= 100,
            "uncentred, strangers shortlisted {raw_far}/200"
        );
        assert!(far <= 25, "centred, strangers shortlisted {far}/200");
        assert!(near >= 190, "centred, neighbours found {near}/200");
    }

    #[test]
    fn centring_on_nothing_or_scaling_a_vector_moves_no_bucket() {
        let mut rng = SplitMix(3);
        let v = random_unit(&mut rng, 32);
        let lsh = Lsh::new(1, 4, 8, 32);
        let twice: Vec<f32> = v.iter().map(|x| x * 2.0).collect();
        assert_eq!(lsh.buckets(&v), lsh.buckets(&twice));
        assert_eq!(lsh.clone().centred(&[]).buckets(&v), lsh.buckets(&v));
        let centred = lsh.centred(&[random_unit(&mut rng, 32)]);
        assert_eq!(centred.buckets(&v), centred.buckets(&twice));
    }

    #[test]
    fn the_reference_texts_are_many_and_distinct() {
        let texts = reference_texts();
        assert_eq!(texts.len(), 64);
        let distinct: std::collections::HashSet<&String> = texts.iter().collect();
        assert_eq!(distinct.len(), texts.len());
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
