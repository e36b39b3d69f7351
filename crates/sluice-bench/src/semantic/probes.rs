//! The labelled probe set of the semantic-cache quality bench, and how an
//! answer it served is judged.
//!
//! The set (`data/semantic_probes.json`) holds meaning groups: each group
//! is one question asked several ways. A near miss is a group of its own
//! that names its twin (`near_miss_of`), the group it copies but for one
//! thing that matters (`changes`: the object, the action, a number, a
//! negation, a date); serving it the twin's answer is a wrong answer.
//!
//! Judging is exact: the mock answers a chat job with a pure function of
//! its last user message ([`sluice_mock::text::generate`]), and no two
//! probes share a text, so a served answer names the one probe whose
//! provider call made it. A hit is right iff that probe is of the same
//! meaning group. (Comparing with the group's first question alone would
//! not be exact: when a paraphrase misses, its own answer is cached, and a
//! later paraphrase served that answer is right too.)

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

/// The probe set shipped with the bench.
pub const BUILT_IN: &str = include_str!("../../data/semantic_probes.json");

/// What a near miss may change.
const CHANGES: [&str; 5] = ["object", "action", "number", "negation", "date"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSet {
    /// The system prompt every probe is sent with, as a real feature has one.
    pub system: String,
    pub groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    /// The group this one copies but for one thing that matters.
    #[serde(default)]
    pub near_miss_of: Option<String>,
    /// What that thing is (one of [`CHANGES`]).
    #[serde(default)]
    pub changes: Option<String>,
    pub phrasings: Vec<String>,
}

/// One question as sent: its group (index into the set's groups) and text.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub group: usize,
    pub text: String,
}

impl ProbeSet {
    /// Parses and checks a probe set.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let set: Self = serde_json::from_str(text)?;
        set.check()?;
        Ok(set)
    }

    /// What is wrong with the set's shape, if anything: every group has a
    /// phrasing, ids and texts are unique, and every near miss names an
    /// earlier group other than itself and what it changes.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.system.trim().is_empty(), "the system prompt is empty");
        anyhow::ensure!(!self.groups.is_empty(), "no groups");
        let mut ids = HashSet::new();
        let mut texts = HashSet::new();
        for g in &self.groups {
            anyhow::ensure!(!g.id.is_empty(), "a group has no id");
            anyhow::ensure!(!g.phrasings.is_empty(), "group {} has no phrasing", g.id);
            for p in &g.phrasings {
                anyhow::ensure!(!p.trim().is_empty(), "group {} has an empty phrasing", g.id);
                anyhow::ensure!(
                    texts.insert(p.as_str()),
                    "the phrasing {p:?} is there twice"
                );
            }
            match (&g.near_miss_of, &g.changes) {
                (None, None) => {}
                (Some(twin), Some(change)) => {
                    anyhow::ensure!(
                        ids.contains(twin.as_str()),
                        "near miss {} names {twin}, which is not an earlier group",
                        g.id
                    );
                    anyhow::ensure!(
                        CHANGES.contains(&change.as_str()),
                        "near miss {} changes {change:?}, not one of {CHANGES:?}",
                        g.id
                    );
                }
                _ => anyhow::bail!("group {}: near_miss_of and changes go together", g.id),
            }
            anyhow::ensure!(
                ids.insert(g.id.as_str()),
                "the group id {} is there twice",
                g.id
            );
        }
        Ok(())
    }

    /// The probes in the order they are sent: the first phrasing of every
    /// group (in the file's order), then every second phrasing, and so on.
    /// So a near miss comes after its twin's first question is cached, and
    /// each paraphrase after the question it repeats.
    pub fn order(&self) -> Vec<Probe> {
        let rounds = self.groups.iter().map(|g| g.phrasings.len()).max();
        (0..rounds.unwrap_or(0))
            .flat_map(|round| {
                self.groups
                    .iter()
                    .enumerate()
                    .filter_map(move |(group, g)| {
                        g.phrasings.get(round).map(|text| Probe {
                            group,
                            text: text.clone(),
                        })
                    })
            })
            .collect()
    }

    /// Questions that repeat an earlier one's meaning: all but the first
    /// of each group. A perfect cache answers each of them, and no other.
    pub fn possible_repeats(&self) -> usize {
        self.groups.iter().map(|g| g.phrasings.len() - 1).sum()
    }

    pub fn is_near_miss(&self, group: usize) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.near_miss_of.is_some())
    }
}

/// The verdict on one probe answered from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answered with the answer of a question of the same meaning.
    Right,
    /// Answered with the answer of another meaning's question (`source`,
    /// its index in the order), or with an answer no probe was given.
    Wrong { source: Option<usize> },
}

/// Judges answers against the probes they were served for.
pub struct Judge<'a> {
    probes: &'a [Probe],
    /// Each probe's own answer from the provider, to its index.
    source: HashMap<String, usize>,
}

impl<'a> Judge<'a> {
    /// `answer` is what the provider answers a question: a pure function
    /// of its text that gives distinct texts distinct answers.
    pub fn new(probes: &'a [Probe], answer: impl Fn(&str) -> String) -> Self {
        let source = probes
            .iter()
            .enumerate()
            .map(|(i, p)| (answer(&p.text), i))
            .collect();
        Self { probes, source }
    }

    /// The verdict on probe `i` answered from the cache with `served`.
    pub fn hit(&self, i: usize, served: &str) -> Verdict {
        let source = self.source.get(served).copied();
        let same = source
            .filter(|&s| s < i)
            .zip(self.probes.get(i))
            .and_then(|(s, probe)| self.probes.get(s).map(|p| p.group == probe.group));
        match same {
            Some(true) => Verdict::Right,
            _ => Verdict::Wrong { source },
        }
    }

    /// Whether `answer`, given by the provider on a miss, is probe `i`'s own.
    pub fn own(&self, i: usize, answer: &str) -> bool {
        self.source.get(answer) == Some(&i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> ProbeSet {
        ProbeSet::parse(BUILT_IN).unwrap()
    }

    #[test]
    fn the_built_in_set_has_its_shape() {
        let set = built_in();
        let plain = set.groups.iter().filter(|g| g.near_miss_of.is_none());
        assert!(plain.count() >= 40, "at least 40 meaning groups");
        for g in set.groups.iter().filter(|g| g.near_miss_of.is_none()) {
            assert!(
                (3..=5).contains(&g.phrasings.len()),
                "{}: 3 to 5 phrasings",
                g.id
            );
        }
        assert!(
            set.groups
                .iter()
                .filter(|g| g.near_miss_of.is_some())
                .count()
                >= 20
        );
        let order = set.order();
        assert!(
            (180..=260).contains(&order.len()),
            "{} questions",
            order.len()
        );
        assert_eq!(
            order.len(),
            set.possible_repeats() + set.groups.len(),
            "each group's first question is no repeat"
        );
        // Every near miss comes after its twin's first question.
        for (i, probe) in order.iter().enumerate() {
            let Some(twin) = &set.groups[probe.group].near_miss_of else {
                continue;
            };
            let twin = set.groups.iter().position(|g| &g.id == twin).unwrap();
            assert!(order[..i].iter().any(|p| p.group == twin));
        }
    }

    fn set(groups: serde_json::Value) -> anyhow::Result<ProbeSet> {
        ProbeSet::parse(&serde_json::json!({"system": "Be brief.", "groups": groups}).to_string())
    }

    #[test]
    fn a_malformed_set_is_refused() {
        let ok = set(serde_json::json!([
            {"id": "a", "phrasings": ["x", "y"]},
            {"id": "b", "near_miss_of": "a", "changes": "object", "phrasings": ["z"]}
        ]));
        assert!(ok.is_ok(), "{ok:?}");
        for (bad, why) in [
            (serde_json::json!([]), "no groups"),
            (
                serde_json::json!([{"id": "a", "phrasings": []}]),
                "empty group",
            ),
            (
                serde_json::json!([{"id": "a", "phrasings": ["x"]}, {"id": "a", "phrasings": ["y"]}]),
                "duplicate id",
            ),
            (
                serde_json::json!([{"id": "a", "phrasings": ["x"]}, {"id": "b", "phrasings": ["x"]}]),
                "duplicate text",
            ),
            (
                serde_json::json!([{"id": "b", "near_miss_of": "a", "changes": "object", "phrasings": ["z"]},
                                   {"id": "a", "phrasings": ["x"]}]),
                "twin not earlier",
            ),
            (
                serde_json::json!([{"id": "a", "near_miss_of": "a", "changes": "object", "phrasings": ["z"]}]),
                "its own twin",
            ),
            (
                serde_json::json!([{"id": "a", "phrasings": ["x"]},
                                   {"id": "b", "near_miss_of": "a", "phrasings": ["z"]}]),
                "no change named",
            ),
            (
                serde_json::json!([{"id": "a", "phrasings": ["x"]},
                                   {"id": "b", "near_miss_of": "a", "changes": "tone", "phrasings": ["z"]}]),
                "unknown change",
            ),
        ] {
            assert!(set(bad).is_err(), "{why}");
        }
    }

    #[test]
    fn the_order_goes_round_by_round() {
        let s = set(serde_json::json!([
            {"id": "a", "phrasings": ["a1", "a2", "a3"]},
            {"id": "b", "phrasings": ["b1"]},
            {"id": "c", "phrasings": ["c1", "c2"]}
        ]))
        .unwrap();
        let texts: Vec<String> = s.order().into_iter().map(|p| p.text).collect();
        assert_eq!(texts, ["a1", "b1", "c1", "a2", "c2", "a3"]);
        assert_eq!(s.possible_repeats(), 3);
    }

    #[test]
    fn a_hit_is_right_iff_its_answer_came_from_the_same_meaning() {
        let probes: Vec<Probe> = [(0, "a1"), (1, "b1"), (0, "a2"), (0, "a3"), (1, "b2")]
            .into_iter()
            .map(|(group, text)| Probe {
                group,
                text: text.into(),
            })
            .collect();
        // The mock's own answer function: exact, as in the bench.
        let answer = |t: &str| sluice_mock::text::generate(t, 16);
        let judge = Judge::new(&probes, answer);
        // The first question's answer, served for a paraphrase.
        assert_eq!(judge.hit(2, &answer("a1")), Verdict::Right);
        // A paraphrase's own answer (it missed), served for a later one:
        // right, though it is not the group's first question's.
        assert_eq!(judge.hit(3, &answer("a2")), Verdict::Right);
        // Another meaning's answer.
        assert_eq!(
            judge.hit(4, &answer("a1")),
            Verdict::Wrong { source: Some(0) }
        );
        assert_eq!(
            judge.hit(2, &answer("b1")),
            Verdict::Wrong { source: Some(1) }
        );
        // An answer no probe was given, or one from a later question.
        assert_eq!(
            judge.hit(2, "something else"),
            Verdict::Wrong { source: None }
        );
        assert_eq!(
            judge.hit(2, &answer("a3")),
            Verdict::Wrong { source: Some(3) }
        );
        // Its own answer: it cannot have been cached before it was asked.
        assert_eq!(
            judge.hit(2, &answer("a2")),
            Verdict::Wrong { source: Some(2) }
        );
        // Padding is part of the answer: the length asked for must match.
        assert_eq!(
            judge.hit(2, &sluice_mock::text::generate("a1", 17)),
            Verdict::Wrong { source: None }
        );
        assert!(judge.own(1, &answer("b1")));
        assert!(!judge.own(1, &answer("a1")));
    }
}
