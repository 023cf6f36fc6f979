//! Vision review, as data: the scores a vision model gives an image, the
//! verdict the rules' thresholds make of them, and the score that ranks an
//! approved image as a shot's source.
//!
//! A leaf: the reviewer's client (`stages`), the loop that expands rounds
//! (`session`/`build`), the pool and the approvals file (`project`) all
//! share these types, and nothing here does I/O.

use serde::{Deserialize, Serialize};

/// How much of the character an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    FullBody,
    UpperBody,
    Face,
}

impl Framing {
    pub const ALL: [Framing; 3] = [Framing::FullBody, Framing::UpperBody, Framing::Face];

    pub fn as_str(self) -> &'static str {
        match self {
            Framing::FullBody => "full_body",
            Framing::UpperBody => "upper_body",
            Framing::Face => "face",
        }
    }
}

/// What a vision model said about one image, checked: every score is in
/// 0..=1, categories are from the rules' closed list, notes are bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub character_match: f64,
    pub clarity: f64,
    pub training_value: f64,
    pub framing: Framing,
    #[serde(default)]
    pub rejection_categories: Vec<String>,
    #[serde(default)]
    pub notes: String,
}

impl Scores {
    /// The one number thresholds compare: the weakest of the three scores,
    /// so an image that misses the character is not saved by its clarity.
    pub fn overall(&self) -> f64 {
        self.character_match.min(self.clarity).min(self.training_value)
    }
}

/// What becomes of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// At or above `approve_at`, or approved by a person.
    Approved,
    /// Below `reject_below`, or rejected by a person.
    Rejected,
    /// In the band between: a person decides (`studio review`).
    Pending,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
            Verdict::Pending => "pending",
        }
    }
}

/// The rules' thresholds (`rules/images.yaml`: `approve_at`, `reject_below`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub approve_at: f64,
    pub reject_below: f64,
}

impl Thresholds {
    /// The automatic verdict of `scores` (a person's decision overrides it).
    pub fn verdict(&self, scores: &Scores) -> Verdict {
        let s = scores.overall();
        if s >= self.approve_at {
            Verdict::Approved
        } else if s < self.reject_below {
            Verdict::Rejected
        } else {
            Verdict::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(m: f64, c: f64, t: f64) -> Scores {
        Scores {
            character_match: m,
            clarity: c,
            training_value: t,
            framing: Framing::FullBody,
            rejection_categories: Vec::new(),
            notes: String::new(),
        }
    }

    #[test]
    fn the_weakest_score_decides() {
        let t = Thresholds {
            approve_at: 0.92,
            reject_below: 0.4,
        };
        assert_eq!(t.verdict(&scores(0.95, 0.93, 0.99)), Verdict::Approved);
        assert_eq!(t.verdict(&scores(0.99, 0.91, 0.99)), Verdict::Pending);
        assert_eq!(t.verdict(&scores(0.99, 0.99, 0.39)), Verdict::Rejected);
        assert_eq!(t.verdict(&scores(0.92, 0.92, 0.92)), Verdict::Approved);
        assert_eq!(t.verdict(&scores(0.4, 0.5, 0.6)), Verdict::Pending);
    }
}
