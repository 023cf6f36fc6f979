//! `rules/*.yaml`: how each node kind is made, per profile.
//!
//! ```yaml
//! voice_line:
//!   params: {sample_rate: 48000}        # every profile
//!   profiles:
//!     animatic: {engine: espeak}
//!     full:
//!       choose:                         # first match wins
//!         - {when: [has_voice_model], engine: rvc}
//!         - {engine: edge_tts}
//!       fallbacks: [espeak]             # tried in order when the choice fails
//! ```
//!
//! A service engine runs on a group of executors (a host pool): the rule's
//! `executor:` names the group for all its entries, each `choose:` entry
//! may name its own, and so may a fallback written as a map
//! (`{engine: wan_t2v, executor: comfy-big}`). Without one, the engine's
//! protocol has a default group (see [`super::groups`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::bounds;
use super::diag::{Collector, ProjectError, SourceFile};
use crate::engines::{Catalog, EngineSpec};
use crate::kind::NodeKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKindRule {
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<Value>>,
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfileRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfileRule {
    #[serde(default)]
    pub engine: Option<Spanned<String>>,
    #[serde(default)]
    pub choose: Vec<RawChoice>,
    #[serde(default)]
    pub fallbacks: Vec<Spanned<RawFallback>>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<Value>>,
    /// Executor group for the rule's service engines (default: the
    /// protocol's default group).
    #[serde(default)]
    pub executor: Option<Spanned<String>>,
    /// Attempts after a transient failure (HTTP 5xx, timeout, refused).
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    /// ComfyUI engines' workflows and binding maps, by engine
    /// ([`super::workflows`]).
    #[serde(default)]
    pub workflows: BTreeMap<String, super::workflows::RawWorkflow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChoice {
    #[serde(default)]
    pub when: Vec<Spanned<String>>,
    pub engine: Spanned<String>,
    /// Executor group for this entry's engine.
    #[serde(default)]
    pub executor: Option<Spanned<String>>,
}

/// A fallback: an engine name, or `{engine: NAME, executor: GROUP}`. The
/// entry is spanned as a whole (serde cannot keep spans inside untagged
/// variants).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawFallback {
    Name(String),
    Entry {
        engine: String,
        #[serde(default)]
        executor: Option<String>,
    },
}

/// A condition in a `when` list, evaluated on the node's shot or line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicate {
    /// Exactly one character in the shot.
    Solo,
    /// Two or more characters in the shot.
    Multi,
    /// No characters in the shot.
    Empty,
    /// A character in the shot has a trained LoRA.
    HasLora,
    /// The shot has a source image (a character reference or a continuity frame).
    HasSource,
    /// The shot has dialogue.
    HasDialogue,
    /// The speaker has a trained voice model.
    HasVoiceModel,
    /// The speaker has a reference clip for cloning.
    HasReferenceAudio,
    /// `after:ENGINE`: the shot's raw video is made by ENGINE (e.g. refine
    /// only after `wan_t2v`).
    After(&'static str),
}

impl Predicate {
    const ALL: [(&'static str, Predicate); 8] = [
        ("solo", Predicate::Solo),
        ("multi", Predicate::Multi),
        ("empty", Predicate::Empty),
        ("has_lora", Predicate::HasLora),
        ("has_source", Predicate::HasSource),
        ("has_dialogue", Predicate::HasDialogue),
        ("has_voice_model", Predicate::HasVoiceModel),
        ("has_reference_audio", Predicate::HasReferenceAudio),
    ];

    fn parse(s: &str, catalog: &Catalog) -> Option<Self> {
        if let Some(engine) = s.strip_prefix("after:") {
            return catalog
                .find(engine)
                .filter(|e| e.kinds.contains(&NodeKind::RawVideo))
                .map(|e| Predicate::After(e.name));
        }
        Self::ALL.iter().find(|(w, _)| *w == s).map(|(_, p)| *p)
    }

    /// Whether the predicate means anything for a node of `kind`.
    fn applies_to(self, kind: NodeKind) -> bool {
        match self {
            Predicate::HasVoiceModel | Predicate::HasReferenceAudio => kind == NodeKind::VoiceLine,
            _ => matches!(
                kind,
                NodeKind::ShotImage | NodeKind::RawVideo | NodeKind::RefinedVideo | NodeKind::ShotVideo
            ),
        }
    }
}

/// One ordered choice (or a fallback, with no conditions): the engine to
/// use when every predicate holds, and where it runs.
#[derive(Debug, Clone)]
pub struct Choice {
    pub when: Vec<Predicate>,
    pub engine: &'static EngineSpec,
    /// The executor group the entry names, if it names one.
    pub executor: Option<Spanned<String>>,
    /// The group the engine runs on, resolved by the loader
    /// ([`super::groups::resolve`]); `None` for engines that run here.
    pub group: Option<String>,
}

impl Choice {
    fn new(engine: &'static EngineSpec, when: Vec<Predicate>, executor: Option<Spanned<String>>) -> Choice {
        Choice {
            when,
            engine,
            executor,
            group: None,
        }
    }
}

/// An engine of a node's chain and the executor group it runs on.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    pub engine: &'static EngineSpec,
    pub group: Option<&'a str>,
}

/// The rule for one node kind in the selected profile.
#[derive(Debug, Clone)]
pub struct KindRule {
    /// Shared params overlaid with the profile's params.
    pub params: BTreeMap<String, Value>,
    pub choose: Vec<Choice>,
    pub fallbacks: Vec<Choice>,
    /// The rule's own `executor:` group, for entries that name none.
    pub executor: Option<Spanned<String>>,
    pub retries: u32,
    /// The bindings of `workflows:`, where they are written (for the
    /// loader's check against the workflow files).
    pub binds: Vec<super::workflows::Bind>,
}

impl KindRule {
    /// The engine chain for a node: the first matching choice, then
    /// fallbacks (each engine once), with the group each runs on.
    pub fn engines_for(&self, holds: impl Fn(Predicate) -> bool) -> Vec<Pick<'_>> {
        let first = self.choose.iter().find(|c| c.when.iter().all(|p| holds(*p)));
        let mut chain: Vec<Pick<'_>> = Vec::new();
        for c in first.into_iter().chain(&self.fallbacks) {
            if !chain.iter().any(|p| p.engine.name == c.engine.name) {
                chain.push(Pick {
                    engine: c.engine,
                    group: c.group.as_deref(),
                });
            }
        }
        chain
    }

    /// Every entry, choices first.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Choice> {
        self.choose.iter_mut().chain(self.fallbacks.iter_mut())
    }
}

/// The rules of the selected profile, one per node kind.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub by_kind: BTreeMap<NodeKind, KindRule>,
    /// Kinds whose section has an entry for the profile, valid or not (an
    /// invalid one is reported as itself, not as a missing rule).
    pub named: std::collections::BTreeSet<NodeKind>,
}

impl Rules {
    pub fn get(&self, kind: NodeKind) -> Option<&KindRule> {
        self.by_kind.get(&kind)
    }
}

/// What rules files are read against: the profile built, the profiles
/// studio.yaml defines, and the engines rules may name.
pub struct RuleContext<'a> {
    pub profile: &'a str,
    pub known_profiles: &'a [String],
    pub catalog: &'a Catalog,
}

/// Parse one rules file and resolve the rules for `cx.profile` into `rules`.
pub fn load_file(
    file: &SourceFile,
    raw: BTreeMap<String, RawKindRule>,
    cx: &RuleContext<'_>,
    seen: &mut BTreeMap<NodeKind, SourceFile>,
    rules: &mut Rules,
    errors: &mut Collector,
) {
    let RuleContext {
        profile,
        known_profiles,
        catalog,
    } = *cx;
    for (kind_name, raw_rule) in raw {
        let kind: NodeKind = match kind_name.parse() {
            Ok(k) => k,
            Err(msg) => {
                errors.push(
                    ProjectError::at(file, "rules::unknown_kind", format!("{}: {msg}", file.name))
                        .label(file, file.key_span(&kind_name), "not a node kind")
                        .help("rename the section to one of the node kinds listed above"),
                );
                continue;
            }
        };
        if let Some(first) = seen.get(&kind) {
            errors.push(
                ProjectError::at(
                    file,
                    "rules::duplicate_kind",
                    format!("rules for `{kind}` are given twice ({} and {})", first.name, file.name),
                )
                .label(file, file.key_span(&kind_name), "second definition")
                .help("keep one section per node kind across all files in rules/"),
            );
            continue;
        }
        seen.insert(kind, file.clone());
        for (name, v) in &raw_rule.params {
            bounds::param(file, kind.as_str(), name, v, errors);
        }
        for (name, prof) in &raw_rule.profiles {
            for (param, v) in &prof.params {
                bounds::param(file, kind.as_str(), param, v, errors);
            }
            if let Some(r) = &prof.retries {
                bounds::number(file, "retries", r, bounds::RETRIES, 2, errors);
            }
            if !known_profiles.contains(name) {
                errors.push(
                    ProjectError::at(
                        file,
                        "rules::unknown_profile",
                        format!("rules for `{kind}` name profile `{name}`, which studio.yaml does not define"),
                    )
                    .label(file, file.key_span(&kind_name), "in this rule")
                    .help(format!("known profiles: {}", known_profiles.join(", "))),
                );
            }
        }
        let Some(prof) = raw_rule.profiles.get(profile) else {
            continue;
        };
        rules.named.insert(kind);
        if let Some(rule) = resolve_rule(file, kind, &raw_rule.params, prof, catalog, errors) {
            rules.by_kind.insert(kind, rule);
        }
    }
}

fn resolve_rule(
    file: &SourceFile,
    kind: NodeKind,
    shared: &BTreeMap<String, Spanned<Value>>,
    raw: &RawProfileRule,
    catalog: &Catalog,
    errors: &mut Collector,
) -> Option<KindRule> {
    let mut ok = true;
    let engine = |name: &Spanned<String>, errors: &mut Collector, ok: &mut bool| -> Option<&'static EngineSpec> {
        match catalog.find(&name.value) {
            Some(e) if e.kinds.contains(&kind) => Some(e),
            found => {
                let why = if found.is_some() {
                    "cannot make"
                } else {
                    "is not a known engine for"
                };
                errors.push(
                    ProjectError::at(
                        file,
                        "rules::unknown_engine",
                        format!("engine `{}` {why} `{kind}`", name.value),
                    )
                    .label_loc(file, &name.referenced, "unknown engine")
                    .help(format!("engines for `{kind}`: {}", catalog.names_for(kind).join(", "))),
                );
                *ok = false;
                None
            }
        }
    };
    let mut choose = Vec::new();
    if let Some(name) = &raw.engine
        && let Some(e) = engine(name, errors, &mut ok)
    {
        choose.push(Choice::new(e, Vec::new(), None));
    }
    for c in &raw.choose {
        let mut when = Vec::new();
        for p in &c.when {
            match Predicate::parse(&p.value, catalog) {
                Some(pred) if pred.applies_to(kind) => when.push(pred),
                found => {
                    let all: Vec<_> = Predicate::ALL.iter().map(|(w, _)| *w).collect();
                    let msg = if found.is_some() {
                        format!("condition `{}` means nothing for `{kind}`", p.value)
                    } else {
                        format!("unknown condition `{}`", p.value)
                    };
                    errors.push(
                        ProjectError::at(file, "rules::unknown_condition", msg)
                            .label_loc(file, &p.referenced, "here")
                            .help(format!("conditions: {}, after:RAW_VIDEO_ENGINE", all.join(", "))),
                    );
                    ok = false;
                }
            }
        }
        if let Some(e) = engine(&c.engine, errors, &mut ok) {
            choose.push(Choice::new(e, when, c.executor.clone()));
        }
    }
    let fallbacks: Vec<_> = raw
        .fallbacks
        .iter()
        .filter_map(|f| {
            let (name, executor) = match &f.value {
                RawFallback::Name(name) => (name, None),
                RawFallback::Entry { engine, executor } => (engine, executor.as_ref()),
            };
            let spanned = |value: &String| Spanned {
                value: value.clone(),
                referenced: f.referenced,
                defined: f.defined,
            };
            let e = engine(&spanned(name), errors, &mut ok)?;
            Some(Choice::new(e, Vec::new(), executor.map(spanned)))
        })
        .collect();
    if choose.is_empty() && ok {
        errors.push(
            ProjectError::at(
                file,
                "rules::no_engine",
                format!("the rule for `{kind}` names no engine"),
            )
            .label(file, file.key_span(kind.as_str()), "this rule")
            .help("add `engine: NAME` or a `choose:` list to the profile"),
        );
        return None;
    }
    if !choose.iter().any(|c| c.when.is_empty()) && fallbacks.is_empty() && ok {
        errors.push(
            ProjectError::at(
                file,
                "rules::no_default",
                format!("the `choose` list for `{kind}` has no unconditional entry"),
            )
            .label(file, file.key_span(kind.as_str()), "this rule")
            .help("end the list with an entry without `when:` so every node gets an engine"),
        );
        return None;
    }
    let mut params: BTreeMap<String, Value> = shared
        .iter()
        .chain(&raw.params)
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    let binds = super::workflows::resolve(file, kind, &raw.workflows, catalog, &mut params, errors);
    let retries = raw.retries.as_ref().map_or(2, |r| {
        if bounds::RETRIES.contains(r.value.into()) {
            r.value
        } else {
            2
        }
    });
    ok.then(|| KindRule {
        params,
        choose,
        fallbacks,
        executor: raw.executor.clone(),
        retries,
        binds,
    })
}
