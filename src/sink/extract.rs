//! One pass over a JSON document that takes out only the values a route's
//! JSON pointers name, as slices of the input: no `serde_json::Value` tree
//! and no allocation for documents of objects, arrays, numbers and strings
//! without `\u` escapes.
//!
//! The pointers are compiled once (at `RowDecoder::new`) into a trie of
//! unescaped segments; the walk descends only into wanted keys and array
//! elements and lets serde_json skip the rest. What the walk accepts is
//! then checked to be exactly what `serde_json::from_slice::<Value>`
//! accepts (the tree the decoder used to build), because a document that
//! tree refused is a dead letter: skipped parts are only checked for
//! syntax by serde_json, so UTF-8, `\u` escapes (lone surrogates) and the
//! nesting limit are checked here, the last two by parsing the tree only
//! when the document could fail them.

use std::fmt;
use std::ops::Range;

use serde::de::{
    Deserialize as _, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::value::RawValue;

use super::coerce::nested_deeper_than;

/// serde_json refuses a tree nested this deep (`remaining_depth` 128,
/// refused when it reaches zero).
const TREE_DEPTH_LIMIT: usize = 128;

/// Compiled JSON pointers: a trie of path segments whose leaves are slots.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    nodes: Vec<Node>,
    slots: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Set when a pointer ends here.
    slot: Option<usize>,
    /// Children by object key, sorted for binary search.
    keys: Vec<(Box<str>, usize)>,
    /// Children by array index (segments that are one), sorted.
    indexes: Vec<(usize, usize)>,
    /// The slots of this node and everything under it (numbered depth
    /// first, so contiguous): a repeated object key clears them, as the
    /// tree keeps only the last value of a key.
    under: Range<usize>,
}

/// How `Value::pointer` reads an array index: digits, no leading zero, no
/// sign.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

impl Paths {
    /// Compiles `pointers` (RFC 6901, as `Value::pointer` reads them); the
    /// result gives each pointer's slot, `None` for one that can match
    /// nothing (non-empty and not starting with `/`).
    pub fn compile<'p>(pointers: impl IntoIterator<Item = &'p str>) -> (Paths, Vec<Option<usize>>) {
        let mut nodes = vec![Node::default()];
        let mut ends = Vec::new();
        for pointer in pointers {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                ends.push(None);
                continue;
            }
            let mut at = 0;
            for token in pointer.split('/').skip(1) {
                // The same replacements, in the same order, as Value::pointer.
                let key = token.replace("~1", "/").replace("~0", "~");
                let found = nodes[at]
                    .keys
                    .iter()
                    .find(|(k, _)| **k == *key)
                    .map(|c| c.1);
                at = match found {
                    Some(child) => child,
                    None => {
                        nodes.push(Node::default());
                        let child = nodes.len() - 1;
                        if let Some(i) = array_index(&key) {
                            nodes[at].indexes.push((i, child));
                        }
                        nodes[at].keys.push((key.into_boxed_str(), child));
                        child
                    }
                };
            }
            ends.push(Some(at));
        }
        for node in &mut nodes {
            node.keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            node.indexes.sort_unstable();
        }
        let mut paths = Paths { nodes, slots: 0 };
        let mut wanted = vec![false; paths.nodes.len()];
        for &end in ends.iter().flatten() {
            wanted[end] = true;
        }
        paths.number(0, &wanted);
        let slots = ends
            .iter()
            .map(|end| end.and_then(|n| paths.nodes[n].slot))
            .collect();
        (paths, slots)
    }

    /// Gives wanted nodes their slots depth first (iteratively: pointers
    /// may be long).
    fn number(&mut self, root: usize, wanted: &[bool]) {
        // (node, children visited yet)
        let mut stack = vec![(root, false)];
        while let Some((node, done)) = stack.pop() {
            if done {
                self.nodes[node].under.end = self.slots;
                continue;
            }
            self.nodes[node].under.start = self.slots;
            if wanted[node] {
                self.nodes[node].slot = Some(self.slots);
                self.slots += 1;
            }
            stack.push((node, true));
            for &(_, child) in self.nodes[node].keys.iter().rev() {
                stack.push((child, false));
            }
        }
    }

    /// How many slots [`Paths::extract`] fills.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Whether no pointer was compiled.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Walks `input` once, setting each slot to the text of the value its
    /// pointer names (`None` where there is none). Errors exactly when
    /// `serde_json::from_slice::<Value>(input)` does, with its message when
    /// it is the tree that refuses.
    pub fn extract<'de>(
        &self,
        input: &'de [u8],
        out: &mut [Option<&'de str>],
    ) -> Result<(), serde_json::Error> {
        out.fill(None);
        let seed = NodeSeed {
            paths: self,
            node: 0,
            out,
        };
        // A document checked to be UTF-8 once, here, is walked as text: a
        // walk of bytes checks each value it takes (and each string it
        // reads) again. One that is not is walked as bytes, for serde_json's
        // own error where its syntax is wrong first.
        let utf8 = match std::str::from_utf8(input) {
            Ok(text) => {
                let mut de = serde_json::Deserializer::from_str(text);
                seed.deserialize(&mut de)?;
                de.end()?;
                true
            }
            Err(_) => {
                let mut de = serde_json::Deserializer::from_slice(input);
                seed.deserialize(&mut de)?;
                de.end()?;
                false
            }
        };
        if !utf8 || tree_may_refuse(input) {
            serde_json::from_slice::<serde_json::Value>(input)?;
        }
        Ok(())
    }
}

/// Whether a UTF-8 document serde_json checked for syntax only (as it
/// skips values) might still be refused as a tree: a `\u` escape (a lone
/// surrogate), or enough brackets to nest past the tree's depth limit. (A
/// byte that is not UTF-8 is checked by the caller.)
fn tree_may_refuse(input: &[u8]) -> bool {
    // A backslash first: memchr sets nothing up, a substring search
    // does, and most documents hold no backslash at all.
    (memchr::memchr(b'\\', input).is_some() && memchr::memmem::find(input, b"\\u").is_some())
        // Nesting as deep as the limit is nesting deeper than one less.
        || (input.len() >= 2 * TREE_DEPTH_LIMIT && nested_deeper_than(input, TREE_DEPTH_LIMIT - 1))
}

/// The value at one trie node.
struct NodeSeed<'p, 's, 'de> {
    paths: &'p Paths,
    node: usize,
    out: &'s mut [Option<&'de str>],
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let node = &self.paths.nodes[self.node];
        let Some(slot) = node.slot else {
            return d.deserialize_any(self);
        };
        let raw = <&'de RawValue>::deserialize(d)?.get();
        if let Some(cell) = self.out.get_mut(slot) {
            *cell = Some(raw);
        }
        if node.keys.is_empty() {
            return Ok(());
        }
        // Wanted itself and below (`/a` and `/a/b`): walk the taken text
        // again for the pointers below it.
        let mut de = serde_json::Deserializer::from_str(raw);
        let below = NodeSeed {
            paths: self.paths,
            node: self.node,
            out: self.out,
        };
        below.walk(&mut de).map_err(D::Error::custom)
    }
}

impl<'de> NodeSeed<'_, '_, 'de> {
    fn walk(
        self,
        de: &mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
    ) -> Result<(), serde_json::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // Scalars hold nothing a pointer could go on into.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let node = &self.paths.nodes[self.node];
        while let Some(child) = map.next_key_seed(KeySeed(&node.keys))? {
            match child {
                Some(child) => {
                    // A repeated key replaces what the earlier one gave.
                    let under = self.paths.nodes[child].under.clone();
                    if let Some(slots) = self.out.get_mut(under) {
                        slots.fill(None);
                    }
                    map.next_value_seed(NodeSeed {
                        paths: self.paths,
                        node: child,
                        out: &mut *self.out,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let indexes = &self.paths.nodes[self.node].indexes;
        let mut i = 0;
        loop {
            let more = match indexes.binary_search_by_key(&i, |c| c.0) {
                Ok(at) => seq
                    .next_element_seed(NodeSeed {
                        paths: self.paths,
                        node: indexes[at].1,
                        out: &mut *self.out,
                    })?
                    .is_some(),
                Err(_) => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
}

/// An object key, looked up among a node's children without allocating
/// (serde_json hands over the key borrowed, or unescaped in its scratch).
struct KeySeed<'p>(&'p [(Box<str>, usize)]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        let children = self.0;
        // Most objects' keys are short and a node has few children: a
        // length check first skips nearly every byte comparison.
        if children.len() <= 8 {
            return Ok(children
                .iter()
                .find(|(k, _)| k.len() == key.len() && **k == *key)
                .map(|c| c.1));
        }
        Ok(children
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|at| children[at].1))
    }
}

#[cfg(test)]
mod tests;
