//! The review loop's rounds, derived from the cache: which rounds each
//! character has, what their reviews said, and whether another is needed.
//!
//! [`Session::expand_rounds`] reads every known review from the action
//! cache (a review's verdict is its manifest's `review` metadata), applies
//! the people's decisions and adds round r+1 while the pool is short, the
//! round limit allows and every review of round r is known. It runs no job:
//! a no-op rebuild re-derives every round from the cache this way, and the
//! build driver runs the missing reviews between calls.

use std::collections::{BTreeMap, HashMap, HashSet};

use camino::Utf8PathBuf;
use serde_json::json;

use super::Session;
use crate::graph::key::{InputFact, KeyMaterial};
use crate::graph::review::{Decision, Decisions, GateRules, LoopRules, Next, Reviewed, decided, next, tally};
use crate::graph::rounds::{add_round, candidate_path, reroll, rounds_of};
use crate::kind::NodeKind;
use crate::project::Diagnostics;
use crate::project::approvals::{Approvals, Decision as ApprovalDecision, Known};
use crate::review::{ReviewFile, Verdict};

/// Where one character's loop stands.
#[derive(Debug, Clone)]
pub struct CharacterRounds {
    pub character: String,
    pub rounds: u32,
    /// The reviews known so far, every round.
    pub reviewed: Vec<Reviewed>,
    /// Review nodes of the last round whose outcome is not in the cache.
    pub unknown: Vec<usize>,
    /// What comes next, once every review is known.
    pub next: Option<Next>,
}

/// One candidate, for `studio review`.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub character: String,
    pub round: u32,
    pub index: u32,
    /// The image's content hash (what approvals.yaml names).
    pub image: String,
    /// The image in the cache, and its copy under `out/`.
    pub path: Utf8PathBuf,
    pub out: Utf8PathBuf,
    /// The review, when it is known.
    pub review: Option<ReviewFile>,
    /// The verdict once the people's decisions apply (`None`: not reviewed).
    pub verdict: Option<Verdict>,
}

impl Session {
    /// Derive every character's rounds from the cache, adding rounds the
    /// known reviews call for. Also sets each pool's key to its own
    /// character's decisions (of its candidates' hashes only).
    pub fn expand_rounds(&mut self) -> Result<Vec<CharacterRounds>, Diagnostics> {
        self.expand_rounds_with(None)
    }

    /// [`Session::expand_rounds`] for a build that knows which service
    /// groups (pools) are out of reach (`down`): a provisional review (a
    /// person's stand-in for an unreachable vision service) counts as
    /// known only while its vision group is still down; once it answers,
    /// the review is unknown again, and the build redoes it.
    pub fn expand_rounds_with(&mut self, down: Option<&HashSet<usize>>) -> Result<Vec<CharacterRounds>, Diagnostics> {
        let Some(rules) = LoopRules::of(&self.project)? else {
            return Ok(Vec::new());
        };
        let characters: Vec<String> = self.project.characters.iter().map(|c| c.id.clone()).collect();
        let mut out = Vec::new();
        for c in characters {
            loop {
                let rounds = rounds_of(&self.graph, &c);
                if rounds == 0 {
                    break;
                }
                let (reviewed, unknown) = self.read_reviews(&c, rounds, &rules, down);
                let decisions = decisions_of(&self.approvals, &c, &reviewed);
                self.key_pool_on_decisions(&c, &decisions);
                // No vision model scored the last round: people decide, and
                // no further round is made (it would tell nothing new).
                let last: Vec<&Reviewed> = reviewed.iter().filter(|r| r.round == rounds).collect();
                let unscored_round = !last.is_empty() && last.iter().all(|r| r.scores.is_none());
                let decision = (unknown.is_empty())
                    .then(|| next(&rules, rounds as usize, &tally(&reviewed, &decisions), unscored_round));
                if let Some(Next::Round(rejected)) = &decision {
                    add_round(&self.project, &mut self.graph, &c, rounds + 1, rejected)?;
                    continue;
                }
                // A round made before stays while it is still what the loop
                // would make (the same negative terms, so the same keys):
                // a person's approval that fills the pool earlier does not
                // throw away images already reviewed.
                if decision == Some(Next::Full)
                    && (rounds as usize) < rules.round_limit
                    && !unscored_round
                    && self.keep_made_round(&c, rounds, &rules, &tally(&reviewed, &decisions).categories, down)?
                {
                    continue;
                }
                out.push(CharacterRounds {
                    character: c.clone(),
                    rounds,
                    reviewed,
                    unknown,
                    next: decision,
                });
                break;
            }
        }
        self.refuse_unknown_decisions();
        Ok(out)
    }

    /// Each character whose candidates are all known (every expanded
    /// round's image in the cache), with their images' hashes.
    pub fn known_candidates(&self) -> BTreeMap<String, Vec<String>> {
        let simulated = self.simulated();
        let mut by: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
        for (g, n) in self.graph.nodes.iter().enumerate() {
            if n.kind != NodeKind::Candidate {
                continue;
            }
            let who = n.params.get("character").and_then(|v| v.as_str()).unwrap_or("");
            let hash = self.cached(g, simulated, &[]).map(|(_, fact)| fact.hash);
            let list = by.entry(who.to_string()).or_insert_with(|| Some(Vec::new()));
            match (list.as_mut(), hash) {
                (Some(l), Some(h)) => l.push(h),
                _ => *list = None,
            }
        }
        by.into_iter().filter_map(|(c, l)| Some((c, l?))).collect()
    }

    /// A build refuses an approvals.yaml whose hash names no candidate of
    /// its character, once that character's candidates are all known
    /// (located diagnostics, before anything is built). Characters whose
    /// candidates are still to be made are checked by the build itself,
    /// before their pool runs ([`Session::expand_rounds`]).
    ///
    /// The rounds are derived first (a session opened for a build leaves
    /// them to the build): a decision about a later round's candidate is
    /// checked against every round the cache knows, not the first alone.
    pub fn check_approvals(&mut self) -> Result<(), Diagnostics> {
        if self.approvals.by_character.is_empty() {
            return Ok(());
        }
        self.expand_rounds()?;
        crate::project::approvals::check_candidates(&self.layout.root, &self.known_candidates())
    }

    /// A pool whose character's candidates are all known and whose
    /// decisions name an image none of them has fails (its `refused`
    /// param says where and how to fix it) rather than run without them:
    /// the build found this only after making the candidates.
    fn refuse_unknown_decisions(&mut self) {
        if self.approvals.by_character.is_empty() {
            return;
        }
        for (c, hashes) in self.known_candidates() {
            let Some(pool) = self.graph.get(&format!("{}:{c}", NodeKind::CharacterRefs)) else {
                continue;
            };
            let wrong: Vec<String> = (self.approvals.by_character.get(&c).into_iter().flatten())
                .filter(|e| hashes.iter().filter(|h| h.starts_with(e.image.as_str())).count() != 1)
                .map(|e| format!("{}:{}: {}", crate::project::approvals::FILE, e.line, e.image))
                .collect();
            let params = &mut self.graph.nodes[pool].params;
            if wrong.is_empty() {
                params.remove("refused");
            } else {
                params.insert(
                    "refused".into(),
                    json!(format!(
                        "approvals.yaml names image(s) that no candidate of `{c}` has ({}); `studio review {c}` lists the candidates and their hashes: fix or remove these decisions",
                        wrong.join(", ")
                    )),
                );
            }
        }
    }

    /// Add round `rounds + 1` of `character` if all its reviews are in the
    /// cache; otherwise leave the graph as it was.
    fn keep_made_round(
        &mut self,
        character: &str,
        rounds: u32,
        rules: &LoopRules,
        rejected: &std::collections::BTreeSet<String>,
        down: Option<&HashSet<usize>>,
    ) -> Result<bool, Diagnostics> {
        let Some(pool) = self.graph.get(&format!("{}:{character}", NodeKind::CharacterRefs)) else {
            return Ok(false);
        };
        let (nodes, inputs) = (self.graph.nodes.len(), self.graph.nodes[pool].inputs.len());
        add_round(&self.project, &mut self.graph, character, rounds + 1, rejected)?;
        let (_, unknown) = self.read_reviews(character, rounds + 1, rules, down);
        if unknown.is_empty() {
            return Ok(true);
        }
        for n in self.graph.nodes.drain(nodes..) {
            self.graph.by_id.remove(&n.id);
        }
        let node = &mut self.graph.nodes[pool];
        node.inputs.truncate(inputs);
        node.params.insert("rounds".into(), json!(rounds));
        Ok(false)
    }

    /// Every review of `character`'s rounds known to the cache, and the
    /// review nodes whose outcome is not.
    fn read_reviews(
        &self,
        character: &str,
        rounds: u32,
        rules: &LoopRules,
        down: Option<&HashSet<usize>>,
    ) -> (Vec<Reviewed>, Vec<usize>) {
        let simulated = self.simulated();
        let mut reviewed = Vec::new();
        let mut unknown = Vec::new();
        for round in 1..=rounds {
            for index in 1..=rules.candidates_per_round as u32 {
                let path = candidate_path(character, round, index);
                let (Some(cand), Some(review)) = (
                    self.graph.get(&format!("{}:{path}", NodeKind::Candidate)),
                    self.graph.get(&format!("{}:{path}", NodeKind::Review)),
                ) else {
                    continue;
                };
                match self.read_review(cand, review, simulated, down) {
                    Some(file) => reviewed.push(Reviewed {
                        round,
                        index,
                        image: file.image,
                        scores: file.scores,
                        verdict: file.verdict,
                    }),
                    None => unknown.push(review),
                }
            }
        }
        (reviewed, unknown)
    }

    /// The cached review of a candidate, through the candidate's cached
    /// image (a provisional one only while its vision group is `down`,
    /// when that is given).
    fn read_review(
        &self,
        cand: usize,
        review: usize,
        simulated: bool,
        down: Option<&HashSet<usize>>,
    ) -> Option<ReviewFile> {
        let (_, fact) = self.cached(cand, simulated, &[])?;
        let material = KeyMaterial::key_of(&self.graph, review, simulated, |i| (i == cand).then_some(&fact))?;
        let manifest = self.cache.lookup(&material)?;
        if manifest.provisional.is_some() && down.is_some_and(|d| !d.contains(&self.graph.nodes[review].pools[0])) {
            return None;
        }
        let file = ReviewFile::parse(manifest.metadata.get("review")?).ok()?;
        // A review of another image than its candidate's is not this one's.
        (file.image == fact.hash).then_some(file)
    }

    /// A node without inputs (or with `facts` for them) from the cache: its
    /// key and its fact.
    fn cached(&self, node: usize, simulated: bool, facts: &[(usize, &InputFact)]) -> Option<(String, InputFact)> {
        let key = KeyMaterial::key_of(&self.graph, node, simulated, |i| {
            facts.iter().find(|(n, _)| *n == i).map(|(_, f)| *f)
        })?;
        let hit = self.lookup(node, &key, false)?;
        Some((key, hit.fact))
    }

    /// The pool of `character` keys on the decisions about its own
    /// candidates only: a decision about another character's image
    /// rebuilds nothing here.
    fn key_pool_on_decisions(&mut self, character: &str, own: &Decisions) {
        if let Some(pool) = self.graph.get(&format!("{}:{character}", NodeKind::CharacterRefs)) {
            self.graph.nodes[pool].params.insert("decisions".into(), json!(own));
        }
    }

    /// Every candidate of every character (or of `character`), with its
    /// review and verdict as far as the cache knows: what `studio review`
    /// lists. Call after [`Session::expand_rounds`] (the session's open does).
    pub fn candidates(&self, character: Option<&str>) -> Vec<Candidate> {
        let simulated = self.simulated();
        let mut out = Vec::new();
        for node in self
            .graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.kind == NodeKind::Candidate)
        {
            let (cand, n) = node;
            let who = n.params.get("character").and_then(|v| v.as_str()).unwrap_or("");
            if character.is_some_and(|c| c != who) {
                continue;
            }
            let Some((_, fact)) = self.cached(cand, simulated, &[]) else {
                continue;
            };
            let image = fact.hash;
            let round = n.params.get("round").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
            let index = n.params.get("index").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
            let review = self
                .graph
                .get(&format!("{}:{}", NodeKind::Review, n.path))
                .and_then(|r| self.read_review(cand, r, simulated, None));
            let verdict = review.as_ref().map(|r| {
                let reviewed = Reviewed {
                    round,
                    index,
                    image: image.clone(),
                    scores: r.scores.clone(),
                    verdict: r.verdict,
                };
                decided(
                    &reviewed,
                    &decisions_of(&self.approvals, who, std::slice::from_ref(&reviewed)),
                )
                .0
            });
            let path = crate::cache::digest::Digest::parse(&image)
                .map(|d| self.cache.object_path(&d))
                .unwrap_or_default();
            out.push(Candidate {
                character: who.to_string(),
                round,
                index,
                image,
                path,
                out: self.layout.out.join(format!("{}.png", n.out_stem)),
                review,
                verdict,
            });
        }
        out
    }
}

impl Session {
    /// The keys of `nodes` (a closure, inputs first) as far as the cache
    /// can tell, and the facts of those it knows.
    fn known_facts(&self, nodes: &[usize]) -> (HashMap<usize, String>, HashMap<usize, InputFact>) {
        use rayon::prelude::*;
        let simulated = self.simulated();
        // What the last build left, checked on disk in parallel up front
        // (the stats are most of this walk's time in a project that did
        // not change; the build's plan reuses what they found).
        let intact = self.intact_all(nodes, false);
        // By depth (a node one deeper than its deepest input): the nodes
        // of one depth have their inputs' facts, so their keys are
        // computed in parallel.
        let mut depth: HashMap<usize, usize> = HashMap::with_capacity(nodes.len());
        let mut levels: Vec<Vec<(usize, bool)>> = Vec::new();
        for (&n, &intact) in nodes.iter().zip(&intact) {
            let d = (self.graph.nodes[n].inputs.iter())
                .filter_map(|i| depth.get(&i.node).map(|d| d + 1))
                .max()
                .unwrap_or(0);
            depth.insert(n, d);
            if levels.len() <= d {
                levels.resize_with(d + 1, Vec::new);
            }
            levels[d].push((n, intact));
        }
        let mut keys: HashMap<usize, String> = HashMap::with_capacity(nodes.len());
        let mut facts: HashMap<usize, InputFact> = HashMap::with_capacity(nodes.len());
        for level in levels {
            let found: Vec<(usize, String, Option<InputFact>)> = (level.par_iter())
                .filter_map(|&(n, intact)| {
                    let key = KeyMaterial::key_of(&self.graph, n, simulated, |i| facts.get(&i))?;
                    let fact = self.lookup(n, &key, intact).map(|hit| hit.fact);
                    Some((n, key, fact))
                })
                .collect();
            for (n, key, fact) in found {
                if let Some(fact) = fact {
                    facts.insert(n, fact);
                }
                keys.insert(n, key);
            }
        }
        (keys, facts)
    }

    /// The quality gate's re-rolls, derived from the cache: each shot of
    /// `nodes` whose review at its take is cached and below the gate takes
    /// its next take, up to its last. Returns the gate reviews of takes
    /// before the last whose outcome is not cached yet (the last take is
    /// judged by the build itself, where a failure is reported).
    pub fn expand_takes(&mut self, nodes: &[usize]) -> Vec<usize> {
        self.expand_takes_with(nodes, None)
    }

    /// [`Session::expand_takes`] for a build that knows its unreachable
    /// service groups (`down`): a provisional review (the structural check
    /// standing in for the vision service) counts only while the gate's
    /// vision group is still down.
    pub fn expand_takes_with(&mut self, nodes: &[usize], down: Option<&HashSet<usize>>) -> Vec<usize> {
        let Ok(Some(gate)) = GateRules::of(&self.project) else {
            return Vec::new();
        };
        let take_of = |n: &crate::graph::Node| {
            let take = n.params.get("take").and_then(|v| v.as_u64()).unwrap_or(1);
            let last = n.params.get("last_take").and_then(|v| v.as_u64()).unwrap_or(take);
            (take, last)
        };
        // Only a review of a take before the last can re-roll its shot: a
        // gate of one take walks nothing.
        let mut open: Vec<usize> = (nodes.iter().copied())
            .filter(|&n| {
                let node = &self.graph.nodes[n];
                let (take, last) = take_of(node);
                node.kind == NodeKind::ShotReview && take < last
            })
            .collect();
        let mut unknown = Vec::new();
        while !open.is_empty() {
            use rayon::prelude::*;
            let (keys, _) = self.known_facts(&self.graph.closure(&open));
            // The scores (a shot's review names its video, not an image),
            // read from the action cache in parallel; the structural
            // check's has none and passes (`Some(None)`), and counts only
            // while the gate's vision group is still down.
            let scores: Vec<Option<Option<crate::review::Scores>>> = (open.par_iter())
                .map(|&g| {
                    let pool = self.graph.nodes[g].pools[0];
                    let manifest = self.cache.lookup(keys.get(&g)?)?;
                    if manifest.provisional.is_some() && down.is_some_and(|d| !d.contains(&pool)) {
                        return None;
                    }
                    gate_scores(manifest.metadata.get("review")?)
                })
                .collect();
            let mut rerolled = Vec::new();
            for (&g, review) in open.iter().zip(scores) {
                let node = &self.graph.nodes[g];
                let (take, last) = take_of(node);
                if take >= last {
                    continue;
                }
                match review {
                    None => unknown.push(g),
                    Some(Some(r)) if r.overall() < gate.threshold => {
                        let path = node.path.clone();
                        reroll(&self.project, &mut self.graph, &path, take + 1);
                        rerolled.push(g);
                    }
                    Some(_) => {}
                }
            }
            open = rerolled;
        }
        unknown
    }
}

/// A gate review's scores from its manifest metadata: `Some(None)` for
/// the structural check's (no scores, `verdict: approved`), `None` when
/// it cannot be read.
fn gate_scores(v: &serde_json::Value) -> Option<Option<crate::review::Scores>> {
    if v.get("character_match").is_none() {
        return (v.get("verdict").and_then(|x| x.as_str()) == Some("approved")).then_some(None);
    }
    serde_json::from_value(v.clone()).ok().map(Some)
}

/// The people's decisions (`approvals.yaml`, checked with located
/// diagnostics against the characters and the rules' categories; a hash
/// names a candidate once its round exists).
pub(super) fn load_approvals(
    root: &camino::Utf8Path,
    project: &crate::project::Project,
) -> Result<Approvals, Diagnostics> {
    let categories = LoopRules::of(project)?
        .map(|r| r.categories.into_keys().collect())
        .unwrap_or_default();
    let known = Known {
        characters: project.characters.iter().map(|c| c.id.clone()).collect(),
        categories,
        candidates: None,
    };
    crate::project::approvals::load(root, &known)
}

/// `character`'s decisions about the images `reviewed` holds, by full hash.
fn decisions_of(approvals: &Approvals, character: &str, reviewed: &[Reviewed]) -> Decisions {
    (reviewed.iter())
        .filter_map(|r| {
            let d = match approvals.decision(character, &r.image)? {
                ApprovalDecision::Approve => Decision {
                    verdict: Verdict::Approved,
                    category: None,
                },
                ApprovalDecision::Reject { category } => Decision {
                    verdict: Verdict::Rejected,
                    category: Some(category.clone()),
                },
            };
            Some((r.image.clone(), d))
        })
        .collect()
}
