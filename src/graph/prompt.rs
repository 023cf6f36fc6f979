//! The text prompt a ComfyUI node sends, built from its params (its slice
//! of the screenplay and the project's style) when the graph is built, and
//! kept in its params as `prompt`: in its key, diffed by `studio why`,
//! printed by `studio graph --format json`. From the world's art style and
//! colour palette, each character's design prompt and appearance, their
//! screen position, the shot type, angle and motion, the action, and each
//! character's state in the scene.

use std::collections::BTreeMap;

use serde_json::Value;

/// `a, b, c` of the non-empty parts.
fn join(parts: impl IntoIterator<Item = String>) -> String {
    parts
        .into_iter()
        .map(|p| crate::text::normalize(&p))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The values of an object (`appearance`, a character's `state`), in key order.
fn values(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}: {}", s(v))).collect())
        .unwrap_or_default()
}

/// The positive prompt for a node with `params`.
pub fn positive(params: &BTreeMap<String, Value>) -> String {
    let p = |k: &str| params.get(k).unwrap_or(&Value::Null);
    let mut parts = Vec::new();
    // A character sheet: its design prompt and appearance.
    if let Some(design) = p("design_prompt").as_str() {
        parts.push(design.to_string());
        parts.extend(values(p("appearance")));
        parts.push("character reference sheet, full body, plain background".into());
    }
    if !s(p("shot_type")).is_empty() {
        parts.push(format!("{} shot", s(p("shot_type"))));
    }
    if !s(p("angle")).is_empty() {
        parts.push(format!("{} angle", s(p("angle"))));
    }
    if !s(p("motion")).is_empty() {
        parts.push(format!("camera: {}", s(p("motion"))));
    }
    parts.push(s(p("action")));
    for c in p("characters").as_array().into_iter().flatten() {
        let who = s(&c["name"]).split(" (").next().unwrap_or("").to_string();
        let who = if who.is_empty() { s(&c["id"]) } else { who };
        let pos = s(&c["position"]);
        let mut desc = vec![if pos.is_empty() {
            who
        } else {
            format!("{who} on the {pos}")
        }];
        desc.push(s(&c["design_prompt"]));
        desc.extend(values(&c["state"]));
        parts.push(format!("({})", join(desc)));
    }
    if !s(p("location")).is_empty() {
        parts.push(s(p("location")));
    }
    if !s(p("time_of_day")).is_empty() {
        parts.push(s(p("time_of_day")));
    }
    parts.push(s(p("art_style")));
    let palette: Vec<String> = p("palette").as_array().into_iter().flatten().map(s).collect();
    if !palette.is_empty() {
        parts.push(format!("colour palette {}", palette.join(" ")));
    }
    join(parts)
}

/// How a mood sounds, in words a text-to-music model knows.
fn mood_words(mood: &str) -> &'static str {
    match crate::project::vocab::Mood::parse(mood) {
        Some(m) => {
            use crate::project::vocab::Mood::*;
            match m {
                Calm => "calm, gentle, soft piano and warm strings, slow tempo",
                Tense => "tense, suspenseful, low pulsing strings, ticking percussion",
                Melancholy => "melancholic, sad, solo piano and cello, slow",
                Joyful => "joyful, bright, upbeat, acoustic guitar and glockenspiel",
                Mysterious => "mysterious, atmospheric, celesta and harp, minor key",
                Action => "energetic action, driving drums, fast staccato strings",
                Romantic => "romantic, tender, flute and strings, lush",
                Comedic => "comedic, playful, pizzicato strings and bassoon, bouncy",
                Hopeful => "hopeful, uplifting, rising strings and french horn",
                Eerie => "eerie, unsettling ambient drones, dissonant, sparse",
            }
        }
        None => "",
    }
}

/// The text prompt of a scene's music for a generator (ACE-Step), from the
/// scene's `mood`, `time_of_day` and `location` params and the world's
/// music style (`music_style`, else the project's genre and tone).
pub fn music(params: &BTreeMap<String, Value>, music_style: &str) -> String {
    let p = |k: &str| params.get(k).map(s).unwrap_or_default();
    let time = p("time_of_day");
    join([
        "instrumental anime soundtrack, background score, no vocals".to_string(),
        mood_words(&p("mood")).to_string(),
        if time.is_empty() {
            time
        } else {
            format!("{time} atmosphere")
        },
        p("location"),
        music_style.to_string(),
    ])
}

/// The negative prompt: the style's.
pub fn negative(params: &BTreeMap<String, Value>) -> Option<String> {
    let base = params
        .get("style")
        .and_then(|st| st["negative_prompt"].as_str())
        .map(crate::text::normalize);
    // A review round's candidates add the terms of the categories
    // rejected in earlier rounds.
    let rejected: Vec<String> = (params
        .get("rejected_terms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten())
    .filter_map(Value::as_str)
    .map(crate::text::normalize)
    .collect();
    match (base, rejected.is_empty()) {
        (base, true) => base,
        (Some(base), false) => Some(format!("{base}, {}", rejected.join(", "))),
        (None, false) => Some(rejected.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shot_prompt_names_positions_states_and_framing() {
        let params = json!({
            "shot_type": "wide", "angle": "high", "motion": "slow push-in", "action": "Hana hands Ren the letter",
            "characters": [
                {"id": "hana", "position": "left", "design_prompt": "1girl, chestnut bob", "state": {"clothing": "torn jacket", "injuries": "bleeding arm"}},
                {"id": "ren", "position": "right", "design_prompt": "1boy, red scarf", "state": null}
            ],
            "location": "post office", "time_of_day": "night", "art_style": "2000s TV anime",
            "palette": ["#1d2a44", "#e8a33d"]
        });
        let text = positive(&serde_json::from_value(params).unwrap());
        for part in [
            "wide shot",
            "high angle",
            "camera: slow push-in",
            "hana on the left",
            "ren on the right",
            "clothing: torn jacket",
            "injuries: bleeding arm",
            "2000s TV anime",
            "Hana hands Ren the letter",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }

    #[test]
    fn a_music_prompt_names_mood_time_place_and_style() {
        let params =
            json!({"mood": "tense", "time_of_day": "night", "location": "post office  counter", "scene": "ep01/s01"});
        let m: BTreeMap<String, Value> = serde_json::from_value(params).unwrap();
        assert_eq!(
            music(&m, "slice-of-life fantasy, quiet and wintry"),
            "instrumental anime soundtrack, background score, no vocals, \
             tense, suspenseful, low pulsing strings, ticking percussion, night atmosphere, \
             post office counter, slice-of-life fantasy, quiet and wintry"
        );
        // Every mood has words, and the words differ.
        let words: std::collections::BTreeSet<_> = crate::project::vocab::Mood::WORDS
            .iter()
            .map(|w| mood_words(w))
            .collect();
        assert_eq!(words.len(), crate::project::vocab::Mood::WORDS.len());
        assert!(!words.contains(""));
        let bare: BTreeMap<String, Value> = serde_json::from_value(json!({"mood": "calm"})).unwrap();
        assert!(music(&bare, "").ends_with("slow tempo"));
    }

    #[test]
    fn a_character_prompt_is_its_design_and_appearance() {
        let params = json!({"design_prompt": "1girl, amber eyes", "appearance": {"hair": "short bob"}, "art_style": "cel",
            "style": {"negative_prompt": "lowres,  blurry"}});
        let m: BTreeMap<String, Value> = serde_json::from_value(params).unwrap();
        let m = &m;
        assert_eq!(
            positive(m),
            "1girl, amber eyes, hair: short bob, character reference sheet, full body, plain background, cel"
        );
        assert_eq!(negative(m).as_deref(), Some("lowres, blurry"));
    }
}
