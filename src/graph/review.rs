//! The review loop as data: its rules (`rules/images.yaml`), the people's
//! decisions, the tally of a character's reviewed candidates, and the
//! score that ranks an approved image as a shot's source.
//!
//! Pure: the session reads reviews from the cache and asks here whether a
//! character needs another round and with which negative terms; the pool
//! stage and `pool_select` rank with [`source_score`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kind::NodeKind;
use crate::project::{Diagnostics, Project, ProjectError};
use crate::review::{Framing, Scores, Thresholds, Verdict};

/// The loop's settings, from the `review` rule's params (and the gate's
/// from the `shot_review` rule's).
#[derive(Debug, Clone, PartialEq)]
pub struct LoopRules {
    pub thresholds: Thresholds,
    /// Approved images a character's pool wants.
    pub pool_target: usize,
    /// Fewer approved than this when the rounds run out fails the build.
    pub pool_minimum: usize,
    pub candidates_per_round: usize,
    pub round_limit: usize,
    /// The closed list of rejection categories → their negative terms.
    pub categories: BTreeMap<String, String>,
}

/// The quality gate's settings (`shot_review` params).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateRules {
    pub threshold: f64,
    /// New takes tried after the first before a shot is reported.
    pub reroll_limit: u32,
}

/// Most candidates a round may ask for, and most rounds.
pub const MAX_CANDIDATES_PER_ROUND: usize = 16;
pub const MAX_ROUNDS: usize = 12;
pub const MAX_REROLLS: u32 = 8;

fn bad(key: &str, what: &str) -> Diagnostics {
    ProjectError::plain(
        "rules::review",
        format!("`{key}` in the review loop's rules is {what}"),
    )
    .help("see rules/images.yaml: `review:` params (approve_at, reject_below, pool_target, pool_minimum, candidates_per_round, round_limit, categories) and `shot_review:` params (gate_threshold, reroll_limit)")
    .into()
}

/// The loop's rule mistakes, located: each at its key in the rules file
/// that holds the `review:` (or `shot_review:`) rule, else at the rule.
pub fn located(d: Diagnostics, spans: &crate::project::Spans) -> Diagnostics {
    let errors = (d.errors.into_iter())
        .map(|e| {
            let message = e.to_string();
            if e.at.is_some() || !message.contains("in the review loop's rules") {
                return e;
            }
            let key = message.split('`').nth(1).unwrap_or_default();
            let leaf = key.rsplit('.').next().unwrap_or(key);
            let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
            for kind in [NodeKind::Review, NodeKind::ShotReview] {
                let Some(file) = spans.rules.get(&kind) else { continue };
                let Some(at) = file.key_span(kind.as_str()) else {
                    continue;
                };
                let from = at.offset();
                let span = (file.text[from..].find(&format!("{leaf}:")))
                    .map(|i| miette::SourceSpan::new((from + i).into(), leaf.len()))
                    .or(Some(at));
                let located = ProjectError::at(file, "rules::review", message.clone()).label(file, span, "here");
                return match &help {
                    Some(h) => located.help(h.clone()),
                    None => located,
                };
            }
            e
        })
        .collect();
    Diagnostics { errors }
}

fn unit(params: &BTreeMap<String, Value>, key: &str) -> Result<f64, Diagnostics> {
    match params.get(key).and_then(Value::as_f64) {
        Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Some(_) => Err(bad(key, "out of range: use a number from 0 to 1")),
        None => Err(bad(key, "missing: use a number from 0 to 1")),
    }
}

fn count(params: &BTreeMap<String, Value>, key: &str, min: u64, max: u64) -> Result<u64, Diagnostics> {
    match params.get(key).and_then(Value::as_u64) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(bad(
            key,
            &format!("missing or out of range: use a whole number from {min} to {max}"),
        )),
    }
}

impl LoopRules {
    /// The loop's rules, when the profile has one (a `candidate` and a
    /// `review` rule); `None` for a profile without it (the animatic).
    pub fn of(project: &Project) -> Result<Option<LoopRules>, Diagnostics> {
        let (Some(_), Some(review)) = (
            project.rules.get(NodeKind::Candidate),
            project.rules.get(NodeKind::Review),
        ) else {
            return Ok(None);
        };
        let p = &review.params;
        let thresholds = Thresholds {
            approve_at: unit(p, "approve_at")?,
            reject_below: unit(p, "reject_below")?,
        };
        if thresholds.reject_below > thresholds.approve_at {
            return Err(bad("reject_below", "above `approve_at`"));
        }
        let pool_target = count(p, "pool_target", 1, 64)? as usize;
        let pool_minimum = count(p, "pool_minimum", 1, 64)? as usize;
        if pool_minimum > pool_target {
            return Err(bad("pool_minimum", "above `pool_target`"));
        }
        let categories: BTreeMap<String, String> = match p.get("categories") {
            Some(Value::Object(m)) if !m.is_empty() && m.len() <= 64 => m
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(t) if valid_category(k) && !t.trim().is_empty() && t.len() <= 400 => {
                        Ok((k.clone(), crate::text::normalize(t)))
                    }
                    _ => Err(bad(
                        &format!("categories.{k}"),
                        "not a category (a-z, 0-9, _) with its negative terms",
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(bad(
                    "categories",
                    "missing: map each rejection category to its negative terms",
                ));
            }
        };
        Ok(Some(LoopRules {
            thresholds,
            pool_target,
            pool_minimum,
            candidates_per_round: count(p, "candidates_per_round", 1, MAX_CANDIDATES_PER_ROUND as u64)? as usize,
            round_limit: count(p, "round_limit", 1, MAX_ROUNDS as u64)? as usize,
            categories,
        }))
    }

    /// The negative terms of `categories`, in the rules' order.
    pub fn terms_of(&self, categories: &BTreeSet<String>) -> Vec<String> {
        (self.categories.iter())
            .filter(|(c, _)| categories.contains(*c))
            .map(|(_, t)| t.clone())
            .collect()
    }
}

impl GateRules {
    /// The gate, when the profile has a `shot_review` rule.
    pub fn of(project: &Project) -> Result<Option<GateRules>, Diagnostics> {
        let Some(rule) = project.rules.get(NodeKind::ShotReview) else {
            return Ok(None);
        };
        Ok(Some(GateRules {
            threshold: unit(&rule.params, "gate_threshold")?,
            reroll_limit: count(&rule.params, "reroll_limit", 0, u64::from(MAX_REROLLS))? as u32,
        }))
    }
}

/// The gate's judgment of a shot's review at its last allowed take: the
/// message that reports the shot by name when it scores below the gate.
/// Earlier takes are judged by the session, which re-rolls them.
pub fn gate_failure(path: &str, params: &BTreeMap<String, Value>, scores: &Scores) -> Option<String> {
    let take = params.get("take").and_then(Value::as_u64)?;
    let first = params.get("first_take").and_then(Value::as_u64)?;
    let last = params.get("last_take").and_then(Value::as_u64)?;
    let threshold = params.get("gate_threshold").and_then(Value::as_f64)?;
    (take >= last && scores.overall() < threshold).then(|| {
        format!(
            "shot {path} failed the quality gate: it scored {:.3} (below gate_threshold {threshold}) at take {take}, after {} re-roll(s) from take {first}; the episode is not assembled from it. Edit the shot (action, take) or the gate in rules/images.yaml",
            scores.overall(),
            take - first,
        )
    })
}

/// A category name: a short word of `a-z`, `0-9`, `_`.
pub fn valid_category(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// A person's decision about one image (by its content hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `Approved` or `Rejected` (a person never decides `Pending`).
    pub verdict: Verdict,
    /// Why a rejected image was rejected: one of the rules' categories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// The people's decisions, by image content hash.
pub type Decisions = BTreeMap<String, Decision>;

/// One reviewed candidate, as the session read it from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    pub round: u32,
    pub index: u32,
    /// The candidate image's content hash.
    pub image: String,
    /// `None`: no vision model scored it (its vision service was out of
    /// reach), so it waits for a person.
    pub scores: Option<Scores>,
    /// The review's own verdict (the thresholds'); a decision overrides it.
    pub verdict: Verdict,
}

/// What a character's reviewed candidates add up to, decisions applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub approved: usize,
    pub pending: usize,
    pub rejected: usize,
    /// The categories of every rejection so far, automatic and manual.
    pub categories: BTreeSet<String>,
}

/// The verdict of `r` once a person's decision (if any) is applied, and
/// the categories it is rejected for.
pub fn decided(r: &Reviewed, decisions: &Decisions) -> (Verdict, Vec<String>) {
    match decisions.get(&r.image) {
        Some(d) => (d.verdict, d.category.iter().cloned().collect()),
        None => (
            r.verdict,
            r.scores.iter().flat_map(|s| s.rejection_categories.clone()).collect(),
        ),
    }
}

pub fn tally(reviews: &[Reviewed], decisions: &Decisions) -> Tally {
    let mut t = Tally::default();
    for r in reviews {
        match decided(r, decisions) {
            (Verdict::Approved, _) => t.approved += 1,
            (Verdict::Pending, _) => t.pending += 1,
            (Verdict::Rejected, cats) => {
                t.rejected += 1;
                t.categories.extend(cats);
            }
        }
    }
    t
}

/// What to do after the reviews of rounds `1..=rounds` are known.
/// `unscored_round`: no review of the last round was scored (its vision
/// service was out of reach, people decide): another round would tell
/// nothing more, so the loop stops there as at the round limit.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The pool is full.
    Full,
    /// Another round, with these rejected categories' terms.
    Round(BTreeSet<String>),
    /// The round limit is reached below the target, at or above the minimum.
    Short { approved: usize, pending: usize },
    /// Below the minimum: the build cannot go on without a person.
    Starved { approved: usize, pending: usize },
}

pub fn next(rules: &LoopRules, rounds: usize, t: &Tally, unscored_round: bool) -> Next {
    if t.approved >= rules.pool_target {
        Next::Full
    } else if rounds < rules.round_limit && !unscored_round {
        Next::Round(t.categories.clone())
    } else if t.approved >= rules.pool_minimum {
        Next::Short {
            approved: t.approved,
            pending: t.pending,
        }
    } else {
        Next::Starved {
            approved: t.approved,
            pending: t.pending,
        }
    }
}

/// One approved image of a pool (`pool.json`'s `images`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolImage {
    /// The image's content hash.
    pub image: String,
    /// Its output suffix in the pool node (`<hash12>.png`).
    pub file: String,
    pub round: u32,
    pub index: u32,
    /// `None`: approved by a person with no vision model's scores.
    #[serde(default)]
    pub scores: Option<Scores>,
    /// Mean luma, 0..1.
    pub brightness: f64,
    /// `auto` (the thresholds) or `person` (approvals.yaml).
    pub decided_by: String,
}

/// `pool.json`: a character's approved pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolFile {
    pub character: String,
    pub images: Vec<PoolImage>,
    /// Candidates still waiting for a person.
    pub pending: usize,
    pub rounds: u32,
}

/// The framing a shot type wants its source in.
pub fn framing_for(shot_type: &str) -> Framing {
    match shot_type {
        "close_up" | "extreme_close_up" => Framing::Face,
        "medium" | "over_shoulder" | "pov" => Framing::UpperBody,
        _ => Framing::FullBody,
    }
}

/// The pipeline map's source score: the review's score and the brightness,
/// full body +0.15, face only −0.1, and +0.3 for the framing the shot wants
/// (more than the full-body bonus: a close-up takes a face). An image
/// without scores (a person approved it unseen by a vision model) counts
/// its brightness only, so any scored image goes first.
pub fn source_score(img: &PoolImage, wanted: Framing) -> f64 {
    let Some(scores) = &img.scores else {
        return 0.5 * img.brightness;
    };
    let framing = match scores.framing {
        Framing::FullBody => 0.15,
        Framing::UpperBody => 0.0,
        Framing::Face => -0.1,
    };
    let fits = if scores.framing == wanted { 0.3 } else { 0.0 };
    scores.overall() + 0.5 * img.brightness + framing + fits
}

/// The best image of `pool` for a shot wanting `wanted`; ties by hash.
pub fn best(pool: &[PoolImage], wanted: Framing) -> Option<&PoolImage> {
    pool.iter().max_by(|a, b| {
        source_score(a, wanted)
            .total_cmp(&source_score(b, wanted))
            // The smaller hash wins a tie: max_by keeps the later of equals.
            .then_with(|| b.image.cmp(&a.image))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(hash: &str, overall: f64, framing: Framing, brightness: f64) -> PoolImage {
        PoolImage {
            image: hash.into(),
            file: format!("{hash}.png"),
            round: 1,
            index: 1,
            scores: Some(Scores {
                character_match: overall,
                clarity: overall,
                training_value: overall,
                framing,
                rejection_categories: Vec::new(),
                notes: String::new(),
            }),
            brightness,
            decided_by: "auto".into(),
        }
    }

    #[test]
    fn the_source_prefers_score_brightness_and_the_wanted_framing_and_breaks_ties_by_hash() {
        let pool = vec![
            img("bb", 0.95, Framing::Face, 0.5),
            img("aa", 0.95, Framing::FullBody, 0.5),
            img("cc", 0.99, Framing::UpperBody, 0.5),
        ];
        assert_eq!(best(&pool, Framing::FullBody).unwrap().image, "aa");
        assert_eq!(best(&pool, Framing::Face).unwrap().image, "bb");
        assert_eq!(best(&pool, Framing::UpperBody).unwrap().image, "cc");
        let tie = vec![img("b2", 0.95, Framing::Face, 0.5), img("a1", 0.95, Framing::Face, 0.5)];
        assert_eq!(best(&tie, Framing::Face).unwrap().image, "a1");
        let brighter = vec![img("a1", 0.95, Framing::Face, 0.2), img("b2", 0.95, Framing::Face, 0.6)];
        assert_eq!(best(&brighter, Framing::Face).unwrap().image, "b2");
    }

    #[test]
    fn rounds_go_on_until_full_then_stop_at_the_limit() {
        let rules = LoopRules {
            thresholds: Thresholds {
                approve_at: 0.9,
                reject_below: 0.4,
            },
            pool_target: 3,
            pool_minimum: 2,
            candidates_per_round: 2,
            round_limit: 2,
            categories: BTreeMap::from([("anatomy".into(), "bad anatomy".into())]),
        };
        let mut t = Tally {
            approved: 1,
            pending: 1,
            rejected: 1,
            categories: BTreeSet::from(["anatomy".to_string()]),
        };
        assert_eq!(next(&rules, 1, &t, false), Next::Round(t.categories.clone()));
        assert_eq!(
            next(&rules, 2, &t, false),
            Next::Starved {
                approved: 1,
                pending: 1
            }
        );
        t.approved = 2;
        assert_eq!(
            next(&rules, 2, &t, false),
            Next::Short {
                approved: 2,
                pending: 1
            }
        );
        // A round no vision model scored ends the loop as the limit does.
        assert_eq!(
            next(&rules, 1, &t, true),
            Next::Short {
                approved: 2,
                pending: 1
            }
        );
        t.approved = 1;
        assert_eq!(
            next(&rules, 1, &t, true),
            Next::Starved {
                approved: 1,
                pending: 1
            }
        );
        t.approved = 3;
        assert_eq!(next(&rules, 1, &t, false), Next::Full);
        assert_eq!(next(&rules, 1, &t, true), Next::Full);
        assert_eq!(rules.terms_of(&t.categories), vec!["bad anatomy".to_string()]);
    }
}
