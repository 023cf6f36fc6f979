//! The closed vocabularies of the screenplay: moods, shot types, positions…
//!
//! Each is a string enum so a typo becomes a diagnostic listing the allowed
//! words, and keys serialize the word, not a number.

use serde::Serialize;

macro_rules! vocab {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $(#[serde(rename = $word)] $variant),+ }

        impl $name {
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($word => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

vocab!(
    /// When a scene happens; tints the frame and the light.
    TimeOfDay { Dawn = "dawn", Morning = "morning", Day = "day", Afternoon = "afternoon", Dusk = "dusk", Evening = "evening", Night = "night" }
);

vocab!(
    /// A scene's mood; picks its music.
    Mood { Calm = "calm", Tense = "tense", Melancholy = "melancholy", Joyful = "joyful", Mysterious = "mysterious", Action = "action", Romantic = "romantic", Comedic = "comedic", Hopeful = "hopeful", Eerie = "eerie" }
);

vocab!(
    /// How the next scene comes in.
    Transition { Dissolve = "dissolve", Fade = "fade", FadeBlack = "fadeblack", WipeLeft = "wipeleft" }
);

vocab!(
    /// Framing of a shot.
    ShotType { Establishing = "establishing", Wide = "wide", Medium = "medium", CloseUp = "close_up", ExtremeCloseUp = "extreme_close_up", OverShoulder = "over_shoulder", Pov = "pov" }
);

vocab!(
    /// Camera angle of a shot.
    Angle { EyeLevel = "eye_level", Low = "low", High = "high", Dutch = "dutch", BirdsEye = "birds_eye", WormsEye = "worms_eye" }
);

vocab!(
    /// Where a character stands in the frame.
    Position { Left = "left", Center = "center", Right = "right" }
);

vocab!(
    /// How far back continuity reaches for the previous frame of a character.
    ContinuityScope { Scene = "scene", Episode = "episode", Off = "off" }
);
