//! The dependency index: the one place that answers "which objects does a change to X touch".
//!
//! Two relations are kept, both as forward and reverse maps:
//! - **references**: what a translated object (a Route) looked up while it was translated —
//!   the Services its backends name, whether they existed or not — so a Service that changes
//!   or appears re-translates exactly the Routes that asked for it;
//! - **parts**: objects that are part of another (an EndpointSlice of its Service), by the
//!   link the part declares ([`crate::kinds::Object::part_of`]), so a Service's endpoints are
//!   found without scanning every slice, and a slice's change counts as its Service's.
//!
//! ```text
//! [ Route ] --references--> [ Service ] <--part of-- [ EndpointSlice ]
//! ```

use std::collections::{BTreeSet, HashMap};

use crate::kinds::ObjectKey;

/// Who refers to whom, and what is part of what.
#[derive(Debug, Default)]
pub struct Refs {
    references: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
    referrers: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
    whole_of: HashMap<ObjectKey, ObjectKey>,
    parts: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
}

impl Refs {
    /// Records everything `referrer` refers to now, replacing what it referred to before.
    pub fn set_references(&mut self, referrer: &ObjectKey, references: BTreeSet<ObjectKey>) {
        self.remove_referrer(referrer);
        for reference in &references {
            self.referrers
                .entry(reference.clone())
                .or_default()
                .insert(referrer.clone());
        }
        if !references.is_empty() {
            self.references.insert(referrer.clone(), references);
        }
    }

    /// Forgets what `referrer` refers to (it was deleted).
    pub fn remove_referrer(&mut self, referrer: &ObjectKey) {
        for reference in self.references.remove(referrer).into_iter().flatten() {
            remove_from(&mut self.referrers, &reference, referrer);
        }
    }

    /// The objects that refer to `key`.
    pub fn referrers_of<'a>(
        &'a self,
        key: &ObjectKey,
    ) -> impl Iterator<Item = &'a ObjectKey> + use<'a> {
        self.referrers.get(key).into_iter().flatten()
    }

    /// Records that `part` is part of `whole` now (or of nothing); returns what it was part of.
    pub fn set_whole(&mut self, part: &ObjectKey, whole: Option<ObjectKey>) -> Option<ObjectKey> {
        let before = self.whole_of.remove(part);
        if let Some(before) = &before {
            remove_from(&mut self.parts, before, part);
        }
        if let Some(whole) = whole {
            self.parts
                .entry(whole.clone())
                .or_default()
                .insert(part.clone());
            self.whole_of.insert(part.clone(), whole);
        }
        before
    }

    /// The objects that are part of `whole` (a Service's EndpointSlices).
    pub fn parts_of<'a>(
        &'a self,
        whole: &ObjectKey,
    ) -> impl Iterator<Item = &'a ObjectKey> + use<'a> {
        self.parts.get(whole).into_iter().flatten()
    }
}

fn remove_from(
    map: &mut HashMap<ObjectKey, BTreeSet<ObjectKey>>,
    key: &ObjectKey,
    value: &ObjectKey,
) {
    if let Some(values) = map.get_mut(key) {
        values.remove(value);
        if values.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use weir_contract::NamespacedName;

    fn key(kind: Kind, name: &str) -> ObjectKey {
        ObjectKey::new(kind, NamespacedName::new("default", name))
    }

    fn names<'a>(keys: impl Iterator<Item = &'a ObjectKey>) -> Vec<&'a str> {
        keys.map(|k| k.id.name.as_str()).collect()
    }

    #[test]
    fn routes_are_indexed_by_the_services_they_refer_to() {
        let mut refs = Refs::default();
        let echo = key(Kind::Service, "echo");
        refs.set_references(&key(Kind::Route, "a"), BTreeSet::from([echo.clone()]));
        refs.set_references(&key(Kind::Route, "b"), BTreeSet::from([echo.clone()]));
        assert_eq!(names(refs.referrers_of(&echo)), ["a", "b"]);
        assert_eq!(refs.referrers_of(&key(Kind::Service, "other")).count(), 0);
    }

    #[test]
    fn new_references_replace_the_old_and_a_removed_referrer_refers_to_nothing() {
        let mut refs = Refs::default();
        let (old, new) = (key(Kind::Service, "old"), key(Kind::Service, "new"));
        let route = key(Kind::Route, "r");
        refs.set_references(&route, BTreeSet::from([old.clone()]));
        refs.set_references(&route, BTreeSet::from([new.clone()]));
        assert_eq!(refs.referrers_of(&old).count(), 0);
        assert_eq!(names(refs.referrers_of(&new)), ["r"]);
        refs.remove_referrer(&route);
        assert_eq!(refs.referrers_of(&new).count(), 0);
    }

    #[test]
    fn a_part_moves_to_its_new_whole() {
        let mut refs = Refs::default();
        let slice = key(Kind::EndpointSlice, "s");
        let (old, new) = (key(Kind::Service, "old"), key(Kind::Service, "new"));
        assert_eq!(refs.set_whole(&slice, Some(old.clone())), None);
        assert_eq!(refs.set_whole(&slice, Some(new.clone())), Some(old.clone()));
        assert_eq!(refs.parts_of(&old).count(), 0);
        assert_eq!(names(refs.parts_of(&new)), ["s"]);
        assert_eq!(refs.set_whole(&slice, None), Some(new.clone()));
        assert_eq!(refs.parts_of(&new).count(), 0);
    }
}
