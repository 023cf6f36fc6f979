//! The kinds of artifact nodes in the build graph.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every kind of artifact studio builds.
///
/// The screenplay and approvals are sources the writer owns: their slices
/// enter the keys of the nodes below directly, so they are not nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// One generated image of a character: round r, index i, seed from its key.
    Candidate,
    /// A vision model's scores of one candidate (its `review.json`).
    Review,
    /// A character's approved pool (`pool.json` and the approved images),
    /// from the reviews and the person's decisions; the animatic's
    /// character card.
    CharacterRefs,
    /// A shot's source image (storyboard frame, or chosen from the pool / continuity).
    ShotImage,
    /// The shot animated by its engine.
    RawVideo,
    /// The raw video refined (V2V), or the raw video passed through.
    RefinedVideo,
    /// The post-processed shot: interpolated, scaled, graded, timed to dialogue.
    ShotVideo,
    /// The last frame of a shot video, which feeds continuity.
    LastFrame,
    /// The quality gate's scores of one shot video's key frames.
    ShotReview,
    /// One spoken dialogue line.
    VoiceLine,
    /// A scene's music bed, as long as the scene.
    SceneMusic,
    /// A scene's shots joined (video only).
    SceneVideo,
    /// A scene's audio: voice lines placed at their offsets over ducked music.
    SceneMix,
    /// A shot's picture less the frames the scene's transitions take,
    /// encoded once in the delivery codec (H.264, starting on an IDR frame).
    ShotSegment,
    /// The crossfade into a scene: the previous scene's last frames blended
    /// into this scene's first (read from the shots they lie in), its own
    /// short H.264 segment.
    Transition,
    /// The episode's video: the segments joined by stream copy.
    EpisodeVideo,
    /// The episode's audio: scene mixes cross-faded and loudness normalized.
    EpisodeAudio,
    /// The delivered episode: muxed streams, subtitles, chapters, thumbnail.
    Episode,
    /// The episode laid out in a media library.
    Publish,
}

impl NodeKind {
    pub const ALL: [NodeKind; 19] = [
        NodeKind::Candidate,
        NodeKind::Review,
        NodeKind::CharacterRefs,
        NodeKind::ShotImage,
        NodeKind::RawVideo,
        NodeKind::RefinedVideo,
        NodeKind::ShotVideo,
        NodeKind::LastFrame,
        NodeKind::ShotReview,
        NodeKind::VoiceLine,
        NodeKind::SceneMusic,
        NodeKind::SceneVideo,
        NodeKind::SceneMix,
        NodeKind::ShotSegment,
        NodeKind::Transition,
        NodeKind::EpisodeVideo,
        NodeKind::EpisodeAudio,
        NodeKind::Episode,
        NodeKind::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Candidate => "candidate",
            NodeKind::Review => "review",
            NodeKind::CharacterRefs => "character_refs",
            NodeKind::ShotImage => "shot_image",
            NodeKind::RawVideo => "raw_video",
            NodeKind::RefinedVideo => "refined_video",
            NodeKind::ShotVideo => "shot_video",
            NodeKind::LastFrame => "last_frame",
            NodeKind::ShotReview => "shot_review",
            NodeKind::VoiceLine => "voice_line",
            NodeKind::SceneMusic => "scene_music",
            NodeKind::SceneVideo => "scene_video",
            NodeKind::SceneMix => "scene_mix",
            NodeKind::ShotSegment => "shot_segment",
            NodeKind::Transition => "transition",
            NodeKind::EpisodeVideo => "episode_video",
            NodeKind::EpisodeAudio => "episode_audio",
            NodeKind::Episode => "episode",
            NodeKind::Publish => "publish",
        }
    }

    /// The file extension of the node's main output.
    pub fn extension(self) -> &'static str {
        match self {
            NodeKind::Candidate | NodeKind::CharacterRefs | NodeKind::ShotImage | NodeKind::LastFrame => "png",
            NodeKind::Review | NodeKind::ShotReview => "json",
            NodeKind::RawVideo | NodeKind::RefinedVideo | NodeKind::ShotVideo => "mkv",
            NodeKind::SceneVideo | NodeKind::EpisodeVideo => "mkv",
            NodeKind::VoiceLine | NodeKind::SceneMusic | NodeKind::SceneMix => "wav",
            NodeKind::EpisodeAudio => "m4a",
            NodeKind::ShotSegment | NodeKind::Transition => "mp4",
            NodeKind::Episode => "mp4",
            NodeKind::Publish => "json",
        }
    }
}

impl NodeKind {
    /// The kind whose rule makes this one: the episode's segments are made
    /// by the `episode_video` rule's engine (they are its parts, with no
    /// rule of their own); every other kind has its own rule.
    pub fn rule_kind(self) -> NodeKind {
        match self {
            NodeKind::ShotSegment | NodeKind::Transition => NodeKind::EpisodeVideo,
            kind => kind,
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let all: Vec<_> = NodeKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown node kind `{s}`; known kinds: {}", all.join(", "))
        })
    }
}
