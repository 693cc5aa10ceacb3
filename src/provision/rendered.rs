//! Rendered files kept in memory with their ETag and content type, so a
//! phone that fetches again (its periodic check, a reboot, a 304 probe) is
//! answered without rendering or hashing.
//!
//! A phone's bodies live in its entry of the phone cache ([`super::cache`]):
//! when the change feed drops the phone (its handset or its domain changed)
//! or the entry is reloaded, its bodies go with it. Within an entry a body is
//! found by everything else its bytes depend on ([`KeyRef`]): the family and
//! template, the model and key-set variant (from the handset, the
//! User-Agent or what the phone reported), and the root URL the config sends
//! the phone back to (scheme, host, port, prefix: the request's). The record
//! itself (handset, revision, domain settings and token) is the entry's. A
//! body also holds until the phone's local time may change (its zone's next
//! transition, at most a day: `render::LocalTime`), and only for the
//! profiles it was rendered with ([`RenderedBudget::clear_rendered`] bumps
//! the generation). Common files (no phone involved) are kept in a small
//! table of their own ([`CommonBodies`]), keyed the same way plus the model
//! code and the token in their URL.
//!
//! Memory is counted in bytes against one budget. When it is spent, new
//! bodies are simply not kept (no eviction of kept ones): phones come back
//! in a cycle (their periodic checks), and for a cycle over more phones
//! than fit, keeping the first ones serves `budget / phones` of the
//! requests from memory where least-recently-used eviction would serve
//! none. Space comes back as the feed drops phones, and a sweep every
//! minute ([`super::cache::PhoneCache::run`]) drops the bodies of entries
//! older than the cache's reload age, so a phone that went away does not
//! hold its place for ever.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The default budget for every kept body together.
pub const DEFAULT_BUDGET_BYTES: usize = 96 * 1024 * 1024;
/// Common files kept at most (they are few: per family and model).
const MAX_COMMON: usize = 4096;
/// What one kept body costs beyond its bytes and ETag: the `Arc<Body>`,
/// the `Bytes` and ETag allocations (rounded up by the allocator).
const OVERHEAD: usize = 160;
/// And beyond its key's strings: their five allocations, the slot.
const KEY_OVERHEAD: usize = 128;

/// A rendered file: its bytes, its strong ETag (quoted) and content type.
#[derive(Debug)]
pub struct Body {
    pub bytes: Bytes,
    pub etag: Arc<str>,
    pub content_type: Arc<str>,
}

impl Body {
    /// `text` with its ETag: the first 128 bits of its SHA-256, in hex.
    pub fn new(text: String, content_type: Arc<str>) -> Body {
        let digest = Sha256::digest(text.as_bytes());
        let mut etag = String::with_capacity(34);
        etag.push('"');
        etag.push_str(&hex::encode(&digest[..16]));
        etag.push('"');
        // A rendered `String` has grown by doubling: keep exactly its bytes
        // (a kept body would otherwise hold up to twice its size).
        let bytes = if text.capacity() == text.len() { Bytes::from(text) } else { Bytes::copy_from_slice(text.as_bytes()) };
        Body { bytes, etag: Arc::from(etag), content_type }
    }

    /// What keeping it costs beyond its key: the bytes, the ETag and the
    /// allocations around them.
    fn cost(&self) -> usize {
        self.bytes.len() + self.etag.len() + OVERHEAD
    }
}

/// One shared copy of each content type (a handful: one per family), so
/// a kept body does not carry its own.
pub fn content_type(name: &str) -> Arc<str> {
    static KNOWN: Mutex<Vec<Arc<str>>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = known.iter().find(|k| ***k == *name) {
        return k.clone();
    }
    let k: Arc<str> = Arc::from(name);
    // Content types come from the profiles: bounded, but never trust it.
    if known.len() < 64 {
        known.push(k.clone());
    }
    k
}

/// What a per-phone body depends on besides the phone's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub family: &'a str,
    pub template: &'a str,
    pub model: &'a str,
    pub variant: &'a str,
    /// The root URL the config sends the phone back to, ending in `/`.
    pub root: &'a str,
}

#[derive(Debug)]
struct Key {
    family: Box<str>,
    template: Box<str>,
    model: Box<str>,
    variant: Box<str>,
    root: Box<str>,
}

impl Key {
    fn of(k: &KeyRef<'_>) -> Key {
        Key {
            family: k.family.into(),
            template: k.template.into(),
            model: k.model.into(),
            variant: k.variant.into(),
            root: k.root.into(),
        }
    }

    fn is(&self, k: &KeyRef<'_>) -> bool {
        *self.root == *k.root
            && *self.template == *k.template
            && *self.model == *k.model
            && *self.variant == *k.variant
            && *self.family == *k.family
    }

    fn len(&self) -> usize {
        self.family.len() + self.template.len() + self.model.len() + self.variant.len() + self.root.len()
    }
}

/// The shared byte budget and the profiles' generation.
#[derive(Debug)]
pub struct RenderedBudget {
    limit: usize,
    used: AtomicUsize,
    generation: AtomicU64,
}

impl RenderedBudget {
    pub fn new(limit: usize) -> Arc<RenderedBudget> {
        Arc::new(RenderedBudget { limit, used: AtomicUsize::new(0), generation: AtomicU64::new(0) })
    }

    /// Bytes held by kept bodies now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The profiles' generation: bodies rendered under an older one are
    /// never served.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every body kept so far is stale: the profiles (templates, content
    /// types, vendors' tables) changed. A profiles reload calls this (via
    /// `PhoneCache::clear_rendered`, which also frees their memory).
    pub fn clear_rendered(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes `n` bytes from the budget, if they are there.
    fn charge(self: &Arc<Self>, n: usize) -> Option<Charge> {
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limit {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return None;
        }
        Some(Charge { budget: self.clone(), bytes: n })
    }
}

/// Bytes taken from the budget, given back when dropped (with the body).
#[derive(Debug)]
struct Charge {
    budget: Arc<RenderedBudget>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Kept {
    key: Key,
    body: Arc<Body>,
    generation: u64,
    /// Unix seconds from which the body may be wrong (the local time).
    until: i64,
    _charge: Charge,
}

/// One phone's kept bodies (a phone fetches a handful of files), held by
/// its phone-cache entry.
#[derive(Debug)]
pub struct PhoneBodies {
    budget: Arc<RenderedBudget>,
    kept: Mutex<Vec<Kept>>,
}

/// A phone fetches a few files of one family; more than this many bodies
/// for one phone (many Host names, many models) start its list over.
const MAX_PER_PHONE: usize = 8;

impl PhoneBodies {
    pub fn new(budget: &Arc<RenderedBudget>) -> PhoneBodies {
        PhoneBodies { budget: budget.clone(), kept: Mutex::new(Vec::new()) }
    }

    /// The body kept for `key`, if it still holds at `now` (Unix seconds).
    pub fn get(&self, key: &KeyRef<'_>, now: i64) -> Option<Arc<Body>> {
        let generation = self.budget.generation();
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|k| k.key.is(key) && k.generation == generation && now < k.until).map(|k| k.body.clone())
    }

    /// Keeps `body` for `key` until `until` (Unix seconds), in place of a
    /// stale one, if the budget has room.
    pub fn put(&self, key: &KeyRef<'_>, body: &Arc<Body>, until: i64) {
        let generation = self.budget.generation();
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|k| !k.key.is(key) && k.generation == generation);
        if kept.len() >= MAX_PER_PHONE {
            kept.clear();
        }
        let owned = Key::of(key);
        let Some(charge) = self.budget.charge(body.cost() + owned.len() + KEY_OVERHEAD) else { return };
        kept.push(Kept { key: owned, body: body.clone(), generation, until, _charge: charge });
    }

    /// Drops every kept body (memory back to the budget).
    pub fn clear(&self) {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// How many bodies are kept.
    pub fn len(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a common file depends on: its family's template, model, variant,
/// the model code of its name, and the URL it names (root and token).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommonKey {
    pub family: String,
    pub template: String,
    pub model: String,
    pub variant: String,
    pub code: String,
    pub base_url: String,
}

impl CommonKey {
    fn len(&self) -> usize {
        self.family.len() + self.template.len() + self.model.len() + self.variant.len() + self.code.len() + self.base_url.len()
    }
}

/// Common files as rendered, bounded by count and by the budget.
#[derive(Debug)]
pub struct CommonBodies {
    budget: Arc<RenderedBudget>,
    kept: Mutex<std::collections::HashMap<CommonKey, (Arc<Body>, u64, Charge)>>,
}

impl CommonBodies {
    pub fn new(budget: &Arc<RenderedBudget>) -> CommonBodies {
        CommonBodies { budget: budget.clone(), kept: Mutex::default() }
    }

    pub fn get(&self, key: &CommonKey) -> Option<Arc<Body>> {
        let generation = self.budget.generation();
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(key).filter(|(_, g, _)| *g == generation).map(|(b, _, _)| b.clone())
    }

    pub fn put(&self, key: CommonKey, body: &Arc<Body>) {
        let generation = self.budget.generation();
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.remove(&key);
        if kept.len() >= MAX_COMMON {
            kept.clear();
        }
        let Some(charge) = self.budget.charge(body.cost() + key.len() + KEY_OVERHEAD) else { return };
        kept.insert(key, (body.clone(), generation, charge));
    }

    pub fn clear(&self) {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(root: &'a str, model: &'a str) -> KeyRef<'a> {
        KeyRef { family: "fam", template: "fam/mac.cfg", model, variant: "", root }
    }

    fn body(text: &str) -> Arc<Body> {
        Arc::new(Body::new(text.to_string(), Arc::from("text/plain")))
    }

    #[test]
    fn a_body_is_found_by_its_whole_key_and_only_while_it_holds() {
        let budget = RenderedBudget::new(1 << 20);
        let bodies = PhoneBodies::new(&budget);
        bodies.put(&key("http://a/", "T46S"), &body("one"), 100);
        assert_eq!(&bodies.get(&key("http://a/", "T46S"), 99).unwrap().bytes[..], b"one");
        assert!(bodies.get(&key("http://a/", "T46S"), 100).is_none(), "the local time may have changed");
        assert!(bodies.get(&key("https://a/", "T46S"), 0).is_none(), "another scheme");
        assert!(bodies.get(&key("http://a:8080/", "T46S"), 0).is_none(), "another port");
        assert!(bodies.get(&key("http://a/", "T48S"), 0).is_none(), "another model");
        assert!(bodies.get(&KeyRef { variant: "v2", ..key("http://a/", "T46S") }, 0).is_none(), "another variant");
        assert!(bodies.get(&KeyRef { template: "fam/other.cfg", ..key("http://a/", "T46S") }, 0).is_none());
        budget.clear_rendered();
        assert!(bodies.get(&key("http://a/", "T46S"), 0).is_none(), "the profiles were reloaded");
    }

    #[test]
    fn the_budget_is_counted_in_bytes_and_given_back() {
        let budget = RenderedBudget::new(4000);
        let (a, b) = (PhoneBodies::new(&budget), PhoneBodies::new(&budget));
        a.put(&key("http://a/", ""), &body(&"x".repeat(1500)), i64::MAX);
        let after_one = budget.used();
        assert!(after_one > 1500 + 34, "{after_one}");
        a.put(&key("http://a/", ""), &body(&"y".repeat(1500)), i64::MAX);
        assert_eq!(budget.used(), after_one, "a body for the same key replaces the old one");
        b.put(&key("http://a/", ""), &body(&"z".repeat(1500)), i64::MAX);
        assert_eq!(b.len(), 1);
        b.put(&key("http://b/", ""), &body(&"z".repeat(1500)), i64::MAX);
        assert_eq!(b.len(), 1, "over the budget: not kept");
        assert!(budget.used() <= 4000);
        drop(a);
        assert_eq!(budget.used(), after_one, "a dropped phone gives its bytes back");
        b.clear();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn etags_are_strong_and_follow_the_bytes() {
        let (a, b, c) = (body("one"), body("one"), body("two"));
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.etag, c.etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"') && a.etag.len() == 34);
    }

    #[test]
    fn common_files_are_bounded_and_follow_the_generation() {
        let budget = RenderedBudget::new(1 << 20);
        let common = CommonBodies::new(&budget);
        let k = CommonKey {
            family: "fam".into(),
            template: "fam/common.cfg".into(),
            model: "".into(),
            variant: "".into(),
            code: "".into(),
            base_url: "http://a/p/tok/".into(),
        };
        common.put(k.clone(), &body("common"));
        assert!(common.get(&k).is_some());
        assert!(common.get(&CommonKey { base_url: "http://a/p/other/".into(), ..k.clone() }).is_none());
        budget.clear_rendered();
        assert!(common.get(&k).is_none());
        common.clear();
        assert_eq!(budget.used(), 0);
    }
}
