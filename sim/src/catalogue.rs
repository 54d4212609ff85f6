//! The shared catalogue: every object's manifest (synthetic, built from its number), its id, its
//! size, how many live peers hold or fetch it, and the popularity ranking requests are drawn from
//! (Zipf over ranks; new objects enter near the top and push older ones down).

use nearcast_proto::content::{Body, CHUNK_SIZE, INLINE_MAX};
use nearcast_proto::{Manifest, ObjectId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};

use crate::fxhash::{FxHashMap, mix};
use crate::scenario::Workload;

/// One object and the live-holder counts the bounds are computed from.
#[derive(Clone, Debug)]
pub struct Object {
    pub id: ObjectId,
    pub size: u32,
    /// Live reachable peers holding it completely (seeders excluded).
    pub holders: u32,
    /// Live reachable peers fetching it now.
    pub fetching: u32,
    /// Live reachable holders per AS: (AS index, count), sorted, no zero counts.
    pub holders_by_as: Vec<(u32, u32)>,
    /// Requested at least once while no live peer held it.
    pub missed: bool,
}

/// All objects ever published, and the live ranking.
pub struct Catalogue {
    pub objects: Vec<Object>,
    by_id: FxHashMap<ObjectId, u32>,
    /// Object numbers by popularity rank (index 0 the most popular).
    ranks: Vec<u32>,
    zipf: Zipf<f64>,
    rank_skew: f64,
    post_share: f64,
    sizes: LogNormal<f64>,
    /// An object drawing a fixed share of requests (flash crowd).
    pub flash: Option<(u32, f64)>,
}

/// Builds the synthetic manifest of object `n` of `size` bytes.
pub fn manifest_of(n: u32, size: u32) -> Manifest {
    let size64 = u64::from(size);
    if size64 <= INLINE_MAX {
        let mut bytes = Vec::with_capacity(size as usize);
        let mut k = 0u64;
        while bytes.len() < size as usize {
            let w = mix(&[u64::from(n), k]).to_le_bytes();
            let take = (size as usize - bytes.len()).min(8);
            bytes.extend_from_slice(&w[..take]);
            k += 1;
        }
        Manifest {
            version: 1,
            size: size64,
            media_type: "text/plain".into(),
            chunk_size: CHUNK_SIZE,
            body: Body::Inline(bytes),
        }
    } else {
        let chunks = size64.div_ceil(u64::from(CHUNK_SIZE));
        let hashes = (0..chunks)
            .map(|i| {
                let mut h = [0u8; 32];
                for (j, part) in h.chunks_mut(8).enumerate() {
                    part.copy_from_slice(&mix(&[u64::from(n), i, j as u64, 7]).to_le_bytes());
                }
                h
            })
            .collect();
        Manifest {
            version: 1,
            size: size64,
            media_type: "image/jpeg".into(),
            chunk_size: CHUNK_SIZE,
            body: Body::Chunks(hashes),
        }
    }
}

impl Catalogue {
    /// A catalogue of `live` objects ranked at random.
    pub fn new(cfg: &Workload, live: usize, rng: &mut ChaCha8Rng) -> Catalogue {
        let live = live.max(cfg.min_objects.max(1) as usize);
        let zipf = Zipf::new(live as f64, cfg.zipf_alpha)
            .unwrap_or_else(|_| Zipf::new(live as f64, 0.8).expect("valid zipf parameters"));
        let sizes = LogNormal::new((64.0f64 * 1024.0).ln(), 0.9).expect("valid lognormal");
        let mut c = Catalogue {
            objects: Vec::with_capacity(live * 2),
            by_id: FxHashMap::default(),
            ranks: Vec::with_capacity(live),
            zipf,
            rank_skew: cfg.rank_skew.max(0.1),
            post_share: cfg.post_share.clamp(0.0, 1.0),
            sizes,
            flash: None,
        };
        for _ in 0..live {
            let n = c.create(rng, None);
            c.ranks.push(n);
        }
        c
    }

    /// Publishes a new object (size drawn, or given); returns its number.
    pub fn create(&mut self, rng: &mut ChaCha8Rng, size: Option<u32>) -> u32 {
        let size = size.unwrap_or_else(|| {
            if rng.random::<f64>() < self.post_share {
                // Posts: 0.3–5 KiB, log-uniform.
                let (lo, hi) = (300f64.ln(), 5120f64.ln());
                (lo + (hi - lo) * rng.random::<f64>()).exp() as u32
            } else {
                // Images: log-normal around 64 KiB, clipped to 2 KiB–2 MiB.
                (self.sizes.sample(rng) as u32).clamp(2048, 2 * 1024 * 1024)
            }
        });
        let n = self.objects.len() as u32;
        let id = manifest_of(n, size).id();
        self.objects.push(Object {
            id,
            size,
            holders: 0,
            fetching: 0,
            holders_by_as: Vec::new(),
            missed: false,
        });
        self.by_id.insert(id, n);
        n
    }

    /// A new object enters the ranking near the top; the last one drops out.
    pub fn arrive(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        let n = self.create(rng, None);
        let len = self.ranks.len();
        let pos = ((len as f64) * rng.random::<f64>().powf(self.rank_skew)) as usize;
        self.ranks.pop();
        self.ranks.insert(pos.min(len - 1), n);
        n
    }

    /// Draws the object of one request.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> u32 {
        if let Some((n, share)) = self.flash
            && rng.random::<f64>() < share
        {
            return n;
        }
        let k = self.zipf.sample(rng) as usize;
        self.ranks[k.clamp(1, self.ranks.len()) - 1]
    }

    pub fn number(&self, id: &ObjectId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, n: u32) -> &Object {
        &self.objects[n as usize]
    }

    pub fn get_mut(&mut self, n: u32) -> &mut Object {
        &mut self.objects[n as usize]
    }

    /// Live reachable holders of object `n` in the AS of index `as_idx`.
    pub fn holders_in_as(&self, n: u32, as_idx: u32) -> u32 {
        let list = &self.objects[n as usize].holders_by_as;
        list.binary_search_by_key(&as_idx, |&(a, _)| a)
            .map_or(0, |i| list[i].1)
    }

    /// Length of chunk `index` of object `n`.
    pub fn chunk_len(&self, n: u32, index: u32) -> u32 {
        let size = u64::from(self.objects[n as usize].size);
        let start = u64::from(index) * u64::from(CHUNK_SIZE);
        size.saturating_sub(start).min(u64::from(CHUNK_SIZE)) as u32
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
