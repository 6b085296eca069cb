//! Memoized classification in two tiers: by exact SQL text, then by
//! literal-free template.
//!
//! Why exact text and not `pg_query::fingerprint`: fingerprinting costs a
//! full parse (so it saves little), and by design it ignores schema names and
//! constants, which would hand `secret.users` the classification of
//! `public.users`. Exact text is always correct, and it is what repeats with
//! prepared statements, ORM-generated queries, pgbench `-M prepared`/`extended`.
//!
//! Why a template tier: simple-protocol clients inline literals, so their
//! texts never repeat. A text that [`template::normalize`] accepts (one DML
//! statement, every literal lexed with certainty) is looked up by its key,
//! where literals are replaced by their token class; it skips the exact tier,
//! so each text is hashed once and one-off texts do not churn it. A new
//! template is stored only after the original text's parse tree confirms the
//! template module's premise (each literal is a plain constant), else it is
//! remembered as refused and its texts use the exact tier. The module doc of
//! `template.rs` argues why a template hit equals `classify(text)`; debug
//! builds check it on every hit. Texts with a `$` (prepared statements'
//! parameters) go straight to the exact tier, texts without literals after
//! the lexer's scan.
//!
//! Why quick_cache's S3-FIFO-style eviction and not plain LRU: one-off texts
//! would flush an LRU's hot set; S3-FIFO admits new keys to a small
//! probationary queue first, so a scan of unique queries cannot evict the
//! statements that actually repeat. Each tier is bounded by bytes, sharded for
//! concurrent proxy workers, and takes std's SipHash so clients cannot aim
//! hash collisions at it.
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};

use super::template::{self, Template};
use super::{Classification, Span, StatementKind, classify_shared, classify_with_consts};

/// Hit/miss counters and occupancy of a [`ClassifyCache`]. A text with a
/// template is looked up in the template tier; every other text, and texts
/// whose template was refused, in the exact tier (`hits` + `misses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Texts classified without being cached (longer than `max_text_len`).
    pub uncached: u64,
    pub entries: usize,
    /// Approximate bytes held by the exact tier (texts plus classifications).
    pub bytes: u64,
    pub templates: TemplateStats,
}

/// Counters and occupancy of the template tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateStats {
    pub hits: u64,
    /// New templates: the text was parsed and its template stored or refused.
    pub misses: u64,
    /// Texts whose template was refused earlier (sent to the exact tier).
    pub refused: u64,
    pub entries: usize,
    pub bytes: u64,
}

#[derive(Clone)]
struct Entry {
    weight: u64,
    result: Arc<[Classification]>,
}

impl Entry {
    fn new(result: &Arc<[Classification]>) -> Self {
        Entry {
            weight: weight(result),
            result: Arc::clone(result),
        }
    }
}

/// What the template tier knows about a template key.
#[derive(Clone)]
enum Shape {
    /// The classification of every text with this key; its span is that of
    /// the text that was stored.
    Known(Entry),
    /// Literals may matter here: texts with this key go to the exact tier.
    Refused,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<Box<str>, Entry> for ByBytes {
    fn weight(&self, key: &Box<str>, val: &Entry) -> u64 {
        key.len() as u64 + val.weight
    }
}

impl Weighter<Box<str>, Shape> for ByBytes {
    fn weight(&self, key: &Box<str>, val: &Shape) -> u64 {
        let val = match val {
            Shape::Known(e) => e.weight,
            Shape::Refused => size_of::<Shape>() as u64,
        };
        key.len() as u64 + val
    }
}

type Tier<V> = Cache<Box<str>, V, ByBytes, RandomState, DefaultLifecycle<Box<str>, V>>;

fn tier<V: Clone>(max_bytes: u64) -> Tier<V>
where
    ByBytes: Weighter<Box<str>, V>,
{
    // A typical entry (short statement, one or two objects) is ~300 bytes.
    let estimated_items = usize::try_from(max_bytes / 300)
        .unwrap_or(usize::MAX)
        .max(16);
    let options = OptionsBuilder::new()
        .estimated_items_capacity(estimated_items)
        .weight_capacity(max_bytes.max(1))
        .build()
        .unwrap_or_else(|_| unreachable!("both required options are set"));
    Cache::with_options(
        options,
        ByBytes,
        RandomState::new(),
        DefaultLifecycle::default(),
    )
}

thread_local! {
    /// Template key scratch buffer: a lookup allocates nothing.
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    uncached: AtomicU64,
    template_hits: AtomicU64,
    template_misses: AtomicU64,
    template_refused: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A bounded, thread-safe classification cache; share it across connections.
pub struct ClassifyCache {
    exact: Tier<Entry>,
    templates: Tier<Shape>,
    max_text_len: usize,
    counters: Counters,
}

impl ClassifyCache {
    /// A cache holding about `max_bytes` of texts, templates and results (a
    /// quarter for templates). Texts longer than `max_text_len` (bulk INSERTs,
    /// generated IN lists) are classified but not stored, since they rarely
    /// repeat and would evict many small entries.
    pub fn new(max_bytes: u64, max_text_len: usize) -> Self {
        let templates = max_bytes / 4;
        ClassifyCache::with_tiers(max_bytes - templates, templates, max_text_len)
    }

    /// [`ClassifyCache::new`] with each tier's byte budget given.
    pub fn with_tiers(exact_bytes: u64, template_bytes: u64, max_text_len: usize) -> Self {
        ClassifyCache {
            exact: tier(exact_bytes),
            templates: tier(template_bytes),
            max_text_len,
            counters: Counters::default(),
        }
    }

    /// Classifies `sql`, from the cache when this exact text, or a text that
    /// differs from it only in literal values, was seen before.
    pub fn classify(&self, sql: &str) -> Arc<[Classification]> {
        let c = &self.counters;
        if sql.len() > self.max_text_len {
            bump(&c.uncached);
            return classify_shared(sql);
        }
        // `$` (parameters, dollar quotes) is never in a template: a fast
        // reject that keeps prepared statements' texts from being lexed.
        if !sql.contains('$')
            && let Some(result) = KEY.with_borrow_mut(|key| self.by_template(sql, key))
        {
            return result;
        }
        if let Some(hit) = self.exact.get(sql) {
            bump(&c.hits);
            return hit.result;
        }
        bump(&c.misses);
        let result = classify_shared(sql);
        self.exact.insert(sql.into(), Entry::new(&result));
        result
    }

    /// The template tier; `None` sends `sql` to the exact tier.
    fn by_template(&self, sql: &str, key: &mut String) -> Option<Arc<[Classification]>> {
        let t = template::normalize(sql, key, None).filter(|t| t.literals > 0)?;
        let c = &self.counters;
        match self.templates.get(key.as_str()) {
            Some(Shape::Known(e)) => {
                bump(&c.template_hits);
                let result = respan(&e.result, t.span);
                debug_assert_eq!(
                    result[..],
                    super::classify(sql)[..],
                    "template tier diverged from classify() for {sql:?}"
                );
                Some(result)
            }
            Some(Shape::Refused) => {
                bump(&c.template_refused);
                None
            }
            None => {
                bump(&c.template_misses);
                Some(self.learn(sql, key, t))
            }
        }
    }

    /// Classifies a text with a new template, and stores the template if the
    /// text's parse tree confirms that its literals are plain constants.
    fn learn(&self, sql: &str, key: &str, t: Template) -> Arc<[Classification]> {
        let (result, consts) = classify_with_consts(sql);
        let result: Arc<[Classification]> = result.into();
        let provable = match (&result[..], consts) {
            ([c], Some(consts)) if c.kind != StatementKind::Unknown && c.span == t.span => {
                let mut literals = Vec::with_capacity(t.literals);
                let mut again = String::with_capacity(key.len());
                template::normalize(sql, &mut again, Some(&mut literals));
                template::literals_are_constants(sql, &literals, &consts)
            }
            _ => false,
        };
        if provable {
            self.templates
                .insert(key.into(), Shape::Known(Entry::new(&result)));
        } else {
            self.templates.insert(key.into(), Shape::Refused);
            self.exact.insert(sql.into(), Entry::new(&result));
        }
        result
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&c.hits),
            misses: load(&c.misses),
            uncached: load(&c.uncached),
            entries: self.exact.len(),
            bytes: self.exact.weight(),
            templates: TemplateStats {
                hits: load(&c.template_hits),
                misses: load(&c.template_misses),
                refused: load(&c.template_refused),
                entries: self.templates.len(),
                bytes: self.templates.weight(),
            },
        }
    }
}

impl Default for ClassifyCache {
    /// 16 MiB of entries; texts up to 16 KiB are cached.
    fn default() -> Self {
        ClassifyCache::new(16 << 20, 16 << 10)
    }
}

/// The stored classification with this text's span; shared as is when the
/// literals had the same lengths.
fn respan(stored: &Arc<[Classification]>, span: Span) -> Arc<[Classification]> {
    if stored.iter().all(|c| c.span == span) {
        return Arc::clone(stored);
    }
    stored
        .iter()
        .map(|c| Classification { span, ..c.clone() })
        .collect()
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
