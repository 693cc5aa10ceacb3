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
//! A template's first kept body is its reference; every other body of the
//! template keeps only what it does not share with it (pieces of lines cut
//! after `\n`, `/` and `=`), as runs of the reference's bytes and of its
//! own (checked at once to give back exactly the rendered bytes): a Yealink
//! file of 4.7 KB that differs from its neighbour's in its account, names,
//! MAC and event token costs about 1 KB.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The default budget for every kept body together.
pub const DEFAULT_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Common files kept at most (they are few: per family and model).
const MAX_COMMON: usize = 4096;
/// What one kept body costs beyond its bytes and ETag: the `Arc<Body>`,
/// the `Bytes` and ETag allocations (rounded up by the allocator).
const OVERHEAD: usize = 160;
/// And beyond its key's strings and its slot: their allocations, the
/// ETag's and the runs' (each rounded up by the allocator).
const KEY_OVERHEAD: usize = 192;

/// A rendered file: its bytes, its strong ETag (quoted) and content type.
#[derive(Debug)]
pub struct Body {
    pub bytes: Bytes,
    pub etag: Arc<str>,
    pub content_type: Arc<str>,
}

impl Body {
    /// `text` with its ETag: its 128-bit XXH3, in hex. A validator needs no
    /// cryptographic hash: it is only ever sent with the file itself, to a
    /// request that proved it may have it. SHA-256 here was 9% of a
    /// keep-alive benchmark's CPU; XXH3 costs a twentieth of that. Every
    /// node computes the same one, so a phone's `If-None-Match` holds
    /// whichever node it reaches.
    pub fn new(text: String, content_type: Arc<str>) -> Body {
        let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
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

/// The shared byte budget, the profiles' generation, and each template's
/// reference body.
#[derive(Debug)]
pub struct RenderedBudget {
    limit: usize,
    used: AtomicUsize,
    generation: AtomicU64,
    /// `family/template` → (generation, the template's reference body).
    references: Mutex<HashMap<String, (u64, Arc<Reference>)>>,
}

/// Templates with a reference body at most (they are the profiles' files).
const MAX_REFERENCES: usize = 1024;

impl RenderedBudget {
    pub fn new(limit: usize) -> Arc<RenderedBudget> {
        Arc::new(RenderedBudget { limit, used: AtomicUsize::new(0), generation: AtomicU64::new(0), references: Mutex::default() })
    }

    /// The reference body of `family`'s `template`: the first one kept
    /// (`text`, when there is none yet and the budget has room for it).
    fn reference(self: &Arc<Self>, family: &str, template: &str, text: &Bytes, generation: u64) -> Option<Arc<Reference>> {
        let name = format!("{family}/{template}");
        let mut references = self.references.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, r)) = references.get(&name) {
            if *g == generation {
                return Some(r.clone());
            }
        }
        if references.len() >= MAX_REFERENCES {
            references.clear();
        }
        let reference = Arc::new(Reference::new(self, text)?);
        references.insert(name, (generation, reference.clone()));
        Some(reference)
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
        self.references.lock().unwrap_or_else(|p| p.into_inner()).clear();
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

/// A template's first kept body: the others of the template keep only the
/// lines they do not share with it (a phone's file differs from its
/// neighbour's in a few lines: its account, names, MAC), so several times
/// more phones fit in the budget.
#[derive(Debug)]
struct Reference {
    text: Bytes,
    /// A piece's hash → where it first is (start, length).
    lines: HashMap<u64, (u32, u32)>,
    _charge: Charge,
}

/// Offsets at or above this are not kept as shared lines.
const OWN: u32 = 1 << 31;

/// `text` in pieces, each with where it starts: lines, cut after each `/`
/// and `=` too, so that a line differing only in a value (an account, a
/// token in a URL) shares its key and the rest of its URL.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0;
    text.split_inclusive(|&b| matches!(b, b'\n' | b'/' | b'=')).map(move |line| {
        let start = at;
        at += line.len();
        (start, line)
    })
}

/// FNV-1a: lines are short, and a collision only costs sharing (`find`
/// compares the bytes).
fn line_hash(line: &[u8]) -> u64 {
    line.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Reference {
    fn new(budget: &Arc<RenderedBudget>, text: &Bytes) -> Option<Reference> {
        if text.len() >= OWN as usize {
            return None;
        }
        let mut lines_at = HashMap::new();
        for (start, line) in lines(text) {
            lines_at.entry(line_hash(line)).or_insert((start as u32, line.len() as u32));
        }
        let charge = budget.charge(text.len() + lines_at.len() * 32 + OVERHEAD)?;
        Some(Reference { text: text.clone(), lines: lines_at, _charge: charge })
    }

    /// Where `line` is in the reference, if it is.
    fn find(&self, line: &[u8]) -> Option<u32> {
        let &(start, len) = self.lines.get(&line_hash(line))?;
        (&self.text[start as usize..(start + len) as usize] == line).then_some(start)
    }
}

/// A kept body's bytes: as they are, or as runs of its template's
/// reference and of its own bytes.
#[derive(Debug)]
enum Stored {
    Plain(Bytes),
    Shared {
        reference: Arc<Reference>,
        /// (start, length): in the reference, or with [`OWN`] set, in `own`.
        runs: Box<[(u32, u32)]>,
        own: Box<[u8]>,
        len: usize,
    },
}

impl Stored {
    /// `text` as runs of `reference` where that saves a fifth or more,
    /// checked to give back exactly `text`; else as it is.
    fn of(text: &Bytes, reference: Option<&Arc<Reference>>) -> Stored {
        let Some(reference) = reference.filter(|_| text.len() < OWN as usize) else { return Stored::Plain(text.clone()) };
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut own = Vec::new();
        for (_, line) in lines(text) {
            // The reference's next piece first (a piece such as `1\n` is in
            // it many times: the one that continues the run costs nothing).
            let next = runs.last().filter(|r| r.0 & OWN == 0).map(|r| (r.0 + r.1) as usize);
            let follows = next.filter(|&n| reference.text.get(n..n + line.len()) == Some(line)).map(|n| n as u32);
            let run = match follows.or_else(|| reference.find(line)) {
                Some(at) => (at, line.len() as u32),
                None => {
                    own.extend_from_slice(line);
                    ((own.len() - line.len()) as u32 | OWN, line.len() as u32)
                }
            };
            match runs.last_mut() {
                Some(last) if last.0 & OWN == run.0 & OWN && (last.0 & !OWN) + last.1 == run.0 & !OWN => last.1 += run.1,
                _ => runs.push(run),
            }
        }
        let shared = Stored::Shared { reference: reference.clone(), runs: runs.into(), own: own.into(), len: text.len() };
        if shared.cost() * 5 > text.len() * 4 || shared.bytes() != *text {
            return Stored::Plain(text.clone());
        }
        shared
    }

    fn bytes(&self) -> Bytes {
        match self {
            Stored::Plain(b) => b.clone(),
            Stored::Shared { reference, runs, own, len } => {
                let mut out = Vec::with_capacity(*len);
                for &(start, n) in runs.iter() {
                    let (from, start) = if start & OWN != 0 { (&own[..], start & !OWN) } else { (&reference.text[..], start) };
                    out.extend_from_slice(&from[start as usize..(start + n) as usize]);
                }
                Bytes::from(out)
            }
        }
    }

    /// Bytes it holds (the reference is counted once, by itself).
    fn cost(&self) -> usize {
        match self {
            Stored::Plain(b) => b.len(),
            Stored::Shared { runs, own, .. } => runs.len() * 8 + own.len() + 32,
        }
    }
}

#[derive(Debug)]
struct Kept {
    key: Key,
    stored: Stored,
    etag: Arc<str>,
    content_type: Arc<str>,
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
    pub fn get(&self, key: &KeyRef<'_>, now: i64) -> Option<Body> {
        let generation = self.budget.generation();
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let k = kept.iter().find(|k| k.key.is(key) && k.generation == generation && now < k.until)?;
        Some(Body { bytes: k.stored.bytes(), etag: k.etag.clone(), content_type: k.content_type.clone() })
    }

    /// Keeps `body` for `key` until `until` (Unix seconds), in place of a
    /// stale one, if the budget has room. `generation` is the one read
    /// before the profiles that rendered it were (a reload replaces the
    /// profiles, then bumps it: a body rendered across a reload is stale).
    pub fn put(&self, key: &KeyRef<'_>, body: &Body, until: i64, generation: u64) {
        // A full budget keeps nothing new: do not pay for the sharing pass
        // over the body only to drop it (with the budget full, that pass
        // was 12% of a keep-alive benchmark's CPU). A kept body costs about
        // a quarter of its size (see `Stored`); one that would just fit in
        // what is left may be skipped, which a cache can afford.
        let least = body.bytes.len() / 4 + body.etag.len() + std::mem::size_of::<Kept>() + KEY_OVERHEAD;
        if self.budget.used() + least > self.budget.limit() {
            return;
        }
        let reference = self.budget.reference(key.family, key.template, &body.bytes, generation);
        let stored = Stored::of(&body.bytes, reference.as_ref());
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|k| !k.key.is(key) && k.generation == generation);
        if kept.len() >= MAX_PER_PHONE {
            kept.clear();
        }
        let owned = Key::of(key);
        // Its slot in the list (grown one at a time: a phone has a few), its
        // key's strings, the ETag, and the allocations' rounding.
        let cost = stored.cost() + body.etag.len() + owned.len() + std::mem::size_of::<Kept>() + KEY_OVERHEAD;
        let Some(charge) = self.budget.charge(cost) else { return };
        let (etag, content_type) = (body.etag.clone(), body.content_type.clone());
        kept.reserve_exact(1);
        kept.push(Kept { key: owned, stored, etag, content_type, generation, until, _charge: charge });
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

/// A kept common file, the generation it was rendered under, its charge.
type KeptCommon = (Arc<Body>, u64, Charge);

/// Common files as rendered, bounded by count and by the budget.
#[derive(Debug)]
pub struct CommonBodies {
    budget: Arc<RenderedBudget>,
    kept: Mutex<HashMap<CommonKey, KeptCommon>>,
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

    /// Keeps `body` for `key`; `generation` as for [`PhoneBodies::put`].
    pub fn put(&self, key: CommonKey, body: &Arc<Body>, generation: u64) {
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
        bodies.put(&key("http://a/", "T46S"), &body("one"), 100, 0);
        assert_eq!(&bodies.get(&key("http://a/", "T46S"), 99).unwrap().bytes[..], b"one");
        assert!(bodies.get(&key("http://a/", "T46S"), 100).is_none(), "the local time may have changed");
        assert!(bodies.get(&key("https://a/", "T46S"), 0).is_none(), "another scheme");
        assert!(bodies.get(&key("http://a:8080/", "T46S"), 0).is_none(), "another port");
        assert!(bodies.get(&key("http://a/", "T48S"), 0).is_none(), "another model");
        assert!(bodies.get(&KeyRef { variant: "v2", ..key("http://a/", "T46S") }, 0).is_none(), "another variant");
        assert!(bodies.get(&KeyRef { template: "fam/other.cfg", ..key("http://a/", "T46S") }, 0).is_none());
        budget.clear_rendered();
        assert!(bodies.get(&key("http://a/", "T46S"), 0).is_none(), "the profiles were reloaded");
        bodies.put(&key("http://a/", "T46S"), &body("rendered across the reload"), 100, 0);
        assert!(bodies.get(&key("http://a/", "T46S"), 0).is_none(), "rendered with the old profiles");
        bodies.put(&key("http://a/", "T46S"), &body("two"), 100, budget.generation());
        assert_eq!(&bodies.get(&key("http://a/", "T46S"), 0).unwrap().bytes[..], b"two");
    }

    #[test]
    fn the_budget_is_counted_in_bytes_and_given_back() {
        let budget = RenderedBudget::new(5000);
        let (a, b) = (PhoneBodies::new(&budget), PhoneBodies::new(&budget));
        // The template's first body is its reference (counted once) and is
        // kept as one run of it.
        a.put(&key("http://a/", ""), &body(&"x".repeat(1500)), i64::MAX, 0);
        let with_reference = budget.used();
        assert!(with_reference > 1500 && with_reference < 2 * 1500, "{with_reference}");
        // One line each: nothing shared with the reference.
        b.put(&key("http://a/", ""), &body(&"y".repeat(1500)), i64::MAX, 0);
        let with_b = budget.used();
        assert!(with_b > with_reference + 1500 + 34, "{with_b}");
        b.put(&key("http://a/", ""), &body(&"z".repeat(1500)), i64::MAX, 0);
        assert_eq!(budget.used(), with_b, "a body for the same key replaces the old one");
        b.put(&key("http://b/", ""), &body(&"w".repeat(1500)), i64::MAX, 0);
        assert_eq!(b.len(), 1, "over the budget: not kept");
        assert!(budget.used() <= 5000);
        drop(b);
        assert_eq!(budget.used(), with_reference, "a dropped phone gives its bytes back");
        a.clear();
        assert!(budget.used() < with_reference && budget.used() > 1500);
        budget.clear_rendered();
        assert_eq!(budget.used(), 0, "the reference goes with the profiles' generation");
    }

    #[test]
    fn a_body_sharing_its_templates_lines_is_kept_small_and_given_back_exactly() {
        let budget = RenderedBudget::new(1 << 20);
        let file = |account: &str, tail: &str| {
            let mut f = String::new();
            for i in 0..100 {
                f.push_str(&format!("common.key.{i} = the same value for every phone of the site\n"));
                if i == 50 {
                    f.push_str(&format!("account.1.user_name = {account}\n"));
                }
            }
            f + tail
        };
        let (first, second) = (PhoneBodies::new(&budget), PhoneBodies::new(&budget));
        first.put(&key("http://a/", ""), &body(&file("100", "")), i64::MAX, 0);
        let before = budget.used();
        for (text, label) in [
            (file("200", ""), "one line differs"),
            (file("200", "no newline at the end"), "a last line of its own"),
            (file("200", "\n\n"), "empty lines"),
            ("account.1.user_name = 100\n".repeat(3), "the reference's lines, out of order"),
            (String::new(), "empty"),
        ] {
            second.put(&key("http://a/", ""), &body(&text), i64::MAX, 0);
            let got = second.get(&key("http://a/", ""), 0).unwrap();
            assert_eq!(std::str::from_utf8(&got.bytes).unwrap(), text, "{label}");
            assert_eq!(got.etag, body(&text).etag, "{label}");
        }
        second.put(&key("http://a/", ""), &body(&file("200", "")), i64::MAX, 0);
        let cost = budget.used() - before;
        assert!(cost < 600, "a 6 KB file differing in one line costs {cost} bytes");
        assert_eq!(&first.get(&key("http://a/", ""), 0).unwrap().bytes[..], file("100", "").as_bytes());
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
        common.put(k.clone(), &body("common"), 0);
        assert!(common.get(&k).is_some());
        assert!(common.get(&CommonKey { base_url: "http://a/p/other/".into(), ..k.clone() }).is_none());
        budget.clear_rendered();
        assert!(common.get(&k).is_none());
        common.clear();
        assert_eq!(budget.used(), 0);
    }
}
