//! Memoized classification keyed by exact SQL text.
//!
//! Why exact text and not `pg_query::fingerprint`: fingerprinting costs a full
//! parse (so it saves little), and by design it ignores schema names and
//! constants, which would hand `secret.users` the classification of
//! `public.users`. Exact text is always correct, and it is what repeats in
//! practice: a prepared statement's text, ORM-generated queries, pgbench's
//! `-M prepared`/`extended` traffic.
//!
//! Why quick_cache's S3-FIFO-style eviction and not plain LRU: one-off texts
//! (literals inlined by the client) would flush an LRU's hot set; S3-FIFO
//! admits new keys to a small probationary queue first, so a scan of unique
//! queries cannot evict the statements that actually repeat. It is bounded by
//! bytes, sharded for concurrent proxy workers, and takes std's SipHash so
//! clients cannot aim hash collisions at it.
use std::collections::hash_map::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};

use super::{Classification, classify_shared};

/// Hit/miss counters and occupancy of a [`ClassifyCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Texts classified without being cached (longer than `max_text_len`).
    pub uncached: u64,
    pub entries: usize,
    /// Approximate bytes held (texts plus classifications).
    pub bytes: u64,
}

#[derive(Clone)]
struct Entry {
    weight: u64,
    result: Arc<[Classification]>,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<Box<str>, Entry> for ByBytes {
    fn weight(&self, key: &Box<str>, val: &Entry) -> u64 {
        key.len() as u64 + val.weight
    }
}

type Inner = Cache<Box<str>, Entry, ByBytes, RandomState, DefaultLifecycle<Box<str>, Entry>>;

/// A bounded, thread-safe classification cache; share it across connections.
pub struct ClassifyCache {
    cache: Inner,
    max_text_len: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    uncached: AtomicU64,
}

impl ClassifyCache {
    /// A cache holding about `max_bytes` of texts and results. Texts longer than
    /// `max_text_len` (bulk INSERTs, generated IN lists) are classified but not
    /// stored, since they rarely repeat and would evict many small entries.
    pub fn new(max_bytes: u64, max_text_len: usize) -> Self {
        // A typical entry (short statement, one or two objects) is ~300 bytes.
        let estimated_items = usize::try_from(max_bytes / 300)
            .unwrap_or(usize::MAX)
            .max(16);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(estimated_items)
            .weight_capacity(max_bytes.max(1))
            .build()
            .unwrap_or_else(|_| unreachable!("both required options are set"));
        ClassifyCache {
            cache: Cache::with_options(
                options,
                ByBytes,
                RandomState::new(),
                DefaultLifecycle::default(),
            ),
            max_text_len,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            uncached: AtomicU64::new(0),
        }
    }

    /// Classifies `sql`, from the cache when this exact text was seen before.
    pub fn classify(&self, sql: &str) -> Arc<[Classification]> {
        if sql.len() > self.max_text_len {
            self.uncached.fetch_add(1, Ordering::Relaxed);
            return classify_shared(sql);
        }
        if let Some(hit) = self.cache.get(sql) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return hit.result;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let result = classify_shared(sql);
        self.cache.insert(
            sql.into(),
            Entry {
                weight: weight(&result),
                result: Arc::clone(&result),
            },
        );
        result
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            uncached: self.uncached.load(Ordering::Relaxed),
            entries: self.cache.len(),
            bytes: self.cache.weight(),
        }
    }
}

impl Default for ClassifyCache {
    /// 16 MiB of entries; texts up to 16 KiB are cached.
    fn default() -> Self {
        ClassifyCache::new(16 << 20, 16 << 10)
    }
}

/// Heap and inline bytes of a result, computed once at insert (the weigher
/// must be cheap and stable).
fn weight(result: &[Classification]) -> u64 {
    let objects: usize = result
        .iter()
        .flat_map(|c| &c.objects)
        .map(|o| {
            size_of::<super::ObjectRef>() + o.name.len() + o.schema.as_ref().map_or(0, String::len)
        })
        .sum();
    (size_of::<Entry>() + size_of_val(result) + objects) as u64
}
