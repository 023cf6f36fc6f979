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
/// manifest's `review` metadata). A review no vision model made (the
/// `person` fallback: no vision service answered) has no scores, the
/// verdict `pending` and why in `unscored`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewFile {
    #[serde(flatten)]
    pub scores: Option<Scores>,
    pub verdict: Verdict,
    pub image: String,
    /// Why no vision model scored it (`no vision service: … unreachable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored: Option<String>,
}

/// The fields of [`Scores`] a review object may hold (and the vision
/// reply's schema requires).
pub const SCORE_FIELDS: [&str; 6] = [
    "character_match",
    "clarity",
    "training_value",
    "framing",
    "rejection_categories",
    "notes",
];

impl ReviewFile {
    /// A review object read back (a `review.json`, a manifest's `review`
    /// metadata), checked: the scores all there or all absent (then the
    /// verdict is `pending` and `unscored` says why), each in 0..=1.
    pub fn parse(v: &serde_json::Value) -> Result<ReviewFile, String> {
        let o = v.as_object().ok_or("a review is a JSON object")?;
        let verdict: Verdict = serde_json::from_value(o.get("verdict").cloned().unwrap_or_default())
            .map_err(|_| "a review's `verdict` is approved, rejected or pending")?;
        let image = (o.get("image").and_then(|i| i.as_str()))
            .ok_or("a review names its image's hash in `image`")?
            .to_string();
        let unscored = match o.get("unscored") {
            None => None,
            Some(serde_json::Value::String(s)) if s.len() <= 400 => Some(s.clone()),
            Some(_) => return Err("a review's `unscored` is a line of at most 400 bytes".into()),
        };
        let scores = if o.contains_key("character_match") {
            let fields: serde_json::Map<_, _> = (o.iter())
                .filter(|(k, _)| SCORE_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let s: Scores = serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| e.to_string())?;
            if ![s.character_match, s.clarity, s.training_value]
                .iter()
                .all(|x| (0.0..=1.0).contains(x))
            {
                return Err("a review's score is out of 0..1".into());
            }
            Some(s)
        } else {
            None
        };
        match (&scores, verdict, &unscored) {
            (None, Verdict::Pending, Some(_)) | (Some(_), _, None) => Ok(ReviewFile {
                scores,
                verdict,
                image,
                unscored,
            }),
            (None, _, _) => Err("a review without scores is `pending` and says why in `unscored`".into()),
            (Some(_), _, Some(_)) => Err("a review with scores has no `unscored`".into()),
        }
    }
}

/// The note of a review no vision model made, from why its vision
/// engine was left (`fell back to person after: vision_review: executor
/// `ollama-local` (studio.yaml:40): cannot connect …`): `no vision
/// service: `ollama-local` unreachable`.
pub fn unreachable_note(reason: Option<&str>) -> String {
    let executor = reason
        .and_then(|r| r.split_once("executor `"))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(id, _)| id)
        .filter(|id| !id.is_empty() && id.len() <= 64);
    match (executor, reason) {
        (Some(id), _) => format!("no vision service: `{id}` unreachable"),
        (None, Some(r)) => {
            let r: String = r.chars().take(200).collect();
            format!("no vision review: {r}")
        }
        (None, None) => "no vision review: the vision engine failed".into(),
    }
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
    fn a_review_reads_back_scored_or_unscored_never_half() {
        let scored = ReviewFile {
            scores: Some(scores(0.95, 0.93, 0.99)),
            verdict: Verdict::Approved,
            image: "ab".into(),
            unscored: None,
        };
        let v = serde_json::to_value(&scored).unwrap();
        assert_eq!(v["character_match"], 0.95, "{v}");
        assert_eq!(ReviewFile::parse(&v).unwrap(), scored);
        let unscored = ReviewFile {
            scores: None,
            verdict: Verdict::Pending,
            image: "ab".into(),
            unscored: Some(unreachable_note(Some(
                "fell back to person after: vision_review: executor `ollama-local` (studio.yaml:40): refused",
            ))),
        };
        let v = serde_json::to_value(&unscored).unwrap();
        assert_eq!(v["unscored"], "no vision service: `ollama-local` unreachable", "{v}");
        assert_eq!(ReviewFile::parse(&v).unwrap(), unscored);
        let mut bad = v.clone();
        bad["verdict"] = serde_json::json!("approved");
        assert!(ReviewFile::parse(&bad).is_err(), "unscored is pending");
        let mut half = serde_json::to_value(&scored).unwrap();
        half.as_object_mut().unwrap().remove("clarity");
        assert!(ReviewFile::parse(&half).is_err(), "all scores or none");
        let mut range = serde_json::to_value(&scored).unwrap();
        range["clarity"] = serde_json::json!(3);
        assert!(ReviewFile::parse(&range).is_err());
        assert_eq!(unreachable_note(None), "no vision review: the vision engine failed");
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
