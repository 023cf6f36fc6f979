//! Project → graph: which nodes exist, their inputs, engines and recipes.
//!
//! Each node's `params` hold exactly what changes its output: the resolved
//! rule params plus the slice of the screenplay it renders. Editing one
//! dialogue line therefore changes the params of one voice line and of the
//! episode's subtitles, and nothing else.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::{Graph, Host, Input, Node, Pool, Uses};
use crate::engines::{EngineSpec, Placement};
use crate::kind::NodeKind;
use crate::project::model::{Character, Episode, Project, Scene, Shot};
use crate::project::rules::{KindRule, Pick, Predicate};
use crate::project::vocab::{ContinuityScope, Transition};
use crate::project::{Diagnostics, ProjectError, Spans};

/// Build the graph of every episode that has a screenplay.
pub fn build(project: &Project, spans: &Spans, cpu_slots: usize) -> Result<Graph, Diagnostics> {
    let graph = nodes(project, cpu_slots).map_err(|d| super::review::located(d, spans))?;
    super::target::check_acyclic(&graph, spans)?;
    Ok(graph)
}

fn nodes(project: &Project, cpu_slots: usize) -> Result<Graph, Diagnostics> {
    let mut b = Builder::new(project, cpu_slots)?;
    b.review = super::review::LoopRules::of(project)?;
    for (i, c) in project.characters.iter().enumerate() {
        b.character_refs(i, c)?;
    }
    for c in &project.characters {
        b.voice_sample(c);
    }
    for ep in &project.episodes {
        if let Some(sp) = &ep.screenplay {
            b.episode(ep, &sp.scenes, &sp.dubs)?;
        }
    }
    Ok(b.graph)
}

/// An episode's dub tracks: each language with its scenes' mixes, and the
/// voices written in a dub (node, `<lang>:voice:<scene>/<shot>/<n>`), which
/// time that language's subtitles.
struct Tracks<'t> {
    /// The default language's lines: (node, shot video, `<scene>/<shot>/<n>`).
    voices: &'t [(usize, usize, String)],
    dubs: &'t [(&'t str, Vec<usize>)],
    dub_voices: &'t [(usize, String)],
}

/// A shot as the episode's picture reads it: its graded video, its id, the
/// fewest frames it can last (as written, before its voices stretch it:
/// what decides which shots a transition may reach) and its quality gate.
struct ShotPart {
    video: usize,
    id: String,
    least: u64,
    gate: Option<usize>,
}

/// Facts about a shot the `when` conditions test.
struct ShotFacts<'a> {
    shot: &'a Shot,
    project: &'a Project,
    has_source: bool,
    raw_engine: Option<&'static str>,
}

impl ShotFacts<'_> {
    fn holds(&self, p: Predicate) -> bool {
        let n = self.shot.characters.len();
        match p {
            Predicate::Solo => n == 1,
            Predicate::Multi => n > 1,
            Predicate::Empty => n == 0,
            Predicate::HasLora => self
                .shot
                .characters
                .iter()
                .any(|c| self.project.characters[c.character].lora.is_some()),
            Predicate::HasSource => self.has_source,
            Predicate::HasDialogue => !self.shot.dialogue.is_empty(),
            Predicate::After(engine) => self.raw_engine == Some(engine),
            Predicate::HasVoiceModel | Predicate::HasReferenceAudio => false,
        }
    }
}

pub(super) struct Builder<'a> {
    pub(super) project: &'a Project,
    pub(super) graph: Graph,
    cpu_pool: usize,
    inline_pool: usize,
    /// `character id` → its refs node.
    pub(super) refs: HashMap<String, usize>,
    /// The review loop's rules, when the profile has the loop.
    pub(super) review: Option<super::review::LoopRules>,
}

impl<'a> Builder<'a> {
    fn new(project: &'a Project, cpu_slots: usize) -> Result<Self, Diagnostics> {
        let mut graph = Graph::default();
        graph.pools.push(Pool::local("cpu", cpu_slots.max(1)));
        graph.pools.push(Pool::local("inline", usize::MAX / 2));
        for g in crate::project::groups::groups(&project.executors) {
            let hosts: Vec<Host> = g
                .hosts
                .iter()
                .map(|&i| Host {
                    id: project.executors[i].id.clone(),
                    executor: i,
                    slots: project.executors[i].slots,
                })
                .collect();
            graph.pools.push(Pool {
                name: g.name,
                slots: hosts.iter().map(|h| h.slots).sum(),
                service: Some(g.protocol),
                hosts,
                model: g.model,
            });
        }
        Ok(Builder {
            project,
            graph,
            cpu_pool: 0,
            inline_pool: 1,
            refs: HashMap::new(),
            review: None,
        })
    }

    /// A builder that adds to `graph`, built before for `project` (the
    /// session adds review rounds between builds).
    pub(super) fn resume(project: &'a Project, graph: Graph) -> Builder<'a> {
        let refs = (project.characters.iter())
            .filter_map(|c| {
                graph
                    .get(&format!("{}:{}", NodeKind::CharacterRefs, c.id))
                    .map(|n| (c.id.clone(), n))
            })
            .collect();
        Builder {
            project,
            graph,
            cpu_pool: 0,
            inline_pool: 1,
            refs,
            review: None,
        }
    }

    pub(super) fn rule(&self, kind: NodeKind) -> Result<&'a KindRule, Diagnostics> {
        self.project.rules.get(kind).ok_or_else(|| {
            ProjectError::plain(
                "rules::missing",
                format!(
                    "no rule says how to make `{kind}` in profile `{}`",
                    self.project.profile.rules_profile
                ),
            )
            .help(format!(
                "add `{kind}: {{profiles: {{{}: {{engine: ...}}}}}}` to a file in rules/; engines: {}",
                self.project.profile.rules_profile,
                self.project.catalog.names_for(kind).join(", ")
            ))
            .into()
        })
    }

    /// The pool an engine of a chain runs in: its group, resolved by the loader.
    fn pool_for(&self, pick: &Pick<'_>) -> usize {
        match pick.engine.placement {
            Placement::Cpu => self.cpu_pool,
            Placement::Inline => self.inline_pool,
            Placement::Service(kind) => pick
                .group
                .and_then(|g| {
                    self.graph
                        .pools
                        .iter()
                        .position(|p| p.service == Some(kind) && p.name == g)
                })
                // The loader resolved every service engine's group.
                .expect("the loader resolved the engine's executor group"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add(
        &mut self,
        kind: NodeKind,
        path: String,
        out_stem: String,
        picks: Vec<Pick<'_>>,
        rule: &KindRule,
        mut recipe: BTreeMap<String, Value>,
        inputs: Vec<Input>,
        media_seconds: f64,
    ) -> usize {
        let mut params = rule.params.clone();
        params.append(&mut recipe);
        // A node keys on the workflows of its own engines only.
        if let Some(Value::Object(flows)) = params.get_mut("workflows") {
            flows.retain(|engine, _| picks.iter().any(|p| p.engine.name == engine));
            if flows.is_empty() {
                params.remove("workflows");
            } else {
                // The prompt it sends, from the screenplay: keyed as text.
                params.insert("palette".into(), json!(self.project.world.color_palette));
                params.insert("prompt".into(), json!(super::prompt::positive(&params)));
                // The style's negative prompt, to the workflows that bind
                // one (a video node has no `style` param of its own).
                let binds_negative = params
                    .get("workflows")
                    .and_then(Value::as_object)
                    .is_some_and(|flows| flows.values().any(|f| f["bind"].get("negative").is_some()));
                if binds_negative {
                    let negative = super::prompt::negative(&params)
                        .unwrap_or_else(|| crate::text::normalize(&self.project.style.negative_prompt));
                    params.insert("negative_prompt".into(), json!(negative));
                }
            }
        }
        let pools: Vec<usize> = picks.iter().map(|p| self.pool_for(p)).collect();
        let engines: Vec<&'static EngineSpec> = picks.iter().map(|p| p.engine).collect();
        let primary = engines[0];
        let seed = primary.stochastic.then(|| seed_for(&path, params.get("take")));
        let id = format!("{kind}:{path}");
        let node = Node {
            id: id.clone(),
            kind,
            path,
            pool: pools[0],
            pools,
            engines,
            params,
            inputs,
            seed,
            media_seconds,
            retries: rule.retries,
            out_stem,
        };
        let index = self.graph.nodes.len();
        self.graph.nodes.push(node);
        self.graph.by_id.insert(id, index);
        index
    }

    /// What a scene's music engines read beyond the scene: a generator's
    /// text prompt, the library's track for the scene's mood (picked here,
    /// so the key holds that one track). Only a chain holding such an
    /// engine gets them: the procedural bed keys on neither.
    fn music_recipe(&self, engines: &[Pick<'_>], scene: &Scene, path: &str, recipe: &mut BTreeMap<String, Value>) {
        let p = self.project;
        if engines
            .iter()
            .any(|pick| matches!(pick.engine.placement, Placement::Service(_)))
        {
            let style = if p.world.music_style.is_empty() {
                let parts = [p.meta.genre.as_str(), p.storyline.tone.as_str()];
                parts
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                p.world.music_style.clone()
            };
            recipe.insert("prompt".into(), json!(super::prompt::music(recipe, &style)));
        }
        if engines.iter().any(|pick| pick.engine.name == LIBRARY_MUSIC)
            && let Some(track) = p.music_library.as_ref().and_then(|l| l.pick(scene.mood, path))
        {
            recipe.insert("track".into(), json!({"file": track.file, "hash": track.hash}));
        }
    }

    fn character_refs(&mut self, _index: usize, c: &Character) -> Result<(), Diagnostics> {
        if self.review.is_some() {
            return self.pool(c);
        }
        let recipe = self.design(c);
        self.add_refs(c, format!("characters/{}", c.id), recipe)
    }

    /// `c`'s `character_refs` node (its card, or its pool with `recipe`
    /// from the loop's rules), writing under `out`: what shots take their
    /// character art from.
    pub(super) fn add_refs(
        &mut self,
        c: &Character,
        out: String,
        recipe: BTreeMap<String, Value>,
    ) -> Result<(), Diagnostics> {
        let rule = self.rule(NodeKind::CharacterRefs)?;
        let engines = rule.engines_for(|_| false);
        let n = self.add(
            NodeKind::CharacterRefs,
            c.id.clone(),
            out,
            engines,
            rule,
            recipe,
            Vec::new(),
            0.0,
        );
        self.refs.insert(c.id.clone(), n);
        Ok(())
    }

    /// What a character's art is drawn from.
    pub(super) fn design(&self, c: &Character) -> BTreeMap<String, Value> {
        let p = self.project;
        map([
            ("character", json!(c.id)),
            ("name", json!(c.name)),
            ("design_prompt", json!(c.design_prompt)),
            ("appearance", json!(c.appearance)),
            ("color", json!(c.color)),
            ("lora", json!(c.lora)),
            ("style", json!(p.style)),
            ("art_style", json!(p.world.art_style)),
        ])
    }

    fn episode(&mut self, ep: &Episode, scenes: &[Scene], dubs: &[String]) -> Result<(), Diagnostics> {
        let scope = continuity_scope(self.rule(NodeKind::ShotImage)?)?;
        // The last frame of the latest shot each character appeared in.
        let mut last_seen: HashMap<usize, usize> = HashMap::new();
        // Shot path → its last_frame node, for explicit `continue_from`.
        let mut last_frames: HashMap<String, usize> = HashMap::new();
        let mut pending_continue: Vec<(usize, String)> = Vec::new();
        let mut scene_shots: Vec<Vec<ShotPart>> = Vec::new();
        let mut scene_mixes = Vec::new();
        let mut all_voices: Vec<(usize, usize, String)> = Vec::new();
        // Per dub language: each scene's mix, and the lines voiced in it
        // (node, `<lang>:voice:<scene>/<shot>/<n>`) for its subtitles.
        let mut dub_mixes: Vec<Vec<usize>> = vec![Vec::new(); dubs.len()];
        let mut dub_voices: Vec<(usize, String)> = Vec::new();
        let mut all_shots: Vec<usize> = Vec::new();

        for scene in scenes {
            if scope == ContinuityScope::Scene {
                last_seen.clear();
            }
            let mut shot_videos = Vec::new();
            let mut gates = Vec::new();
            let mut parts = Vec::new();
            let mut voices = Vec::new();
            let mut track_voices: Vec<Vec<(usize, String)>> = vec![Vec::new(); dubs.len()];
            for shot in &scene.shots {
                let path = format!("{}/{}/{}", ep.id, scene.id, shot.id);
                // An explicit `continue_from` is wired below, once every shot exists.
                let continuity = if scope == ContinuityScope::Off || shot.continue_from.is_some() {
                    None
                } else {
                    shot.characters
                        .iter()
                        .rev()
                        .find_map(|c| last_seen.get(&c.character).copied())
                };
                let image = self.shot_image(ep, scene, shot, &path, continuity)?;
                if let (Some(target), false) = (&shot.continue_from, scope == ContinuityScope::Off) {
                    pending_continue.push((image, format!("{}/{target}", ep.id)));
                }
                let (video, line_nodes, tracks) = self.shot_nodes(scene, shot, &path, image, dubs)?;
                let gate = self.shot_review(shot, &path, video)?;
                let last = self.last_frame(&path, video)?;
                last_frames.insert(path.clone(), last);
                for c in &shot.characters {
                    last_seen.insert(c.character, last);
                }
                for (i, l) in line_nodes.iter().enumerate() {
                    let role = format!("{}/{}", shot.id, i + 1);
                    voices.push((*l, role.clone()));
                    all_voices.push((*l, video, format!("{}/{role}", scene.id)));
                    for ((lang, track), own) in dubs.iter().zip(&tracks).zip(&mut track_voices) {
                        own.push((track[i], role.clone()));
                        if track[i] != *l {
                            dub_voices.push((track[i], format!("{lang}:voice:{}/{role}", scene.id)));
                        }
                    }
                }
                shot_videos.push((video, shot.id.clone()));
                gates.extend(gate.map(|g| (g, shot.id.clone())));
                parts.push(ShotPart {
                    video,
                    id: shot.id.clone(),
                    least: crate::timing::least_shot_frames(shot.duration, shot.dialogue.len()),
                    gate,
                });
                all_shots.push(video);
            }
            let (sv, mix) = self.scene_nodes(ep, scene, &shot_videos, &voices, None)?;
            // The quality gate: the scene is not assembled from a shot
            // that failed it.
            self.graph.nodes[sv]
                .inputs
                .extend(gates.into_iter().map(|(g, id)| Input {
                    node: g,
                    role: format!("gate:{id}"),
                    uses: Uses::Content,
                }));
            scene_shots.push(parts);
            scene_mixes.push(mix);
            for ((lang, track), mixes) in dubs.iter().zip(&track_voices).zip(&mut dub_mixes) {
                mixes.push(self.scene_nodes(ep, scene, &shot_videos, track, Some(lang))?.1);
            }
        }
        for (image, target) in pending_continue {
            let last = last_frames[&target];
            self.graph.nodes[image].inputs.push(Input {
                node: last,
                role: "continuity".into(),
                uses: Uses::Content,
            });
            self.graph.nodes[image]
                .params
                .insert("continue_from".into(), json!(target));
        }
        let dubs: Vec<(&str, Vec<usize>)> = dubs.iter().map(String::as_str).zip(dub_mixes).collect();
        let tracks = Tracks {
            voices: &all_voices,
            dubs: &dubs,
            dub_voices: &dub_voices,
        };
        self.episode_nodes(ep, scenes, &scene_shots, &scene_mixes, &all_shots, &tracks)
    }

    fn shot_image(
        &mut self,
        ep: &Episode,
        scene: &Scene,
        shot: &Shot,
        path: &str,
        continuity: Option<usize>,
    ) -> Result<usize, Diagnostics> {
        let rule = self.rule(NodeKind::ShotImage)?;
        let p = self.project;
        let facts = ShotFacts {
            shot,
            project: p,
            has_source: !shot.characters.is_empty() || continuity.is_some() || shot.continue_from.is_some(),
            raw_engine: None,
        };
        let engines = rule.engines_for(|pr| facts.holds(pr));
        let mut inputs: Vec<Input> = shot
            .characters
            .iter()
            .map(|c| Input {
                node: self.refs[&c.id],
                role: format!("ref:{}", c.id),
                uses: Uses::Content,
            })
            .collect();
        if let Some(last) = continuity {
            inputs.push(Input {
                node: last,
                role: "continuity".into(),
                uses: Uses::Content,
            });
        }
        let characters: Vec<Value> = shot
            .characters
            .iter()
            .map(|c| {
                let ch = &p.characters[c.character];
                json!({"id": c.id, "name": ch.name, "position": c.position, "color": ch.color})
            })
            .collect();
        let recipe = map([
            ("shot_type", json!(shot.shot_type)),
            ("angle", json!(shot.angle)),
            ("characters", Value::Array(characters)),
            ("location", json!(scene.location)),
            ("time_of_day", json!(scene.time_of_day)),
            ("action", json!(shot.action)),
            // The caption names the camera move.
            ("motion", json!(shot.motion)),
            ("episode", json!(ep.id)),
            // The storyboard prints its scene and shot.
            ("scene", json!(scene.id)),
            ("shot", json!(shot.id)),
            ("take", json!(shot.take)),
        ]);
        Ok(self.add(
            NodeKind::ShotImage,
            path.to_string(),
            format!("{path}/image"),
            engines,
            rule,
            recipe,
            inputs,
            shot.duration,
        ))
    }

    /// raw → refined → shot video, and the shot's voice lines: those of the
    /// default language, then per dub language each line's voice (its own
    /// when the line is written in it, else the default one).
    #[allow(clippy::type_complexity)]
    fn shot_nodes(
        &mut self,
        scene: &Scene,
        shot: &Shot,
        path: &str,
        image: usize,
        dubs: &[String],
    ) -> Result<(usize, Vec<usize>, Vec<Vec<usize>>), Diagnostics> {
        let p = self.project;
        let has_source = !self.graph.nodes[image].inputs.is_empty() || shot.continue_from.is_some();
        let mut facts = ShotFacts {
            shot,
            project: p,
            has_source,
            raw_engine: None,
        };

        let rule = self.rule(NodeKind::RawVideo)?;
        let raw_engines = rule.engines_for(|pr| facts.holds(pr));
        facts.raw_engine = Some(raw_engines[0].engine.name);
        let mut recipe = map([
            ("motion", json!(shot.motion)),
            ("angle", json!(shot.angle)),
            ("duration", json!(shot.duration)),
            ("take", json!(shot.take)),
        ]);
        // A local engine (the animatic's camera move) films the storyboard
        // plate: what the shot shows reaches it through the plate's bytes.
        // Only a generator reads the prompt, so only its key holds it, and
        // an edited action (the review panel's caption) moves no camera.
        if raw_engines
            .iter()
            .any(|pick| matches!(pick.engine.placement, Placement::Service(_)))
        {
            let characters: Vec<Value> = shot
                .characters
                .iter()
                .map(|c| {
                    let ch = &p.characters[c.character];
                    json!({
                        "id": c.id,
                        "position": c.position,
                        "design_prompt": ch.design_prompt,
                        "lora": ch.lora,
                        "state": scene.state_of(&c.id),
                    })
                })
                .collect();
            recipe.append(&mut map([
                ("action", json!(shot.action)),
                ("shot_type", json!(shot.shot_type)),
                ("characters", Value::Array(characters)),
                ("location", json!(scene.location)),
                ("time_of_day", json!(scene.time_of_day)),
                ("art_style", json!(p.world.art_style)),
            ]));
        }
        // The camera move reads the plate, not the review panel.
        let input = vec![Input {
            node: image,
            role: "image".into(),
            uses: Uses::File("png"),
        }];
        let raw = self.add(
            NodeKind::RawVideo,
            path.into(),
            format!("{path}/raw"),
            raw_engines,
            rule,
            recipe,
            input,
            shot.duration,
        );

        let rule = self.rule(NodeKind::RefinedVideo)?;
        let engines = rule.engines_for(|pr| facts.holds(pr));
        let recipe = map([("motion", json!(shot.motion)), ("take", json!(shot.take))]);
        let input = vec![Input {
            node: raw,
            role: "raw".into(),
            uses: Uses::Content,
        }];
        let refined = self.add(
            NodeKind::RefinedVideo,
            path.into(),
            format!("{path}/refined"),
            engines,
            rule,
            recipe,
            input,
            shot.duration,
        );

        let rule = self.rule(NodeKind::VoiceLine)?;
        let mut lines = Vec::new();
        for (i, line) in shot.dialogue.iter().enumerate() {
            let speaker = &p.characters[line.speaker];
            let engines = speaker_chain(rule, &p.catalog, speaker);
            let recipe = map([
                ("text", json!(line.text)),
                ("speaker", json!(speaker.id)),
                ("voice", json!(speaker.voice)),
            ]);
            let line_path = format!("{path}/{}", i + 1);
            let stem = format!("{path}/voice-{}", i + 1);
            lines.push(self.add(
                NodeKind::VoiceLine,
                line_path,
                stem,
                engines,
                rule,
                recipe,
                Vec::new(),
                2.0,
            ));
        }
        let mut tracks = Vec::new();
        let mut dub_inputs = Vec::new();
        for lang in dubs {
            let mut track = Vec::new();
            for (i, line) in shot.dialogue.iter().enumerate() {
                let Some(text) = line.dubs.get(lang) else {
                    track.push(lines[i]);
                    continue;
                };
                let node = self.dub_line(path, i, line.speaker, lang, text)?;
                dub_inputs.push(Input {
                    node,
                    role: format!("{lang}:voice:{}", i + 1),
                    uses: Uses::Speech,
                });
                track.push(node);
            }
            tracks.push(track);
        }

        let rule = self.rule(NodeKind::ShotVideo)?;
        let engines = rule.engines_for(|pr| facts.holds(pr));
        let mut inputs = vec![Input {
            node: refined,
            role: "video".into(),
            uses: Uses::Content,
        }];
        inputs.extend(lines.iter().enumerate().map(|(i, &l)| Input {
            node: l,
            role: format!("voice:{}", i + 1),
            uses: Uses::Speech,
        }));
        // Every track's lines must fit: the longest decides the length.
        inputs.extend(dub_inputs);
        let recipe = map([("duration", json!(shot.duration))]);
        let video = self.add(
            NodeKind::ShotVideo,
            path.into(),
            format!("{path}/shot"),
            engines,
            rule,
            recipe,
            inputs,
            shot.duration,
        );
        Ok((video, lines, tracks))
    }

    /// A character's voice sample (`voice_line:cast/<id>`): a fixed line
    /// in their default-language voice, keyed like any line (its text and
    /// voice), for the dashboard's Cast tab. None when no rule makes lines.
    fn voice_sample(&mut self, c: &Character) {
        let p = self.project;
        let Ok(rule) = self.rule(NodeKind::VoiceLine) else {
            return;
        };
        let engines = speaker_chain(rule, &p.catalog, c);
        let recipe = map([
            ("text", json!(sample_text(&c.name))),
            ("speaker", json!(c.id)),
            ("voice", json!(c.voice)),
        ]);
        self.add(
            NodeKind::VoiceLine,
            format!("cast/{}", c.id),
            format!("cast/{}/voice-sample", c.id),
            engines,
            rule,
            recipe,
            Vec::new(),
            2.0,
        );
    }

    /// Line `i` of the shot at `path` in dub language `lang`: the speaker's
    /// voice for it (`voices.<lang>`, its own engine chain).
    fn dub_line(&mut self, path: &str, i: usize, speaker: usize, lang: &str, text: &str) -> Result<usize, Diagnostics> {
        let p = self.project;
        let rule = self.rule(NodeKind::VoiceLine)?;
        let speaker = &p.characters[speaker];
        let voice = &speaker.voices[lang];
        let engines = voice_chain(rule, &p.catalog, voice.engines.as_deref().unwrap_or_default());
        if engines.is_empty() {
            return Err(ProjectError::plain(
                "graph::dub_voice",
                format!(
                    "{}'s `{lang}` voice has no engine profile `{}` can run",
                    speaker.id, p.profile.rules_profile
                ),
            )
            .help("list a local engine (kokoro_ja, piper, espeak) or one the voice_line rule names in its `engines:`")
            .into());
        }
        let recipe = map([
            ("text", json!(text)),
            ("speaker", json!(speaker.id)),
            ("voice", json!(voice)),
            ("language", json!(lang)),
        ]);
        Ok(self.add(
            NodeKind::VoiceLine,
            format!("{path}/{}.{lang}", i + 1),
            format!("{path}/voice-{}.{lang}", i + 1),
            engines,
            rule,
            recipe,
            Vec::new(),
            2.0,
        ))
    }

    fn last_frame(&mut self, path: &str, video: usize) -> Result<usize, Diagnostics> {
        let rule = self.rule(NodeKind::LastFrame)?;
        let engines = rule.engines_for(|_| false);
        let input = vec![Input {
            node: video,
            role: "video".into(),
            uses: Uses::Content,
        }];
        Ok(self.add(
            NodeKind::LastFrame,
            path.into(),
            format!("{path}/last_frame"),
            engines,
            rule,
            BTreeMap::new(),
            input,
            0.0,
        ))
    }

    fn scene_nodes(
        &mut self,
        ep: &Episode,
        scene: &Scene,
        shots: &[(usize, String)],
        voices: &[(usize, String)],
        dub: Option<&str>,
    ) -> Result<(usize, usize), Diagnostics> {
        let path = format!("{}/{}", ep.id, scene.id);
        if let Some(lang) = dub {
            // A dub's mix: the same music under the dub's voices.
            let music = self.graph.by_id[&format!("{}:{path}", NodeKind::SceneMusic)];
            let video = self.graph.by_id[&format!("{}:{path}", NodeKind::SceneVideo)];
            let mix = self.scene_mix(&path, shots, voices, music, Some(lang))?;
            return Ok((video, mix));
        }
        let length: f64 = scene.shots.iter().map(|s| s.duration).sum();
        let timing = |uses| -> Vec<Input> {
            shots
                .iter()
                .map(|(n, id)| Input {
                    node: *n,
                    role: format!("shot:{id}"),
                    uses,
                })
                .collect()
        };

        let rule = self.rule(NodeKind::SceneMusic)?;
        let engines = rule.engines_for(|_| false);
        let mut recipe = map([
            ("mood", json!(scene.mood)),
            ("time_of_day", json!(scene.time_of_day)),
            ("location", json!(scene.location)),
            ("scene", json!(path)),
        ]);
        self.music_recipe(&engines, scene, &path, &mut recipe);
        let music = self.add(
            NodeKind::SceneMusic,
            path.clone(),
            format!("{path}/music"),
            engines,
            rule,
            recipe,
            timing(Uses::Duration),
            length,
        );

        let rule = self.rule(NodeKind::SceneVideo)?;
        let engines = rule.engines_for(|_| false);
        let video = self.add(
            NodeKind::SceneVideo,
            path.clone(),
            format!("{path}/video"),
            engines,
            rule,
            BTreeMap::new(),
            timing(Uses::Content),
            length,
        );

        let mix = self.scene_mix(&path, shots, voices, music, None)?;
        Ok((video, mix))
    }

    /// A scene's mix: its voices (of one language) over its music, placed
    /// on its shots' lengths. A dub's is `<path>.<lang>`.
    fn scene_mix(
        &mut self,
        path: &str,
        shots: &[(usize, String)],
        voices: &[(usize, String)],
        music: usize,
        dub: Option<&str>,
    ) -> Result<usize, Diagnostics> {
        let length: f64 = shots.iter().map(|&(n, _)| self.graph.nodes[n].media_seconds).sum();
        let rule = self.rule(NodeKind::SceneMix)?;
        let engines = rule.engines_for(|_| false);
        let mut inputs: Vec<Input> = shots
            .iter()
            .map(|(n, id)| Input {
                node: *n,
                role: format!("shot:{id}"),
                uses: Uses::Duration,
            })
            .collect();
        inputs.extend(voices.iter().map(|(n, role)| Input {
            node: *n,
            role: format!("voice:{role}"),
            uses: Uses::Content,
        }));
        inputs.push(Input {
            node: music,
            role: "music".into(),
            uses: Uses::Content,
        });
        let (node_path, stem) = match dub {
            None => (path.to_string(), format!("{path}/mix")),
            Some(lang) => (format!("{path}.{lang}"), format!("{path}/mix.{lang}")),
        };
        Ok(self.add(
            NodeKind::SceneMix,
            node_path,
            stem,
            engines,
            rule,
            BTreeMap::new(),
            inputs,
            length,
        ))
    }

    /// The episode's picture in segments, each encoded once: a
    /// `shot_segment` per shot (its frames less those the transitions
    /// take) and a `transition` into every scene after the first (when
    /// transitions overlap), which reads the shots the overlap may reach on
    /// either side. Which shots those are is decided here, on the shots'
    /// least lengths (`timing::reach`): voices only lengthen shots, so the
    /// overlap never reaches further once they are made. Returns the
    /// `episode_video` inputs, in order. The segments run on the
    /// `episode_video` rule's engine, with no params of the rule: their
    /// recipe is the overlaps they cut and the transition they draw.
    fn video_segments(
        &mut self,
        path: &str,
        scenes: &[Scene],
        scene_shots: &[Vec<ShotPart>],
        transitions: &[Value],
        overlap_seconds: f64,
    ) -> Result<Vec<Input>, Diagnostics> {
        use crate::timing;
        let mut rule = self.rule(NodeKind::EpisodeVideo)?.clone();
        rule.params.clear();
        let overlap = timing::frames(overlap_seconds);
        let n = scenes.len();
        // Per scene: how many of its first shots the transition into it may
        // reach, and of its last shots the one out of it.
        let reaches: Vec<(usize, usize)> = scene_shots
            .iter()
            .enumerate()
            .map(|(i, shots)| {
                let least: Vec<u64> = shots.iter().map(|s| s.least).collect();
                let backwards: Vec<u64> = least.iter().rev().copied().collect();
                let overlap_in = if i > 0 { overlap } else { 0 };
                let overlap_out = if i + 1 < n { overlap } else { 0 };
                (
                    timing::reach(&least, overlap_in),
                    timing::reach(&backwards, overlap_out),
                )
            })
            .collect();
        let mut parts = Vec::new();
        for (i, (scene, shots)) in scenes.iter().zip(scene_shots).enumerate() {
            let scene_path = format!("{path}/{}", scene.id);
            let (reach_in, reach_out) = reaches[i];
            if i > 0 && overlap > 0 {
                let recipe = map([("transition", transitions[i - 1].clone()), ("frames", json!(overlap))]);
                let before = &scene_shots[i - 1];
                let from = &before[before.len() - reaches[i - 1].1..];
                let to = &shots[..reach_in];
                let mut inputs = Vec::new();
                for (side, shots) in [("from", from), ("to", to)] {
                    for shot in shots {
                        inputs.push(Input {
                            node: shot.video,
                            role: format!("{side}:{}", shot.id),
                            uses: Uses::Content,
                        });
                    }
                }
                // The quality gate: no crossfade drawn from a shot that failed it.
                for (side, shots) in [("from", from), ("to", to)] {
                    inputs.extend(shots.iter().filter_map(|shot| {
                        Some(Input {
                            node: shot.gate?,
                            role: format!("gate:{side}:{}", shot.id),
                            uses: Uses::Content,
                        })
                    }));
                }
                let t = self.add(
                    NodeKind::Transition,
                    scene_path.clone(),
                    format!("{scene_path}/transition"),
                    rule.engines_for(|_| false),
                    &rule,
                    recipe,
                    inputs,
                    timing::seconds(overlap),
                );
                parts.push(Input {
                    node: t,
                    role: format!("transition:{}", scene.id),
                    uses: Uses::Content,
                });
            }
            for (k, shot) in shots.iter().enumerate() {
                // A transition that may reach this shot cuts it by the
                // lengths of the shots between it and the scene's edge.
                let overlap_in = if k < reach_in { overlap } else { 0 };
                let overlap_out = if k + reach_out >= shots.len() { overlap } else { 0 };
                let mut inputs = vec![Input {
                    node: shot.video,
                    role: "shot".into(),
                    uses: Uses::Content,
                }];
                let timing_of = |side: &str, others: &[ShotPart]| -> Vec<Input> {
                    others
                        .iter()
                        .map(|o| Input {
                            node: o.video,
                            role: format!("{side}:{}", o.id),
                            uses: Uses::Duration,
                        })
                        .collect()
                };
                if overlap_in > 0 {
                    inputs.extend(timing_of("before", &shots[..k]));
                }
                if overlap_out > 0 {
                    inputs.extend(timing_of("after", &shots[k + 1..]));
                }
                inputs.extend(shot.gate.map(|g| Input {
                    node: g,
                    role: "gate".into(),
                    uses: Uses::Content,
                }));
                let recipe = map([("overlap_in", json!(overlap_in)), ("overlap_out", json!(overlap_out))]);
                let shot_path = format!("{scene_path}/{}", shot.id);
                let length = self.graph.nodes[shot.video].media_seconds;
                let segment = self.add(
                    NodeKind::ShotSegment,
                    shot_path.clone(),
                    format!("{shot_path}/segment"),
                    rule.engines_for(|_| false),
                    &rule,
                    recipe,
                    inputs,
                    length,
                );
                parts.push(Input {
                    node: segment,
                    role: format!("segment:{}/{}", scene.id, shot.id),
                    uses: Uses::Content,
                });
            }
        }
        Ok(parts)
    }

    fn episode_nodes(
        &mut self,
        ep: &Episode,
        scenes: &[Scene],
        scene_shots: &[Vec<ShotPart>],
        mixes: &[usize],
        shots: &[usize],
        tracks: &Tracks<'_>,
    ) -> Result<(), Diagnostics> {
        let p = self.project;
        let path = ep.id.clone();
        let length: f64 = scenes.iter().flat_map(|s| &s.shots).map(|s| s.duration).sum();
        // Transitions between scenes, resolved once for the three nodes that
        // must agree on them (video, audio, subtitles and chapters).
        let video_rule = self.rule(NodeKind::EpisodeVideo)?;
        let default = video_rule
            .params
            .get("default_transition")
            .and_then(Value::as_str)
            .and_then(Transition::parse)
            .unwrap_or(Transition::Dissolve);
        let overlap = video_rule
            .params
            .get("transition_seconds")
            .and_then(Value::as_f64)
            .unwrap_or(0.4);
        let transitions: Vec<Value> = scenes
            .iter()
            .take(scenes.len().saturating_sub(1))
            .map(|s| json!(s.transition.unwrap_or(default)))
            .collect();
        let scene_roles = |nodes: &[usize], uses| -> Vec<Input> {
            nodes
                .iter()
                .zip(scenes)
                .map(|(n, s)| Input {
                    node: *n,
                    role: format!("scene:{}", s.id),
                    uses,
                })
                .collect()
        };

        let parts = self.video_segments(&path, scenes, scene_shots, &transitions, overlap)?;
        let rule = self.rule(NodeKind::EpisodeVideo)?;
        let engines = rule.engines_for(|_| false);
        let recipe = map([
            ("transitions", Value::Array(transitions.clone())),
            ("transition_seconds", json!(overlap)),
        ]);
        let video = self.add(
            NodeKind::EpisodeVideo,
            path.clone(),
            format!("{path}/video"),
            engines,
            rule,
            recipe,
            parts,
            length,
        );

        let rule = self.rule(NodeKind::EpisodeAudio)?;
        let engines = rule.engines_for(|_| false);
        let recipe = map([
            ("transitions", Value::Array(transitions.clone())),
            ("transition_seconds", json!(overlap)),
        ]);
        let audio = self.add(
            NodeKind::EpisodeAudio,
            path.clone(),
            format!("{path}/audio"),
            engines.clone(),
            rule,
            recipe.clone(),
            scene_roles(mixes, Uses::Content),
            length,
        );
        // One more audio track per dub, joined the same way.
        let mut dub_audio = Vec::new();
        for (lang, mixes) in tracks.dubs {
            dub_audio.push(self.add(
                NodeKind::EpisodeAudio,
                format!("{path}.{lang}"),
                format!("{path}/audio.{lang}"),
                engines.clone(),
                rule,
                recipe.clone(),
                scene_roles(mixes, Uses::Content),
                length,
            ));
        }

        // Subtitles and chapters: the text of every line, timed by the
        // durations of the voices and shots.
        let rule = self.rule(NodeKind::Episode)?;
        let engines = rule.engines_for(|_| false);
        let cues_in = |lang: Option<&str>| -> Vec<Value> {
            let mut cues = Vec::new();
            for scene in scenes {
                for shot in &scene.shots {
                    for (i, line) in shot.dialogue.iter().enumerate() {
                        // A line not written in the dub is spoken (and shown) in the default language.
                        let text = lang.and_then(|l| line.dubs.get(l)).unwrap_or(&line.text);
                        cues.push(json!({
                            "line": format!("{}/{}/{}", scene.id, shot.id, i + 1),
                            "speaker": p.characters[line.speaker].name,
                            "text": crate::text::normalize(text),
                        }));
                    }
                }
            }
            cues
        };
        let cues = cues_in(None);
        let chapters: Vec<Value> = scenes
            .iter()
            .map(|s| json!({"scene": s.id, "title": s.title}))
            .collect();
        let recipe = map([
            ("show", json!(p.meta.name)),
            ("episode", json!(ep.id)),
            ("number", json!(ep.number)),
            ("title", json!(ep.title)),
            ("cues", Value::Array(cues)),
            ("chapters", Value::Array(chapters)),
            ("transitions", Value::Array(transitions)),
            ("transition_seconds", json!(overlap)),
        ]);
        let mut recipe = recipe;
        // Tagged tracks only in a project that declares its languages: one
        // that does not keeps its episode keys.
        if let Some(default) = p.languages.first() {
            recipe.insert("language".into(), json!(default));
            let dubs: Vec<Value> = tracks
                .dubs
                .iter()
                .map(|(lang, _)| {
                    let mut l = json!(p.language(lang).expect("the loader checked the dub's language"));
                    l["cues"] = Value::Array(cues_in(Some(lang)));
                    l
                })
                .collect();
            recipe.insert("dubs".into(), Value::Array(dubs));
        }
        let mut inputs = vec![
            Input {
                node: video,
                role: "video".into(),
                uses: Uses::Content,
            },
            Input {
                node: audio,
                role: "audio".into(),
                uses: Uses::Content,
            },
        ];
        inputs.extend(scene_roles(mixes, Uses::Duration).into_iter().map(|mut i| {
            i.role = format!("length:{}", i.role);
            i
        }));
        inputs.extend(shots.iter().map(|&s| Input {
            node: s,
            role: format!("timing:{}", self.graph.nodes[s].path),
            uses: Uses::Duration,
        }));
        inputs.extend(tracks.voices.iter().map(|(v, _, role)| Input {
            node: *v,
            role: format!("voice:{role}"),
            uses: Uses::Duration,
        }));
        for ((lang, _), node) in tracks.dubs.iter().zip(dub_audio) {
            inputs.push(Input {
                node,
                role: format!("{lang}:audio"),
                uses: Uses::Content,
            });
        }
        inputs.extend(tracks.dub_voices.iter().map(|(v, role)| Input {
            node: *v,
            role: role.clone(),
            uses: Uses::Duration,
        }));
        let episode = self.add(
            NodeKind::Episode,
            path.clone(),
            format!("{path}/{path}"),
            engines,
            rule,
            recipe,
            inputs,
            length,
        );

        if let Ok(rule) = self.rule(NodeKind::Publish) {
            let engines = rule.engines_for(|_| false);
            let recipe = map([
                ("show", json!(p.meta.name)),
                ("season", json!(1)),
                ("number", json!(ep.number)),
                ("title", json!(ep.title)),
                ("synopsis", json!(ep.synopsis)),
                ("premise", json!(p.meta.premise)),
                ("genre", json!(p.meta.genre)),
            ]);
            let input = vec![Input {
                node: episode,
                role: "episode".into(),
                uses: Uses::Content,
            }];
            self.add(
                NodeKind::Publish,
                path.clone(),
                format!("{path}/publish"),
                engines,
                rule,
                recipe,
                input,
                0.0,
            );
        }
        Ok(())
    }
}

/// `continuity: scene|episode|off` (YAML reads a bare `off` as `false`).
fn continuity_scope(rule: &KindRule) -> Result<ContinuityScope, Diagnostics> {
    match rule.params.get("continuity") {
        None => Ok(ContinuityScope::Scene),
        Some(Value::Bool(false)) => Ok(ContinuityScope::Off),
        Some(Value::String(s)) if ContinuityScope::parse(s).is_some() => {
            Ok(ContinuityScope::parse(s).expect("checked"))
        }
        Some(other) => Err(ProjectError::plain(
            "rules::continuity",
            format!("`continuity: {other}` in the shot_image rule is not a continuity scope"),
        )
        .help(format!("use one of: {}", ContinuityScope::WORDS.join(", ")))
        .into()),
    }
}

pub(super) fn map<const N: usize>(items: [(&str, Value); N]) -> BTreeMap<String, Value> {
    items.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The engine that plays the music library's tracks (`stages::music::library`).
const LIBRARY_MUSIC: &str = "library_music";

/// The seed of a generated node: derived from its stable path and take.
pub(super) fn seed_for(path: &str, take: Option<&Value>) -> u64 {
    let take = take.and_then(Value::as_u64).unwrap_or(1);
    let h = blake3::hash(format!("{path}#take{take}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The engines that speak `speaker`'s default-language lines: their own
/// `voice.engines` when they list any this profile can run, else the rule's.
fn speaker_chain<'r>(rule: &'r KindRule, catalog: &crate::engines::Catalog, speaker: &Character) -> Vec<Pick<'r>> {
    let engines = rule.engines_for(|pr| match pr {
        Predicate::HasVoiceModel => speaker.voice.model.is_some(),
        Predicate::HasReferenceAudio => speaker.voice.reference_audio.is_some(),
        _ => false,
    });
    match &speaker.voice.engines {
        Some(names) => {
            let own = voice_chain(rule, catalog, names);
            if own.is_empty() { engines } else { own }
        }
        None => engines,
    }
}

/// The line a character's voice sample says (the Cast tab plays it).
pub fn sample_text(name: &str) -> String {
    format!("Hi, I'm {name}. This is how I sound.")
}

/// A character's own voice chain (`voice.engines`), in its order: an
/// engine the rule names keeps the rule's executor group, a local engine
/// the rule does not name runs here, and any other (a service engine with
/// no executor in this profile) is left out.
fn voice_chain<'r>(
    rule: &'r KindRule,
    catalog: &crate::engines::Catalog,
    names: &[serde_saphyr::Spanned<String>],
) -> Vec<Pick<'r>> {
    names
        .iter()
        .filter_map(|name| {
            let entry = rule
                .choose
                .iter()
                .chain(&rule.fallbacks)
                .find(|c| c.engine.name == name.value);
            match entry {
                Some(c) => Some(Pick {
                    engine: c.engine,
                    group: c.group.as_deref(),
                }),
                None => catalog
                    .find(&name.value)
                    .filter(|e| e.placement == Placement::Cpu)
                    .map(|engine| Pick { engine, group: None }),
            }
        })
        .collect()
}
