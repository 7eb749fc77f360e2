//! Which unexpected argument qemu-ga names.
//!
//! QEMU's input visitor (`qapi/qobject-input-visitor.c`) copies the keys
//! of an arguments dict into a GLib `GHashTable` (`g_str_hash`,
//! inserted in QDict iteration order), removes every member it visits
//! (in schema order, only members that are present), and
//! `qobject_input_check_struct()` reports the *first key that
//! `g_hash_table_iter_next()` returns*: the lowest occupied slot of the
//! table. That slot depends on GLib's open addressing (prime modulus for
//! the first probe, triangular probing, in-place resizes on insert and on
//! remove), so this module replays exactly those operations on the key
//! hashes (`(hash * 11) % prime`, grow/shrink by `nnodes * 1.333`, as in
//! the GLib 2.74 of Debian 12, against which it was checked with
//! qemu-ga 10.0.2; later releases keep that code). It runs only when
//! there is more than one unexpected member, in O(n).

use crate::json::utf8::mod_utf8_bytes;

const MIN_SHIFT: u32 = 3;
const UNUSED: u32 = 0;
const TOMBSTONE: u32 = 1;

/// GLib's `prime_mod[]`: the largest prime below each power of two.
const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139, 524287,
    1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689, 268435399, 536870909, 1073741789,
    2147483647,
];

/// `g_str_hash()` (djb2 over *signed* chars) of the C string QEMU holds
/// for `key`, adjusted as `g_hash_table_lookup_node()` does (0 and 1 mark
/// empty and deleted slots).
pub fn g_str_hash(key: &str) -> u32 {
    let step = |h: u32, b: u8| h.wrapping_shl(5).wrapping_add(h).wrapping_add(b as i8 as i32 as u32);
    let h =
        if key.as_bytes().contains(&0) { mod_utf8_bytes(key).fold(5381, step) } else { key.bytes().fold(5381, step) };
    if h <= TOMBSTONE {
        2
    } else {
        h
    }
}

/// The slot layout of a `GHashTable` whose values are the key indices.
struct Table {
    shift: u32,
    nnodes: usize,
    noccupied: usize,
    hashes: Vec<u32>,
    keys: Vec<usize>,
}

impl Table {
    fn new() -> Self {
        let size = 1usize << MIN_SHIFT;
        Table { shift: MIN_SHIFT, nnodes: 0, noccupied: 0, hashes: vec![UNUSED; size], keys: vec![0; size] }
    }

    fn size(&self) -> usize {
        1usize << self.shift
    }

    fn mask(&self) -> usize {
        self.size() - 1
    }

    fn hash_to_index(&self, hash: u32) -> usize {
        (hash.wrapping_mul(11) % PRIME_MOD[self.shift as usize]) as usize
    }

    /// `g_hash_table_lookup_node()`: the slot holding `key`, or the slot an
    /// insertion would use (the first tombstone seen, else the empty slot).
    fn lookup(&self, hash: u32, key: usize, names: &[&str]) -> usize {
        let mut i = self.hash_to_index(hash);
        let mut step = 0;
        let mut tombstone = None;
        loop {
            let h = self.hashes[i];
            if h == UNUSED {
                return tombstone.unwrap_or(i);
            }
            if h == hash && names[self.keys[i]] == names[key] {
                return i;
            }
            if h == TOMBSTONE && tombstone.is_none() {
                tombstone = Some(i);
            }
            step += 1;
            i = (i + step) & self.mask();
        }
    }

    fn insert(&mut self, hash: u32, key: usize, names: &[&str]) {
        let i = self.lookup(hash, key, names);
        let old = self.hashes[i];
        if old > TOMBSTONE {
            return; // already present (QDict keys are unique)
        }
        self.hashes[i] = hash;
        self.keys[i] = key;
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    fn remove(&mut self, hash: u32, key: usize, names: &[&str]) {
        let i = self.lookup(hash, key, names);
        if self.hashes[i] <= TOMBSTONE {
            return;
        }
        self.hashes[i] = TOMBSTONE;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    fn maybe_resize(&mut self) {
        let size = self.size();
        let occ = self.noccupied;
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT) || size <= occ + occ / 16 {
            self.resize();
        }
    }

    /// `g_hash_table_resize()` with `resize_map()`: rehash in place, an
    /// entry that lands on a not yet relocated one evicts it and that one
    /// is placed next.
    fn resize(&mut self) {
        let old_size = self.size();
        // gint arithmetic: nnodes * 1.333 truncated.
        let target = (self.nnodes as f64 * 1.333) as u64;
        let closest = 64 - target.leading_zeros();
        self.shift = closest.clamp(MIN_SHIFT, 31);
        let new_size = self.size();
        if new_size > old_size {
            self.hashes.resize(new_size, UNUSED);
            self.keys.resize(new_size, 0);
        }
        let mut placed = vec![false; new_size.max(old_size)];
        for i in 0..old_size {
            let mut hash = self.hashes[i];
            if hash <= TOMBSTONE {
                self.hashes[i] = UNUSED;
                continue;
            }
            if placed[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut key = self.keys[i];
            loop {
                let mut j = self.hash_to_index(hash);
                let mut step = 0;
                while placed[j] {
                    step += 1;
                    j = (j + step) & self.mask();
                }
                placed[j] = true;
                let replaced = self.hashes[j];
                self.hashes[j] = hash;
                if replaced <= TOMBSTONE {
                    self.keys[j] = key;
                    break;
                }
                hash = replaced;
                std::mem::swap(&mut self.keys[j], &mut key);
            }
        }
        if new_size < old_size {
            self.hashes.truncate(new_size);
            self.keys.truncate(new_size);
        }
        self.noccupied = self.nnodes;
    }
}

/// The key `qobject_input_check_struct()` reports. `keys` are all members
/// of the dict in QDict iteration order; `visited` are the indices (into
/// `keys`) of the members the visitor took, in the order it took them.
/// Returns an index into `keys`, or `None` when every key was visited.
pub fn first_unvisited(keys: &[&str], visited: &[usize]) -> Option<usize> {
    let hashes: Vec<u32> = keys.iter().map(|k| g_str_hash(k)).collect();
    let mut t = Table::new();
    for (i, &h) in hashes.iter().enumerate() {
        t.insert(h, i, keys);
    }
    for &v in visited {
        if let Some(&h) = hashes.get(v) {
            t.remove(h, v, keys);
        }
    }
    t.hashes.iter().position(|&h| h > TOMBSTONE).map(|slot| t.keys[slot])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_str_hash_is_djb2_over_signed_chars() {
        assert_eq!(g_str_hash(""), 5381);
        assert_eq!(g_str_hash("a"), 5381 * 33 + 97);
        // 0xC3 as a signed char is -61.
        assert_eq!(g_str_hash("\u{e9}"), ((5381u32 * 33).wrapping_sub(61)).wrapping_mul(33).wrapping_sub(87));
        // U+0000 is hashed as C0 80 (both negative).
        assert_eq!(g_str_hash("\0"), ((5381u32 * 33).wrapping_sub(64)).wrapping_mul(33).wrapping_sub(128));
    }

    #[test]
    fn small_tables_iterate_by_probe_slot() {
        // One key: it is the answer.
        assert_eq!(first_unvisited(&["foo"], &[]), Some(0));
        assert_eq!(first_unvisited(&["foo"], &[0]), None);
        // Two keys in an 8-slot table (mod 7): the lower slot wins.
        let keys = ["a", "b"];
        let slot = |k: &str| (g_str_hash(k).wrapping_mul(11) % 7) as usize;
        let expect = if slot("a") <= slot("b") { 0 } else { 1 };
        assert_eq!(first_unvisited(&keys, &[]), Some(expect));
        assert_eq!(first_unvisited(&keys, &[expect]), Some(1 - expect));
    }

    #[test]
    fn resizes_keep_every_key_and_shrink_on_removal() {
        let names: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let mut t = Table::new();
        for (i, k) in keys.iter().enumerate() {
            t.insert(g_str_hash(k), i, &keys);
        }
        assert_eq!(t.nnodes, 1000);
        assert_eq!(t.size(), 2048);
        for (i, k) in keys.iter().enumerate() {
            let slot = t.lookup(g_str_hash(k), i, &keys);
            assert_eq!(t.keys[slot], i, "key {k} findable after resizes");
        }
        for (i, k) in keys.iter().enumerate().take(990) {
            t.remove(g_str_hash(k), i, &keys);
        }
        assert_eq!(t.nnodes, 10);
        assert!(t.size() <= 64, "table shrank, size {}", t.size());
        let mut left: Vec<usize> = t.hashes.iter().zip(&t.keys).filter(|(h, _)| **h > 1).map(|(_, k)| *k).collect();
        left.sort_unstable();
        assert_eq!(left, (990..1000).collect::<Vec<_>>());
    }
}
