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

/// `review.json`, a review node's output: the scores, the thresholds'
/// verdict and the reviewed image's content hash (the same fields are the
/// manifest's `review` metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewFile {
    #[serde(flatten)]
    pub scores: Scores,
    pub verdict: Verdict,
    pub image: String,
}

/// A number in 0..1 from 8 bytes of a hash of `bytes` and `salt`.
fn unit_of(bytes: &[u8], salt: &str) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(salt.as_bytes());
    h.update(bytes);
    let n = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Simulated scores of an image, deterministic per its bytes (the sim
/// profile's reviewer). Against the default thresholds (0.92, 0.4) about
/// 45% approve, 30% fall in the band and 25% are rejected, each rejection
/// for one of `categories` (picked by the bytes): enough for a pool to
/// fill in a few rounds, with rejections feeding the next round.
pub fn sim_scores(bytes: &[u8], categories: &[String]) -> Scores {
    let u = unit_of(bytes, "quality");
    let weakest = if u < 0.45 {
        0.93 + 0.07 * (u / 0.45)
    } else if u < 0.75 {
        0.42 + 0.48 * ((u - 0.45) / 0.3)
    } else {
        0.05 + 0.33 * ((u - 0.75) / 0.25)
    };
    // The other two scores sit between the weakest and 1.
    let above = |salt| weakest + (1.0 - weakest) * unit_of(bytes, salt);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let framing = Framing::ALL[(unit_of(bytes, "framing") * 3.0) as usize % 3];
    let rejection_categories = if weakest < 0.4 && !categories.is_empty() {
        vec![categories[(unit_of(bytes, "category") * categories.len() as f64) as usize % categories.len()].clone()]
    } else {
        Vec::new()
    };
    Scores {
        character_match: round(weakest),
        clarity: round(above("clarity")),
        training_value: round(above("training")),
        framing,
        rejection_categories,
        notes: "simulated".into(),
    }
}

/// A simulated mean luma in 0.25..0.75, deterministic per the bytes (the
/// sim profile's images are not pictures).
pub fn sim_brightness(bytes: &[u8]) -> f64 {
    ((0.25 + 0.5 * unit_of(bytes, "brightness")) * 1000.0).round() / 1000.0
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
    fn sim_scores_are_deterministic_in_range_and_spread_over_the_bands() {
        let cats = vec!["anatomy".to_string(), "blurry".to_string()];
        let t = Thresholds {
            approve_at: 0.92,
            reject_below: 0.4,
        };
        let mut seen = [0; 3];
        for i in 0..200 {
            let bytes = format!("image {i}").into_bytes();
            let s = sim_scores(&bytes, &cats);
            assert_eq!(s, sim_scores(&bytes, &cats));
            for x in [s.character_match, s.clarity, s.training_value] {
                assert!((0.0..=1.0).contains(&x), "{s:?}");
            }
            let v = t.verdict(&s);
            assert_eq!(v == Verdict::Rejected, !s.rejection_categories.is_empty(), "{s:?}");
            seen[v as usize] += 1;
            assert!((0.25..=0.75).contains(&sim_brightness(&bytes)));
        }
        assert!(seen.iter().all(|&n| n > 20), "every band is reached: {seen:?}");
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
