//! The review loop's nodes: a character's rounds of candidates, a review
//! per candidate, and the pool (`character_refs`) that gathers them.
//!
//! The graph starts with round 1; the session adds round r+1 (through
//! [`add_round`]) once round r's reviews are known and the pool is short.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::build::{Builder, map};
use super::{Graph, Input, Uses};
use crate::kind::NodeKind;
use crate::project::Diagnostics;
use crate::project::model::{Character, Project};

/// Params of the `review` rule the review node does not read (they steer
/// the loop): kept out of its key, so a new pool target re-reviews nothing.
const LOOP_ONLY: [&str; 5] = [
    "pool_target",
    "pool_minimum",
    "candidates_per_round",
    "round_limit",
    "categories",
];

/// A candidate's node path: `hana/r2/3`.
pub fn candidate_path(character: &str, round: u32, index: u32) -> String {
    format!("{character}/r{round}/{index}")
}

impl Builder<'_> {
    /// The pool node of `c` and its first round.
    pub(super) fn pool(&mut self, c: &Character) -> Result<(), Diagnostics> {
        let rules = self.review.clone().expect("the loop's rules");
        let recipe = map([
            ("character", json!(c.id)),
            ("pool_target", json!(rules.pool_target)),
            ("pool_minimum", json!(rules.pool_minimum)),
            ("round_limit", json!(rules.round_limit)),
            ("rounds", json!(0)),
            // This character's decisions only, set by the session once
            // the candidates' hashes are known.
            ("decisions", json!({})),
        ]);
        self.add_refs(c, format!("characters/{}/pool", c.id), recipe)?;
        self.round(c, 1, &BTreeSet::new())
    }

    /// Round `round` of `c`: its candidates, each one's review, both
    /// inputs of the pool. Its negative prompt adds the terms of
    /// `rejected` (the categories rejected in earlier rounds).
    pub(super) fn round(&mut self, c: &Character, round: u32, rejected: &BTreeSet<String>) -> Result<(), Diagnostics> {
        let rules = self.review.clone().expect("the loop's rules");
        let pool = self.refs[&c.id];
        let terms = rules.terms_of(rejected);
        let candidate_rule = self.rule(NodeKind::Candidate)?;
        let review_rule = self.rule(NodeKind::Review)?;
        let categories: Vec<&String> = rules.categories.keys().collect();
        for index in 1..=rules.candidates_per_round as u32 {
            let path = candidate_path(&c.id, round, index);
            let mut recipe = self.design(c);
            recipe.insert("round".into(), json!(round));
            recipe.insert("index".into(), json!(index));
            recipe.insert("rejected".into(), json!(rejected));
            recipe.insert("rejected_terms".into(), json!(terms));
            let candidate = self.add(
                NodeKind::Candidate,
                path.clone(),
                format!("characters/{}/candidates/r{round}-{index}", c.id),
                candidate_rule.engines_for(|_| false),
                candidate_rule,
                recipe,
                Vec::new(),
                0.0,
            );
            let recipe = map([
                ("character", json!(c.id)),
                ("name", json!(c.name)),
                ("design_prompt", json!(c.design_prompt)),
                ("appearance", json!(c.appearance)),
                ("categories", json!(categories)),
            ]);
            let review = self.add(
                NodeKind::Review,
                path.clone(),
                format!("characters/{}/reviews/r{round}-{index}", c.id),
                review_rule.engines_for(|_| false),
                review_rule,
                recipe,
                vec![Input {
                    node: candidate,
                    role: "image".into(),
                    uses: Uses::Content,
                }],
                0.0,
            );
            if let Some(forced) = forced_review(self.project, &format!("{}:{path}", NodeKind::Review), None) {
                self.graph.nodes[review].params.insert(FORCED.into(), forced);
            }
            for key in LOOP_ONLY {
                // `categories` is the review's list of names, not the terms.
                if key != "categories" {
                    self.graph.nodes[review].params.remove(key);
                }
            }
            let role = format!("r{round}/{index}");
            let inputs = &mut self.graph.nodes[pool].inputs;
            inputs.push(Input {
                node: candidate,
                role: format!("candidate:{role}"),
                uses: Uses::Content,
            });
            inputs.push(Input {
                node: review,
                role: format!("review:{role}"),
                uses: Uses::Content,
            });
        }
        self.graph.nodes[pool].params.insert("rounds".into(), json!(round));
        Ok(())
    }
}

impl Builder<'_> {
    /// The quality gate's review of a shot video, when the profile has the
    /// gate (`shot_review` rule): its key frames scored; its params say
    /// which take it is and whether it is the last one allowed.
    pub(super) fn shot_review(
        &mut self,
        shot: &crate::project::model::Shot,
        path: &str,
        video: usize,
    ) -> Result<Option<usize>, Diagnostics> {
        let Some(gate) = super::review::GateRules::of(self.project)? else {
            return Ok(None);
        };
        let rule = self.rule(NodeKind::ShotReview)?;
        let recipe = map([
            ("take", json!(shot.take)),
            ("first_take", json!(shot.take)),
            ("last_take", json!(u64::from(shot.take) + u64::from(gate.reroll_limit))),
            ("action", json!(shot.action)),
        ]);
        let mut recipe = recipe;
        let id = format!("{}:{path}", NodeKind::ShotReview);
        if let Some(forced) = forced_review(self.project, &id, Some(u64::from(shot.take))) {
            recipe.insert(FORCED.into(), forced);
        }
        Ok(Some(self.add(
            NodeKind::ShotReview,
            path.to_string(),
            format!("{path}/review"),
            rule.engines_for(|_| false),
            rule,
            recipe,
            vec![Input {
                node: video,
                role: "video".into(),
                uses: Uses::Content,
            }],
            shot.duration,
        )))
    }
}

/// The kinds of a shot's nodes that carry its take.
const TAKEN: [NodeKind; 4] = [
    NodeKind::ShotImage,
    NodeKind::RawVideo,
    NodeKind::RefinedVideo,
    NodeKind::ShotReview,
];

/// The param that holds a review's forced outcome in the sim profile.
const FORCED: &str = "simulated_review";

/// The sim profile's forced outcome for review node `id` at `take`
/// (`simulate.reviews`: the first entry whose `node` prefixes the id and
/// whose `take`, if any, is this one, as the sim reviewer picks it). It is
/// in the node's key, so a changed entry re-reviews exactly the reviews it
/// touches; `None` outside the sim profile and for reviews no entry names.
fn forced_review(project: &Project, id: &str, take: Option<u64>) -> Option<Value> {
    let sim = project.profile.simulate.as_ref()?;
    let f = (sim.reviews.iter())
        .filter(|f| id.starts_with(&f.node))
        .find(|f| f.take.is_none_or(|t| Some(t) == take))?;
    Some(json!({
        "score": f.score,
        "categories": f.categories,
        "framing": f.framing,
    }))
}

/// Re-roll shot `path` (`ep01/s01/sh02`) with `take`: its image, raw and
/// refined video and gate review take it, and each stochastic one a new
/// seed from it (the gate review its forced outcome at that take, in sim).
pub fn reroll(project: &Project, graph: &mut Graph, path: &str, take: u64) {
    for kind in TAKEN {
        if let Some(n) = graph.get(&format!("{kind}:{path}")) {
            let node = &mut graph.nodes[n];
            node.params.insert("take".into(), json!(take));
            if kind == NodeKind::ShotReview {
                match forced_review(project, &node.id, Some(take)) {
                    Some(forced) => node.params.insert(FORCED.into(), forced),
                    None => node.params.remove(FORCED),
                };
            }
            if node.seed.is_some() {
                node.seed = Some(super::build::seed_for(path, node.params.get("take")));
            }
        }
    }
}

/// Add round `round` of character `character` to `graph` (built for
/// `project`), its negative prompt carrying the terms of `rejected`.
pub fn add_round(
    project: &Project,
    graph: &mut Graph,
    character: &str,
    round: u32,
    rejected: &BTreeSet<String>,
) -> Result<(), Diagnostics> {
    let Some(c) = project.characters.iter().find(|c| c.id == character) else {
        return Ok(());
    };
    let mut b = Builder::resume(project, std::mem::take(graph));
    b.review = super::review::LoopRules::of(project)?;
    let result = if b.review.is_some() && b.refs.contains_key(character) {
        b.round(c, round, rejected)
    } else {
        Ok(())
    };
    *graph = b.graph;
    result
}

/// The rounds `character` has in `graph`.
pub fn rounds_of(graph: &Graph, character: &str) -> u32 {
    let pool = graph.get(&format!("{}:{character}", NodeKind::CharacterRefs));
    pool.and_then(|p| graph.nodes[p].params.get("rounds").and_then(Value::as_u64))
        .map_or(0, |r| r as u32)
}
