//! JSON Schemas for each kind of reply, built at run time so character ids
//! are an `enum` of the project's characters and every closed word comes from
//! the screenplay vocabulary ([`crate::project::vocab`]).
//!
//! Every object lists all its properties as `required` with
//! `additionalProperties: false`, as OpenAI's strict structured outputs need.

use serde_json::{Value, json};

use crate::project::vocab::{Angle, Mood, Position, ShotType, TimeOfDay, Transition};

/// Scene and shot counts the prompts ask for and replies must keep.
pub const SCENES: (usize, usize) = (3, 8);
pub const SHOTS: (usize, usize) = (2, 5);
/// Dialogue lines per shot.
pub const LINES: usize = 4;

/// `transition` may also be `cut` (no transition word in the screenplay).
pub const CUT: &str = "cut";

fn object(properties: Value) -> Value {
    let required: Vec<&String> = properties.as_object().expect("properties").keys().collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn words(words: &[&str]) -> Value {
    json!({"type": "string", "enum": words})
}

fn text() -> Value {
    json!({"type": "string"})
}

fn array(items: Value, min: usize, max: usize) -> Value {
    json!({"type": "array", "items": items, "minItems": min, "maxItems": max})
}

fn line(characters: &[&str]) -> Value {
    object(json!({"speaker": words(characters), "text": text()}))
}

/// A character's energy in a scene, 0 (spent) to 1 (fresh), in tenths.
const ENERGY: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The episode broken into scenes.
pub fn scenes(characters: &[&str]) -> Value {
    let mut transitions = Transition::WORDS.to_vec();
    transitions.push(CUT);
    let state = object(json!({
        "character": words(characters),
        "clothing": text(),
        "injuries": text(),
        "emotional_state": text(),
        // Tenths, as an enum: grammar-constrained decoders (llama.cpp)
        // enforce enums but not bounds on numbers.
        "energy": {"enum": ENERGY},
    }));
    let scene = object(json!({
        "title": text(),
        "description": text(),
        "location": text(),
        "time_of_day": words(TimeOfDay::WORDS),
        "mood": words(Mood::WORDS),
        // Whole seconds: integer bounds are enforced by constrained decoders.
        "target_duration": {"type": "integer", "minimum": 5, "maximum": 600},
        "transition": words(&transitions),
        "state": array(state, 1, characters.len().max(1)),
    }));
    object(json!({"scenes": array(scene, SCENES.0, SCENES.1)}))
}

/// One scene broken into shots.
pub fn shots(characters: &[&str]) -> Value {
    let presence = object(json!({"id": words(characters), "position": words(Position::WORDS)}));
    let shot = object(json!({
        "type": words(ShotType::WORDS),
        "angle": words(Angle::WORDS),
        "motion": text(),
        "action": text(),
        "characters": array(presence, 0, 3),
        "duration": {"type": "integer", "minimum": 1, "maximum": 60},
        "dialogue": array(line(characters), 0, LINES),
    }));
    object(json!({"shots": array(shot, SHOTS.0, SHOTS.1)}))
}

/// New dialogue for the given shots.
pub fn dialogue(characters: &[&str], shot_ids: &[&str]) -> Value {
    let shot = object(json!({"id": words(shot_ids), "dialogue": array(line(characters), 0, LINES)}));
    object(json!({"shots": array(shot, shot_ids.len(), shot_ids.len())}))
}

/// The episode's summary and each character's state at its end.
pub fn timeline(characters: &[&str]) -> Value {
    let list = || json!({"type": "array", "items": {"type": "string"}});
    let arc = object(json!({
        "character": words(characters),
        "personality_shifts": list(),
        "trauma_events": list(),
        "skills_learned": list(),
        "emotional_state": text(),
    }));
    object(json!({"summary": text(), "characters": array(arc, 1, characters.len().max(1))}))
}
