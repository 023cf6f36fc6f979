//! Cache keys: blake3 over a canonical key struct.
//!
//! A key is made of:
//! - the node kind and the engine that makes it, with a schema number that
//!   is bumped when an engine's output for the same inputs changes;
//! - the backend identity: simulated or real, service kind, model, and the
//!   identities of the local tools the node's engines declare (an
//!   espeak-ng version enters voice lines' keys, not a frame's);
//! - every resolved rule parameter and the node's recipe (its slice of the
//!   screenplay: text, prompts, framing);
//! - for each input, by role: its output hash (or, for an input of which the
//!   node reads one file, that file's hash and suffix), or only its media
//!   duration when the node uses nothing but the timing, or (for a shot timed
//!   by its dialogue) only the length in frames the lines require;
//! - the seed, for stochastic engines only.
//!
//! Never in a key: absolute paths, mtimes, hostnames, URLs, wall-clock time,
//! the node id. Moving a project, or renaming a scene, keeps its cache.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Graph, Node, Uses};
use crate::kind::NodeKind;
use crate::timing;

/// Bump when any engine's output for the same key material changes, or the
/// key's layout does (2: per-engine tool identities in `backend.tools`).
pub const KEY_SCHEMA: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMaterial {
    pub schema: u32,
    pub kind: NodeKind,
    pub engine: String,
    pub engine_version: u32,
    pub backend: Backend,
    pub params: BTreeMap<String, Value>,
    pub inputs: Vec<KeyInput>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Made by the sim executor: never mixed up with real media.
    pub simulated: bool,
    pub service: Option<String>,
    pub model: Option<String>,
    /// Tool name → identity, for the tools the node's engines declare.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInput {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The one output file the node reads ([`Uses::File`]), whose hash is `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Borrowed twin of [`KeyMaterial`]; must serialize to the same JSON.
#[derive(Serialize)]
struct View<'a> {
    schema: u32,
    kind: NodeKind,
    engine: &'a str,
    engine_version: u32,
    backend: BackendView<'a>,
    params: &'a BTreeMap<String, Value>,
    inputs: Vec<InputView<'a>>,
    seed: Option<u64>,
}

impl<'a> View<'a> {
    /// The one place that assembles a node's key material.
    fn of<'f: 'a>(
        graph: &'a Graph,
        node: usize,
        simulated: bool,
        fact: impl Fn(usize) -> Option<&'f InputFact>,
    ) -> Option<View<'a>> {
        let n = &graph.nodes[node];
        let pool = &graph.pools[n.pool];
        let mut inputs = Vec::with_capacity(n.inputs.len());
        let mut speech = Vec::new();
        for input in &n.inputs {
            let f = fact(input.node)?;
            let ms = |d: Option<f64>| Some(d.map_or(0, |d| (d * 1000.0).round() as u64));
            match input.uses {
                Uses::Content => inputs.push(InputView {
                    role: &input.role,
                    hash: Some(&f.hash),
                    file: None,
                    duration_ms: None,
                }),
                Uses::File(suffix) => inputs.push(InputView {
                    role: &input.role,
                    hash: Some(f.file(suffix)),
                    file: Some(suffix),
                    duration_ms: None,
                }),
                Uses::Duration => inputs.push(InputView {
                    role: &input.role,
                    hash: None,
                    file: None,
                    duration_ms: ms(f.duration),
                }),
                Uses::Speech => speech.push((input.role.as_str(), f.duration.unwrap_or(0.0))),
            }
        }
        if !speech.is_empty() {
            let written = n.params.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
            let frames = timing::tracks_frames(written, &timing::speech_tracks(&speech));
            inputs.push(InputView {
                role: "length",
                hash: None,
                file: None,
                duration_ms: Some(frames * 1000 / timing::FPS),
            });
        }
        Some(View {
            schema: KEY_SCHEMA,
            kind: n.kind,
            engine: n.engine().name,
            engine_version: n.engine().version,
            backend: BackendView {
                simulated,
                service: pool.service.map(|s| s.as_str()),
                model: pool.model.as_deref(),
                tools: tools_of(graph, n),
            },
            params: &n.params,
            inputs,
            seed: n.seed,
        })
    }
}

#[derive(Serialize)]
struct BackendView<'a> {
    simulated: bool,
    service: Option<&'a str>,
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tools: BTreeMap<&'static str, &'a str>,
}

/// The identities of the tools `n`'s engines declare: the chosen one and its
/// fallbacks, since the node is cached under one key whichever made it. A
/// tool a rule param replaces (`soundfont: {file: …}`) is left out: the
/// node reads that file, whose hash is in its params.
fn tools_of<'a>(graph: &'a Graph, n: &Node) -> BTreeMap<&'static str, &'a str> {
    let mut out = BTreeMap::new();
    for tool in n.engines.iter().flat_map(|e| e.tools) {
        if tool.replaced_by_param().is_some_and(|p| n.params.contains_key(p)) {
            continue;
        }
        if let Some(id) = graph.tools.get(tool) {
            out.insert(tool.as_str(), id.as_str());
        }
    }
    out
}

#[derive(Serialize)]
struct InputView<'a> {
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
}

/// What a finished input contributes: its output hash and media duration,
/// and, for a node that made several files, each file's hash.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFact {
    /// The hash of all its outputs together (`cache::content_hash`: a lone
    /// output's own hash).
    pub hash: String,
    pub duration: Option<f64>,
    /// `(suffix, hash)` of each output when there are several; empty for a
    /// lone output, whose hash is `hash`.
    pub files: Vec<(String, String)>,
}

impl InputFact {
    /// The fact of a node with this content hash, duration and outputs
    /// (`(suffix, hash)` each).
    pub fn new<'o>(
        hash: String,
        duration: Option<f64>,
        outputs: impl ExactSizeIterator<Item = (&'o str, &'o str)>,
    ) -> InputFact {
        let files = if outputs.len() > 1 {
            outputs.map(|(s, h)| (s.to_string(), h.to_string())).collect()
        } else {
            Vec::new()
        };
        InputFact { hash, duration, files }
    }

    /// The hash of the output with `suffix`. A node without that file (an
    /// engine that made only one) is keyed on all it made: more than the
    /// reader needs, never less.
    pub fn file(&self, suffix: &str) -> &String {
        (self.files.iter())
            .find(|(s, _)| s == suffix)
            .map_or(&self.hash, |(_, h)| h)
    }
}

impl KeyMaterial {
    /// The material of `node`, or `None` while an input is not built yet.
    pub fn of<'f>(
        graph: &Graph,
        node: usize,
        simulated: bool,
        fact: impl Fn(usize) -> Option<&'f InputFact>,
    ) -> Option<KeyMaterial> {
        let bytes = serde_json::to_vec(&View::of(graph, node, simulated, fact)?).expect("key view serializes");
        Some(serde_json::from_slice(&bytes).expect("a key view reads back as key material"))
    }

    /// The key of `node` without building an owned [`KeyMaterial`]: the same
    /// JSON, serialized from borrowed parts. This is the no-op build's hot path.
    pub fn key_of<'f>(
        graph: &Graph,
        node: usize,
        simulated: bool,
        fact: impl Fn(usize) -> Option<&'f InputFact>,
    ) -> Option<String> {
        // One contiguous buffer: blake3 is fastest fed in large pieces.
        let bytes = serde_json::to_vec(&View::of(graph, node, simulated, fact)?).expect("key view serializes");
        Some(blake3::hash(&bytes).to_hex().to_string())
    }

    /// The material without inputs, to compare a node's own parameters
    /// while its inputs are not built yet.
    pub fn own(graph: &Graph, node: usize, simulated: bool) -> KeyMaterial {
        let fact = InputFact {
            hash: String::new(),
            duration: None,
            files: Vec::new(),
        };
        let mut m = KeyMaterial::of(graph, node, simulated, |_| Some(&fact)).expect("every input has a fact");
        m.inputs.clear();
        m
    }

    /// The key: blake3 of the canonical JSON (maps are sorted).
    pub fn key(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("key material serializes");
        blake3::hash(&bytes).to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material() -> KeyMaterial {
        KeyMaterial {
            schema: KEY_SCHEMA,
            kind: NodeKind::VoiceLine,
            engine: "espeak".into(),
            engine_version: 1,
            backend: Backend {
                simulated: false,
                service: None,
                model: None,
                tools: BTreeMap::new(),
            },
            params: BTreeMap::from([("text".into(), Value::from("hi")), ("a".into(), Value::from(1))]),
            inputs: vec![],
            seed: None,
        }
    }

    #[test]
    fn borrowed_key_equals_owned_key() {
        use crate::graph::{Graph, Input, Node, Pool};
        let pool = Pool {
            name: "comfy".into(),
            slots: 1,
            service: Some(crate::engines::ServiceKind::Comfyui),
            hosts: Vec::new(),
            model: Some("m".into()),
        };
        let node = |inputs| Node {
            id: "x".into(),
            kind: NodeKind::RawVideo,
            path: "ep/s/sh".into(),
            engines: vec![crate::stages::registry::find("wan_t2v").unwrap()],
            pool: 0,
            pools: vec![0],
            params: BTreeMap::from([("motion".into(), Value::from("pan"))]),
            inputs,
            seed: Some(7),
            media_seconds: 1.0,
            retries: 0,
            out_stem: String::new(),
        };
        let graph = Graph {
            nodes: vec![
                node(vec![]),
                node(vec![
                    Input {
                        node: 0,
                        role: "image".into(),
                        uses: Uses::Content,
                    },
                    Input {
                        node: 0,
                        role: "timing".into(),
                        uses: Uses::Duration,
                    },
                ]),
            ],
            by_id: Default::default(),
            pools: vec![pool],
            tools: Default::default(),
        };
        let fact = InputFact {
            hash: "abc".into(),
            duration: Some(1.2345),
            files: vec![("png".into(), "def".into()), ("panel.png".into(), "ghi".into())],
        };
        for n in 0..2 {
            for sim in [false, true] {
                let owned = KeyMaterial::of(&graph, n, sim, |_| Some(&fact)).unwrap().key();
                assert_eq!(KeyMaterial::key_of(&graph, n, sim, |_| Some(&fact)).unwrap(), owned);
            }
        }
    }

    #[test]
    fn a_node_reading_one_file_keys_on_that_file_only() {
        use crate::graph::{Input, Pool};
        let mut camera = node_of("camera_move", NodeKind::RawVideo, BTreeMap::new());
        camera.inputs = vec![Input {
            node: 0,
            role: "image".into(),
            uses: Uses::File("png"),
        }];
        let mut whole = camera.clone();
        whole.inputs[0].uses = Uses::Content;
        let graph = Graph {
            nodes: vec![
                node_of("storyboard", NodeKind::ShotImage, BTreeMap::new()),
                camera,
                whole,
            ],
            pools: vec![Pool::local("cpu", 1)],
            ..Default::default()
        };
        let board = |plate: &'static str, panel: &'static str| {
            let outputs = [("png", plate), ("panel.png", panel)];
            InputFact::new(format!("{plate}+{panel}"), None, outputs.into_iter())
        };
        let key = |n: usize, f: &InputFact| KeyMaterial::key_of(&graph, n, false, |_| Some(f)).unwrap();
        let (before, captioned, redrawn) = (board("p1", "c1"), board("p1", "c2"), board("p2", "c1"));
        assert_eq!(
            key(1, &before),
            key(1, &captioned),
            "a new panel leaves the plate's reader alone"
        );
        assert_ne!(key(1, &before), key(1, &redrawn), "a new plate changes it");
        assert_ne!(
            key(2, &before),
            key(2, &captioned),
            "a reader of every file keys on every file"
        );
        let m = KeyMaterial::of(&graph, 1, false, |_| Some(&before)).unwrap();
        assert_eq!(m.inputs[0].hash.as_deref(), Some("p1"));
        assert_eq!(m.inputs[0].file.as_deref(), Some("png"));
        assert_eq!(m.key(), key(1, &before));
        // An engine that made one file (a generator's frame): keyed on it.
        let lone = InputFact::new("only".into(), None, [("png", "only")].into_iter());
        assert!(lone.files.is_empty());
        assert_eq!(lone.file("png"), "only");
        assert_eq!(before.file("jpg"), "p1+c1", "a missing file: keyed on everything");
    }

    /// A node of `engine`, for key tests.
    fn node_of(engine: &str, kind: NodeKind, params: BTreeMap<String, Value>) -> crate::graph::Node {
        crate::graph::Node {
            id: format!("{kind}:x"),
            kind,
            path: "x".into(),
            engines: vec![crate::stages::registry::find(engine).unwrap()],
            pool: 0,
            pools: vec![0],
            params,
            inputs: vec![],
            seed: None,
            media_seconds: 1.0,
            retries: 0,
            out_stem: String::new(),
        }
    }

    #[test]
    fn a_tool_enters_only_the_keys_of_engines_that_declare_it() {
        use crate::engines::Tool;
        use crate::graph::Pool;
        let soundfont = BTreeMap::from([(
            "soundfont".to_string(),
            serde_json::json!({"file": "sounds/gm.sf2", "hash": "abc"}),
        )]);
        let mut graph = Graph {
            nodes: vec![
                node_of("espeak", NodeKind::VoiceLine, BTreeMap::new()),
                node_of("camera_move", NodeKind::RawVideo, BTreeMap::new()),
                node_of("storyboard", NodeKind::ShotImage, BTreeMap::new()),
                node_of("procedural", NodeKind::SceneMusic, BTreeMap::new()),
                node_of("procedural", NodeKind::SceneMusic, soundfont),
            ],
            pools: vec![Pool::local("cpu", 1)],
            ..Default::default()
        };
        graph.tools = Tool::ALL.iter().map(|t| (*t, format!("{} 1.0", t.as_str()))).collect();
        let keys = |g: &Graph| -> Vec<String> {
            (0..g.nodes.len())
                .map(|n| {
                    let owned = KeyMaterial::of(g, n, false, |_| None).unwrap().key();
                    assert_eq!(KeyMaterial::key_of(g, n, false, |_| None).unwrap(), owned);
                    owned
                })
                .collect()
        };
        let before = keys(&graph);
        let changed = |tool: Tool| -> Vec<bool> {
            let mut g = Graph {
                nodes: graph.nodes.clone(),
                pools: graph.pools.clone(),
                tools: graph.tools.clone(),
                ..Default::default()
            };
            g.tools.insert(tool, "2.0".into());
            keys(&g).iter().zip(&before).map(|(a, b)| a != b).collect()
        };
        // voice, camera, storyboard, music, music with its own soundfont
        assert_eq!(changed(Tool::EspeakNg), [true, false, false, false, false]);
        assert_eq!(changed(Tool::Ffmpeg), [true, true, true, true, true]);
        assert_eq!(changed(Tool::Font), [false, false, true, false, false]);
        assert_eq!(changed(Tool::FallbackFonts), [false, false, true, false, false]);
        assert_eq!(changed(Tool::Soundfont), [false, false, false, true, false]);
        assert_eq!(changed(Tool::Fluidsynth), [false, false, false, true, true]);
        let m = KeyMaterial::of(&graph, 0, false, |_| None).unwrap();
        assert_eq!(
            m.backend.tools.keys().collect::<Vec<_>>(),
            ["espeak-ng", "ffmpeg", "ffprobe"],
            "the voice line's key names its engine's tools"
        );
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let a = material();
        assert_eq!(a.key(), material().key());
        type Change = Box<dyn Fn(&mut KeyMaterial)>;
        let cases: Vec<Change> = vec![
            Box::new(|m| m.engine = "edge_tts".into()),
            Box::new(|m| m.backend.simulated = true),
            Box::new(|m| m.backend.model = Some("x".into())),
            Box::new(|m| {
                m.backend.tools.insert("espeak-ng".into(), "2".into());
            }),
            Box::new(|m| {
                m.params.insert("text".into(), Value::from("ho"));
            }),
            Box::new(|m| m.seed = Some(1)),
            Box::new(|m| {
                m.inputs.push(KeyInput {
                    role: "r".into(),
                    hash: Some("h".into()),
                    file: None,
                    duration_ms: None,
                })
            }),
            Box::new(|m| m.kind = NodeKind::SceneMix),
        ];
        for change in cases {
            let mut b = material();
            change(&mut b);
            assert_ne!(a.key(), b.key(), "{b:?}");
        }
    }
}
