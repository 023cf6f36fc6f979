//! Reading a project folder: `studio.yaml`, `episodes/*.yaml`, `rules/*.yaml`.
//!
//! Parsing is span-aware; every check that fails becomes a located
//! [`ProjectError`], and all of them are collected before giving up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;

use camino::{Utf8Path, Utf8PathBuf};
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};

use super::diag::{Collector, Diagnostics, ProjectError, SourceFile, yaml_error};
use super::model::*;
use super::raw::*;
use super::rules::{self, Rules};
use super::vocab::{Angle, Mood, Position, ShotType, TimeOfDay, Transition};
use crate::cache::index::SourceIndex;
use crate::cache::remote::{Mode, RemoteConfig};
use crate::engines::ServiceKind;
use crate::graph::kind::NodeKind;

/// Where a screenplay's items are, for diagnostics raised after loading
/// (dependency cycles are only visible once the graph exists).
#[derive(Debug, Default)]
pub struct Spans {
    pub files: HashMap<String, SourceFile>,
    /// `ep/scene/shot` → location of the shot id.
    pub shots: HashMap<String, Location>,
    /// `ep/scene/shot` → location of its `continue_from`.
    pub continue_from: HashMap<String, Location>,
    /// Episode id → its entry in studio.yaml.
    pub episodes: HashMap<String, Location>,
    /// Executor id → its entry in studio.yaml.
    pub executors: HashMap<String, Location>,
    pub studio: Option<SourceFile>,
}

/// Load and validate the project at `root` for `profile` (the default when `None`).
pub fn load(root: &Utf8Path, profile: Option<&str>, index: &mut SourceIndex) -> Result<(Project, Spans), Diagnostics> {
    let mut errors = Collector::default();
    let mut spans = Spans::default();
    let mut sources = Vec::new();

    let studio_rel = Utf8Path::new("studio.yaml");
    let studio = read_source(root, studio_rel, index, &mut sources).map_err(|e| {
        e.help(format!(
            "run studio inside a project folder (one with studio.yaml), or pass --project DIR; looked in {root}"
        ))
    })?;
    let raw: RawProject = parse(&studio)?;
    spans.studio = Some(studio.clone());

    let characters = characters(&studio, &raw.characters, &mut errors);
    let char_ids: HashMap<&str, usize> = characters.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect();
    let executors = executors(&studio, &raw.executors, &mut errors);
    let remote = remote_cache(&studio, &raw.cache, &mut errors);
    spans.executors = raw
        .executors
        .iter()
        .map(|e| (e.id.value.clone(), e.id.referenced))
        .collect();
    let profile = select_profile(&studio, &raw.profiles, profile)?;
    let writing = writing(&studio, raw.writing.as_ref(), &executors, &mut errors);
    if let Some(w) = &profile.writer {
        check_writer(&studio, w, None, &executors, &mut errors);
    }

    // Rules for the selected profile.
    let known_profiles: Vec<String> = raw.profiles.profiles.keys().cloned().collect();
    let mut rules = Rules::default();
    let mut seen = BTreeMap::new();
    for rel in yaml_files(root, "rules") {
        let file = match read_source(root, &rel, index, &mut sources) {
            Ok(f) => f,
            Err(e) => {
                errors.push(*e);
                continue;
            }
        };
        match parse::<BTreeMap<String, rules::RawKindRule>>(&file) {
            Ok(raw_rules) => rules::load_file(
                &file,
                raw_rules,
                &profile.rules_profile,
                &known_profiles,
                &mut seen,
                &mut rules,
                &mut errors,
            ),
            Err(d) => errors.errors.extend(d.errors),
        }
    }
    check_rule_executors(&seen, &rules, &executors, &mut errors);

    // Episodes and their screenplays.
    // Read every screenplay, then parse them in parallel (the no-op build's
    // largest cost), then check them in order.
    let mut parsed: HashMap<String, (SourceFile, Result<RawScreenplay, Diagnostics>)> = {
        let mut files = Vec::new();
        for e in &raw.episodes {
            let rel = Utf8PathBuf::from(format!("episodes/{}.yaml", e.id.value));
            if valid_id(&e.id.value) && root.join(&rel).is_file() {
                match read_source(root, &rel, index, &mut sources) {
                    Ok(file) => files.push((e.id.value.clone(), file)),
                    Err(err) => errors.push(*err),
                }
            }
        }
        files
            .into_par_iter()
            .map(|(id, file)| {
                let raw = parse::<RawScreenplay>(&file);
                (id, (file, raw))
            })
            .collect()
    };
    let mut episodes = Vec::new();
    let mut episode_ids = HashSet::new();
    for (n, e) in raw.episodes.iter().enumerate() {
        spans.episodes.insert(e.id.value.clone(), e.id.referenced);
        if !episode_ids.insert(e.id.value.clone()) {
            errors.push(duplicate(&studio, "episode", &e.id));
            continue;
        }
        if !valid_id(&e.id.value) {
            errors.push(bad_id(&studio, "episode", &e.id));
        }
        let screenplay = parsed
            .remove(&e.id.value)
            .and_then(|(file, raw)| screenplay(&file, raw, &e.id.value, &char_ids, &mut spans, &mut errors));
        episodes.push(Episode {
            id: e.id.value.clone(),
            number: n + 1,
            title: e.title.clone(),
            synopsis: e.synopsis.clone(),
            arc: e.arc.clone(),
            tone: e.tone.clone(),
            screenplay,
        });
    }
    for rel in yaml_files(root, "episodes") {
        let id = rel.file_stem().unwrap_or_default();
        // `ep01.timeline.yaml` is the character timeline `studio write` keeps.
        let id = id.strip_suffix(".timeline").unwrap_or(id);
        if !episode_ids.contains(id) {
            errors.push(
                ProjectError::at(
                    &studio,
                    "episode::unlisted",
                    format!("{rel} is a screenplay for `{id}`, which studio.yaml does not list"),
                )
                .label(&studio, studio.key_span("episodes"), "add it to this list")
                .help(format!(
                    "add `- {{id: {id}, title: ...}}` under `episodes:` in studio.yaml"
                )),
            );
        }
    }
    if !profile_has_rules(&profile, &rules) {
        errors.push(
            ProjectError::plain(
                "rules::none",
                format!("no rules in rules/ apply to profile `{}`", profile.rules_profile),
            )
            .help("add a `profiles: {NAME: {engine: ...}}` entry per node kind in rules/*.yaml"),
        );
    }

    let project = Project {
        root: root.to_owned(),
        meta: Meta {
            name: raw.project.name,
            premise: raw.project.premise,
            genre: raw.project.genre,
        },
        storyline: Storyline {
            summary: raw.storyline.summary,
            themes: raw.storyline.themes,
            tone: raw.storyline.tone,
            arcs: raw
                .storyline
                .arcs
                .into_iter()
                .map(|a| (a.name, a.description))
                .collect(),
        },
        world: World {
            art_style: raw.world.art_style,
            location: raw.world.location,
            color_palette: raw.world.color_palette,
            cinematography: raw.world.cinematography,
        },
        style: Style {
            checkpoint: raw.style.checkpoint,
            cfg: raw.style.cfg,
            steps: raw.style.steps,
            sampler: raw.style.sampler,
            width: raw.style.width,
            height: raw.style.height,
            negative_prompt: raw.style.negative_prompt,
        },
        characters,
        episodes,
        executors,
        remote,
        profile,
        writing,
        rules,
        sources,
    };
    errors.finish((project, spans))
}

fn profile_has_rules(_profile: &Profile, rules: &Rules) -> bool {
    !rules.by_kind.is_empty()
}

fn read_source(
    root: &Utf8Path,
    rel: &Utf8Path,
    index: &mut SourceIndex,
    sources: &mut Vec<(Utf8PathBuf, String)>,
) -> Result<SourceFile, Box<ProjectError>> {
    let bytes = fs::read(root.join(rel)).map_err(|e| ProjectError::plain("io", format!("cannot read {rel}: {e}")))?;
    let hash = index.hash_bytes(root, rel, &bytes);
    sources.push((rel.to_owned(), hash));
    let text = String::from_utf8(bytes).map_err(|e| {
        ProjectError::plain(
            "io",
            format!("{rel} is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
        .help("save the file as UTF-8")
    })?;
    Ok(SourceFile::new(rel, text))
}

fn parse<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Diagnostics> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(&file.text, options).map_err(|e| {
        // A misindented key ends its mapping early, which surfaces first as a
        // "missing field" on a line above it; the syntax error, if there is
        // one, is the real mistake.
        let syntax = matches!(e, serde_saphyr::Error::SerdeMissingField { .. })
            .then(|| {
                let options = serde_saphyr::options! { with_snippet: false };
                serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(&file.text, options).err()
            })
            .flatten();
        Diagnostics::from(yaml_error(file, syntax.as_ref().unwrap_or(&e)))
    })
}

/// `dir/*.yaml` relative to the root, sorted.
fn yaml_files(root: &Utf8Path, dir: &str) -> Vec<Utf8PathBuf> {
    let Ok(entries) = root.join(dir).read_dir_utf8() else {
        return Vec::new();
    };
    let mut files: Vec<Utf8PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .filter(|p| matches!(p.extension(), Some("yaml" | "yml")))
        .filter_map(|p| p.strip_prefix(root).ok().map(Utf8Path::to_owned))
        .collect();
    files.sort();
    files
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bad_id(file: &SourceFile, what: &str, id: &Spanned<String>) -> ProjectError {
    ProjectError::at(
        file,
        "id::invalid",
        format!("{what} id `{}` is not a valid id", id.value),
    )
    .label_loc(file, &id.referenced, "invalid id")
    .help("ids use ASCII letters, digits, `-` and `_` (they become file names)")
}

fn duplicate(file: &SourceFile, what: &str, id: &Spanned<String>) -> ProjectError {
    ProjectError::at(file, "id::duplicate", format!("duplicate {what} id `{}`", id.value))
        .label_loc(file, &id.referenced, "used again here")
        .help(format!("give every {what} its own id"))
}

fn characters(file: &SourceFile, raw: &[RawCharacter], errors: &mut Collector) -> Vec<Character> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in raw {
        if !seen.insert(c.id.value.clone()) {
            errors.push(duplicate(file, "character", &c.id));
            continue;
        }
        if !valid_id(&c.id.value) {
            errors.push(bad_id(file, "character", &c.id));
        }
        if !is_hex_color(&c.color.value) {
            errors.push(
                ProjectError::at(
                    file,
                    "character::color",
                    format!("color `{}` is not `#rrggbb`", c.color.value),
                )
                .label_loc(file, &c.color.referenced, "here")
                .help("write the color as six hex digits, e.g. \"#e4572e\" (quoted: # starts a YAML comment)"),
            );
        }
        out.push(Character {
            id: c.id.value.clone(),
            name: c.name.clone(),
            design_prompt: c.design_prompt.clone(),
            appearance: c.appearance.clone(),
            voice: c.voice.clone(),
            color: c.color.value.to_ascii_lowercase(),
            lora: c.lora.clone(),
        });
    }
    out
}

fn is_hex_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn executors(file: &SourceFile, raw: &[RawExecutor], errors: &mut Collector) -> Vec<Executor> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in raw {
        if !seen.insert(e.id.value.clone()) {
            errors.push(duplicate(file, "executor", &e.id));
            continue;
        }
        let Some(kind) = ServiceKind::parse(&e.kind.value) else {
            let kinds: Vec<_> = ServiceKind::ALL.iter().map(|k| k.as_str()).collect();
            errors.push(
                ProjectError::at(
                    file,
                    "executor::kind",
                    format!("unknown executor kind `{}`", e.kind.value),
                )
                .label_loc(file, &e.kind.referenced, "here")
                .help(format!("executor kinds: {}", kinds.join(", "))),
            );
            continue;
        };
        if e.slots == 0 {
            errors.push(
                ProjectError::at(
                    file,
                    "executor::slots",
                    format!("executor `{}` has 0 slots", e.id.value),
                )
                .label_loc(file, &e.id.referenced, "this executor")
                .help("give it `slots: 1` or more"),
            );
        }
        super::executor::url_rule(file, e, errors);
        out.push(Executor {
            id: e.id.value.clone(),
            kind,
            url: e.url.value.trim().to_string(),
            remote_host: e.remote_host,
            max_tokens: super::executor::max_tokens(file, e, is_llm(kind), errors),
            slots: e.slots.max(1),
            model: e.model.clone(),
            token_env: e.token_env.clone(),
            api_key_env: e.api_key_env.clone(),
            timeout: seconds(file, "timeout", e.timeout.as_ref(), 300.0, errors),
            connect_timeout: seconds(file, "connect_timeout", e.connect_timeout.as_ref(), 10.0, errors),
        });
    }
    out
}

/// A positive number of seconds, or `default` when absent.
fn seconds(file: &SourceFile, what: &str, v: Option<&Spanned<f64>>, default: f64, errors: &mut Collector) -> f64 {
    let Some(v) = v else { return default };
    if v.value > 0.0 && v.value.is_finite() {
        return v.value;
    }
    errors.push(
        ProjectError::at(
            file,
            "executor::timeout",
            format!("`{what}` must be a positive number of seconds, not {}", v.value),
        )
        .label_loc(file, &v.referenced, "here")
        .help(format!("e.g. `{what}: 120`")),
    );
    default
}

/// Whether an executor kind speaks an LLM protocol.
pub fn is_llm(kind: ServiceKind) -> bool {
    matches!(kind, ServiceKind::Ollama | ServiceKind::Openai)
}

/// `writing:` resolved; its executor must exist and speak an LLM protocol.
fn writing(file: &SourceFile, raw: Option<&RawWriting>, executors: &[Executor], errors: &mut Collector) -> Writing {
    let executor = match raw.and_then(|w| w.executor.as_ref()) {
        Some(id) => {
            check_writer(file, &id.value, Some(&id.referenced), executors, errors);
            Some(id.value.clone())
        }
        None => executors.iter().find(|e| is_llm(e.kind)).map(|e| e.id.clone()),
    };
    let temperature = raw.map_or(0.7, |w| w.temperature.value);
    if let Some(w) = raw
        && !(0.0..=2.0).contains(&w.temperature.value)
    {
        errors.push(
            ProjectError::at(
                file,
                "writing::temperature",
                format!("temperature {} is outside 0–2", w.temperature.value),
            )
            .label_loc(file, &w.temperature.referenced, "here")
            .help("use a temperature between 0 (most likely words) and 2; 0.7 is usual"),
        );
    }
    Writing {
        executor,
        seed: raw.map_or(1, |w| w.seed),
        temperature,
        num_ctx: raw.map_or(8192, |w| w.num_ctx),
        retries: raw.map_or(2, |w| w.retries),
    }
}

/// `id` must name an `ollama` or `openai` executor.
fn check_writer(file: &SourceFile, id: &str, at: Option<&Location>, executors: &[Executor], errors: &mut Collector) {
    let problem = match executors.iter().find(|e| e.id == id) {
        Some(e) if is_llm(e.kind) => return,
        Some(e) => format!("the writer `{id}` is a `{}` executor, not an LLM", e.kind.as_str()),
        None => format!("no executor `{id}` to write screenplays with"),
    };
    let e = ProjectError::at(file, "writing::executor", problem);
    let e = match at {
        Some(loc) => e.label_loc(file, loc, "here"),
        None => e.label(file, file.key_span("profiles"), "in this section"),
    };
    errors.push(e.help(
        "name an executor of kind `ollama` or `openai`, e.g. `- {id: llm, kind: ollama, url: http://127.0.0.1:11434, model: qwen2.5:7b}`",
    ));
}

/// `cache:`: a URL studio can open, and a known mode.
fn remote_cache(file: &SourceFile, raw: &RawCacheConfig, errors: &mut Collector) -> Option<RemoteConfig> {
    let mode = match &raw.mode {
        None => Mode::ReadWrite,
        Some(m) => match m.value.parse::<Mode>() {
            Ok(mode) => mode,
            Err(msg) => {
                errors.push(
                    ProjectError::at(file, "cache::mode", msg)
                        .label_loc(file, &m.referenced, "here")
                        .help("`mode:` is read-write (fetch and upload), read-only (fetch only) or off"),
                );
                return None;
            }
        },
    };
    let url = raw.remote.as_ref()?;
    let supported = [
        "http", "https", "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "file",
    ];
    let problem = match url::Url::parse(&url.value) {
        Err(e) => Some(format!("`{}` is not a URL: {e}", url.value)),
        Ok(u) if !supported.contains(&u.scheme()) => {
            Some(format!("`{}` is not a supported remote cache URL", url.value))
        }
        Ok(_) => None,
    };
    if let Some(msg) = problem {
        errors.push(
            ProjectError::at(file, "cache::remote", msg)
                .label_loc(file, &url.referenced, "here")
                .help("use http://host/prefix (an HTTP cache such as nginx with WebDAV), s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir"),
        );
        return None;
    }
    Some(RemoteConfig {
        url: url.value.clone(),
        mode,
    })
}

fn select_profile(file: &SourceFile, raw: &RawProfiles, wanted: Option<&str>) -> Result<Profile, Diagnostics> {
    let names: Vec<&str> = raw.profiles.keys().map(String::as_str).collect();
    let name = wanted.unwrap_or(&raw.default);
    let Some(p) = raw.profiles.get(name) else {
        let e = match wanted {
            Some(w) => ProjectError::plain("profile::unknown", format!("unknown profile `{w}`")),
            None => ProjectError::at(
                file,
                "profile::unknown",
                format!("the default profile `{name}` is not defined"),
            )
            .label(file, file.key_span("profiles"), "in this section"),
        };
        return Err(e.help(format!("profiles in studio.yaml: {}", names.join(", "))).into());
    };
    let rules_profile = match &p.rules_from {
        Some(from) if !raw.profiles.contains_key(from) => {
            return Err(ProjectError::at(
                file,
                "profile::rules_from",
                format!("profile `{name}` takes rules from unknown profile `{from}`"),
            )
            .label(file, file.key_span("profiles"), "in this section")
            .help(format!("profiles in studio.yaml: {}", names.join(", ")))
            .into());
        }
        Some(from) => from.clone(),
        None => name.to_string(),
    };
    Ok(Profile {
        name: name.to_string(),
        rules_profile,
        simulate: p.simulate.as_ref().map(|s| Simulate {
            time_scale: s.time_scale.max(0.0),
            failures: s.failures.clone(),
        }),
        writer: p.writer.clone(),
    })
}

fn check_rule_executors(
    seen: &BTreeMap<NodeKind, SourceFile>,
    rules: &Rules,
    executors: &[Executor],
    errors: &mut Collector,
) {
    for (kind, rule) in &rules.by_kind {
        let file = &seen[kind];
        let engines = rule
            .choose
            .iter()
            .map(|c| c.engine)
            .chain(rule.fallbacks.iter().copied());
        for engine in engines {
            let crate::engines::Runs::Service(service) = engine.runs else {
                continue;
            };
            let found = match &rule.executor {
                Some(id) => executors.iter().find(|e| &e.id == id),
                None => executors.iter().find(|e| e.kind == service),
            };
            match found {
                Some(e) if e.kind == service => {}
                Some(e) => errors.push(
                    ProjectError::at(
                        file,
                        "rules::executor",
                        format!(
                            "engine `{}` needs a `{}` executor, but `{}` is `{}`",
                            engine.name,
                            service.as_str(),
                            e.id,
                            e.kind.as_str()
                        ),
                    )
                    .label(file, file.key_span(kind.as_str()), "this rule")
                    .help("point `executor:` at an executor of the right kind"),
                ),
                None => errors.push(
                    ProjectError::at(
                        file,
                        "rules::executor",
                        format!(
                            "engine `{}` needs a `{}` executor, and studio.yaml has none{}",
                            engine.name,
                            service.as_str(),
                            rule.executor
                                .as_ref()
                                .map(|id| format!(" named `{id}`"))
                                .unwrap_or_default()
                        ),
                    )
                    .label(file, file.key_span(kind.as_str()), "this rule")
                    .help(format!(
                        "add `- {{id: NAME, kind: {}, url: ...}}` under `executors:` in studio.yaml",
                        service.as_str()
                    )),
                ),
            }
        }
    }
}

fn vocab<T>(
    file: &SourceFile,
    what: &str,
    value: &Spanned<String>,
    parse: fn(&str) -> Option<T>,
    words: &[&str],
    errors: &mut Collector,
) -> Option<T> {
    let found = parse(&value.value);
    if found.is_none() {
        errors.push(
            ProjectError::at(file, "screenplay::vocab", format!("unknown {what} `{}`", value.value))
                .label_loc(file, &value.referenced, "here")
                .help(format!("{what} is one of: {}", words.join(", "))),
        );
    }
    found
}

fn positive(file: &SourceFile, what: &str, v: &Spanned<f64>, errors: &mut Collector) -> f64 {
    if !(v.value > 0.0 && v.value.is_finite()) {
        errors.push(
            ProjectError::at(
                file,
                "screenplay::duration",
                format!("{what} must be a positive number of seconds, not {}", v.value),
            )
            .label_loc(file, &v.referenced, "here")
            .help(format!("set {what} to the length in seconds, e.g. 4.5")),
        );
    }
    v.value
}

fn unknown_character(file: &SourceFile, id: &Spanned<String>, chars: &HashMap<&str, usize>) -> ProjectError {
    let mut known: Vec<&str> = chars.keys().copied().collect();
    known.sort();
    ProjectError::at(
        file,
        "screenplay::unknown_character",
        format!("unknown character `{}`", id.value),
    )
    .label_loc(file, &id.referenced, "not in studio.yaml")
    .help(format!(
        "characters in studio.yaml: {} (or add `{}` under `characters:`)",
        known.join(", "),
        id.value
    ))
}

/// Check a screenplay's text (`name` relative to the root) as the loader
/// would: used on generated and spliced screenplays before they are written.
pub fn check_screenplay(project: &Project, name: &Utf8Path, text: &str, episode: &str) -> Result<(), Diagnostics> {
    let file = SourceFile::new(name, text.to_string());
    let chars = project.character_index();
    let mut errors = Collector::default();
    let mut spans = Spans::default();
    let raw = parse::<RawScreenplay>(&file);
    screenplay(&file, raw, episode, &chars, &mut spans, &mut errors);
    errors.finish(())
}

fn screenplay(
    file: &SourceFile,
    raw: Result<RawScreenplay, Diagnostics>,
    episode: &str,
    chars: &HashMap<&str, usize>,
    spans: &mut Spans,
    errors: &mut Collector,
) -> Option<Screenplay> {
    let raw: RawScreenplay = match raw {
        Ok(r) => r,
        Err(d) => {
            errors.errors.extend(d.errors);
            return None;
        }
    };
    spans.files.insert(episode.to_string(), file.clone());
    if raw.episode.value != episode {
        errors.push(
            ProjectError::at(
                file,
                "screenplay::episode",
                format!("{} says `episode: {}`", file.name, raw.episode.value),
            )
            .label_loc(file, &raw.episode.referenced, "here")
            .help(format!("the file name says `{episode}`; make them agree")),
        );
    }
    let mut scene_ids = HashSet::new();
    let mut scenes = Vec::new();
    for s in &raw.scenes {
        if !scene_ids.insert(s.id.value.clone()) {
            errors.push(duplicate(file, "scene", &s.id));
            continue;
        }
        if !valid_id(&s.id.value) {
            errors.push(bad_id(file, "scene", &s.id));
        }
        let time_of_day = vocab(
            file,
            "time_of_day",
            &s.time_of_day,
            TimeOfDay::parse,
            TimeOfDay::WORDS,
            errors,
        );
        let mood = vocab(file, "mood", &s.mood, Mood::parse, Mood::WORDS, errors);
        let transition = s
            .transition
            .as_ref()
            .and_then(|t| vocab(file, "transition", t, Transition::parse, Transition::WORDS, errors));
        let target_duration = s
            .target_duration
            .as_ref()
            .map(|d| positive(file, "target_duration", d, errors));
        let mut state = Vec::new();
        for st in &s.state {
            if !chars.contains_key(st.character.value.as_str()) {
                errors.push(unknown_character(file, &st.character, chars));
            }
            state.push(CharacterState {
                character: st.character.value.clone(),
                clothing: st.clothing.clone(),
                injuries: st.injuries.clone(),
                emotional_state: st.emotional_state.clone(),
                energy: st.energy,
            });
        }
        let mut shot_ids = HashSet::new();
        let mut shots = Vec::new();
        for sh in &s.shots {
            if !shot_ids.insert(sh.id.value.clone()) {
                errors.push(duplicate(file, "shot", &sh.id));
                continue;
            }
            if !valid_id(&sh.id.value) {
                errors.push(bad_id(file, "shot", &sh.id));
            }
            let path = format!("{episode}/{}/{}", s.id.value, sh.id.value);
            spans.shots.insert(path.clone(), sh.id.referenced);
            if let Some(c) = &sh.continue_from {
                spans.continue_from.insert(path.clone(), c.referenced);
            }
            let shot_type = vocab(
                file,
                "shot type",
                &sh.shot_type,
                ShotType::parse,
                ShotType::WORDS,
                errors,
            );
            let angle = vocab(file, "camera angle", &sh.angle, Angle::parse, Angle::WORDS, errors);
            let duration = positive(file, "duration", &sh.duration, errors);
            let mut present = Vec::new();
            let mut present_ids = HashSet::new();
            for p in &sh.characters {
                let position = vocab(file, "position", &p.position, Position::parse, Position::WORDS, errors);
                match chars.get(p.id.value.as_str()) {
                    None => errors.push(unknown_character(file, &p.id, chars)),
                    Some(_) if !present_ids.insert(p.id.value.clone()) => {
                        errors.push(duplicate(file, "character in this shot", &p.id));
                    }
                    Some(&i) => present.push(Presence {
                        character: i,
                        id: p.id.value.clone(),
                        position: position.unwrap_or(Position::Center),
                    }),
                }
            }
            let mut dialogue = Vec::new();
            for l in &sh.dialogue {
                match chars.get(l.speaker.value.as_str()) {
                    None => errors.push(unknown_character(file, &l.speaker, chars)),
                    Some(&i) => {
                        if l.text.value.trim().is_empty() {
                            errors.push(
                                ProjectError::at(file, "screenplay::empty_line", "empty dialogue line")
                                    .label_loc(file, &l.text.referenced, "here")
                                    .help("write the line, or remove the entry"),
                            );
                        }
                        dialogue.push(Line {
                            speaker: i,
                            text: l.text.value.clone(),
                        });
                    }
                }
            }
            shots.push(Shot {
                id: sh.id.value.clone(),
                shot_type: shot_type.unwrap_or(ShotType::Medium),
                angle: angle.unwrap_or(Angle::EyeLevel),
                motion: sh.motion.clone(),
                action: sh.action.clone(),
                characters: present,
                duration,
                take: sh.take,
                continue_from: sh.continue_from.as_ref().map(|c| c.value.clone()),
                dialogue,
            });
        }
        if shots.is_empty() && s.shots.is_empty() {
            errors.push(
                ProjectError::at(
                    file,
                    "screenplay::no_shots",
                    format!("scene `{}` has no shots", s.id.value),
                )
                .label_loc(file, &s.id.referenced, "this scene")
                .help("add at least one shot under `shots:`"),
            );
        }
        scenes.push(Scene {
            id: s.id.value.clone(),
            title: s.title.clone(),
            description: s.description.clone(),
            location: s.location.clone(),
            time_of_day: time_of_day.unwrap_or(TimeOfDay::Day),
            mood: mood.unwrap_or(Mood::Calm),
            target_duration,
            transition,
            state,
            shots,
        });
    }
    // `continue_from` must name another shot of this episode: `sh03` (same
    // scene) or `s02/sh03`.
    for scene in &mut scenes {
        for shot in &mut scene.shots {
            let Some(target) = shot.continue_from.take() else {
                continue;
            };
            let full = if target.contains('/') {
                target.clone()
            } else {
                format!("{}/{}", scene.id, target)
            };
            let own = format!("{}/{}", scene.id, shot.id);
            if spans.shots.contains_key(&format!("{episode}/{full}")) && full != own {
                shot.continue_from = Some(full);
            } else {
                let loc = spans.continue_from[&format!("{episode}/{own}")];
                errors.push(
                    ProjectError::at(
                        file,
                        "screenplay::continue_from",
                        format!("`continue_from: {target}` names no other shot of {episode}"),
                    )
                    .label_loc(file, &loc, "here")
                    .help("name a shot id of this scene (`sh03`) or `SCENE/SHOT` for another scene"),
                );
            }
        }
    }
    if scenes.is_empty() && raw.scenes.is_empty() {
        errors.push(
            ProjectError::at(file, "screenplay::no_scenes", format!("{} has no scenes", file.name))
                .label_loc(file, &raw.episode.referenced, "this episode")
                .help("add scenes under `scenes:`"),
        );
    }
    Some(Screenplay {
        file: file.name.clone(),
        scenes,
    })
}
