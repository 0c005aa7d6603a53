//! Which services' selectors a scrape job must step aside for. Selectors of one namespace by
//! different label keys are taken as disjoint, yet a pod could carry both; the service declared
//! first owns it, so a later service's job drops the pods of every earlier service that selects
//! by none of its keys. Selectors sharing a key are told apart by its value (the spec refuses
//! two that agree on every key they share), so they need nothing.
//!
//! Found through the namespace's groups of selectors with one set of keys, not by comparing
//! every pair: a spec of many services stays linear, and the spec bounds the groups
//! ([`MAX_KEY_SETS`]) and the exclusions they make ([`MAX_EXCLUSIONS`]).

use std::collections::{BTreeSet, HashMap};

/// Different sets of selector keys one namespace may use.
pub const MAX_KEY_SETS: usize = 32;
/// Earlier services all scrape jobs together may have to step aside for.
pub const MAX_EXCLUSIONS: usize = 10_000;

/// The selectors of one namespace with one set of keys.
#[derive(Debug)]
struct KeySetGroup<'a> {
    keys: BTreeSet<&'a str>,
    /// In declaration order.
    positions: Vec<usize>,
}

/// The selectors seen so far, by namespace and set of keys.
#[derive(Debug, Default)]
pub struct KeySetGroups<'a> {
    by_namespace: HashMap<&'a str, Vec<KeySetGroup<'a>>>,
}

impl<'a> KeySetGroups<'a> {
    /// Adds the selector at `position` (positions ascending); returns how many key sets its
    /// namespace uses now.
    pub fn add(&mut self, namespace: &'a str, keys: BTreeSet<&'a str>, position: usize) -> usize {
        let groups = self.by_namespace.entry(namespace).or_default();
        match groups.iter_mut().find(|group| group.keys == keys) {
            Some(group) => group.positions.push(position),
            None => groups.push(KeySetGroup {
                keys,
                positions: vec![position],
            }),
        }
        groups.len()
    }

    /// For each group of `namespace` that uses none of `keys`, its positions before `before`.
    fn disjoint_groups_before<'s>(
        &'s self,
        namespace: &str,
        keys: &'s BTreeSet<&str>,
        before: usize,
    ) -> impl Iterator<Item = &'s [usize]> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(move |group| group.keys.is_disjoint(keys))
            .map(move |group| {
                let earlier = group.positions.partition_point(|&p| p < before);
                &group.positions[..earlier]
            })
    }

    /// The positions before `before` in `namespace` whose selectors use none of `keys`, in
    /// declaration order.
    pub fn disjoint_before(
        &self,
        namespace: &str,
        keys: &BTreeSet<&str>,
        before: usize,
    ) -> Vec<usize> {
        let mut found: Vec<usize> = self
            .disjoint_groups_before(namespace, keys, before)
            .flatten()
            .copied()
            .collect();
        found.sort_unstable();
        found
    }

    /// How many positions before `before` in `namespace` use none of `keys`.
    pub fn count_disjoint_before(
        &self,
        namespace: &str,
        keys: &BTreeSet<&str>,
        before: usize,
    ) -> usize {
        self.disjoint_groups_before(namespace, keys, before)
            .map(<[usize]>::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
        names.iter().copied().collect()
    }

    #[test]
    fn a_job_steps_aside_only_for_earlier_selectors_by_other_keys_of_its_namespace() {
        let mut groups = KeySetGroups::default();
        groups.add("shop", keys(&["app"]), 0);
        groups.add("shop", keys(&["app"]), 1);
        groups.add("ops", keys(&["component"]), 2);
        assert_eq!(groups.add("shop", keys(&["component"]), 3), 2);
        groups.add("shop", keys(&["app", "tier"]), 4);
        assert_eq!(
            groups.disjoint_before("shop", &keys(&["component"]), 3),
            [0, 1]
        );
        assert_eq!(
            groups.disjoint_before("shop", &keys(&["component"]), 1),
            [0]
        );
        assert_eq!(
            groups.disjoint_before("shop", &keys(&["app", "tier"]), 4),
            [3]
        );
        assert_eq!(groups.count_disjoint_before("shop", &keys(&["x"]), 5), 4);
        assert!(
            groups
                .disjoint_before("nowhere", &keys(&["x"]), 9)
                .is_empty()
        );
    }
}
