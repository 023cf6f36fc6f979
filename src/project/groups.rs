//! Executor groups (host pools) and which group each rule entry runs on.
//!
//! Executors that speak one protocol form a group: the one their `group:`
//! names, else the group named after the protocol (`comfyui`). A rule entry
//! sends its engine's jobs to a group, never to one host; the scheduler
//! picks a host of the group with a free slot when the job starts. Hosts of
//! a group are interchangeable: they speak the same protocol and serve the
//! same `model:` (the model enters the key; the host does not).

use std::collections::BTreeMap;

use serde_saphyr::{Location, Spanned};

use super::diag::{Collector, ProjectError, SourceFile};
use super::model::Executor;
use super::raw::RawExecutor;
use super::rules::{Choice, Rules};
use crate::engines::{Placement, ServiceKind};
use crate::kind::NodeKind;

/// Pool names the build uses for itself.
const RESERVED: [&str; 2] = ["cpu", "inline"];

/// One host pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub protocol: ServiceKind,
    /// Indices into [`super::model::Project::executors`], in file order.
    pub hosts: Vec<usize>,
    /// The model every host serves.
    pub model: Option<String>,
}

/// The groups of `executors`, in order of first appearance.
pub fn groups(executors: &[Executor]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (i, e) in executors.iter().enumerate() {
        match out.iter_mut().find(|g| g.name == e.group) {
            Some(g) => g.hosts.push(i),
            None => out.push(Group {
                name: e.group.clone(),
                protocol: e.kind,
                hosts: vec![i],
                model: e.model.clone(),
            }),
        }
    }
    out
}

/// The group executor `e` (of protocol `kind`) joins; a bad `group:` name is
/// pushed to `errors`.
pub fn group_of(file: &SourceFile, e: &RawExecutor, kind: ServiceKind, errors: &mut Collector) -> String {
    let Some(g) = &e.group else {
        return kind.as_str().to_string();
    };
    let problem = if !super::load::valid_id(&g.value) {
        Some(format!("executor group `{}` is not a valid name", g.value))
    } else if RESERVED.contains(&g.value.as_str()) {
        Some(format!("executor group `{}` is the name of studio's own pool", g.value))
    } else {
        None
    };
    if let Some(problem) = problem {
        errors.push(
            ProjectError::at(file, "executor::group", problem)
                .label_loc(file, &g.referenced, "here")
                .help("name groups with ASCII letters, digits, `-` and `_`, other than `cpu` and `inline`"),
        );
    }
    g.value.clone()
}

/// Every group speaks one protocol; a host that disagrees with the hosts
/// before it is located at its `group:`.
pub fn check(file: &SourceFile, raw: &[RawExecutor], executors: &[Executor], errors: &mut Collector) {
    let at: BTreeMap<&str, &RawExecutor> = raw.iter().map(|r| (r.id.value.as_str(), r)).collect();
    let mut first: BTreeMap<&str, &Executor> = BTreeMap::new();
    for e in executors {
        let Some(lead) = first.get(e.group.as_str()).copied() else {
            first.insert(&e.group, e);
            continue;
        };
        let r = at[e.id.as_str()];
        let loc = r.group.as_ref().map_or(r.kind.referenced, |g| g.referenced);
        let group = &e.group;
        let error = if lead.kind != e.kind {
            ProjectError::at(
                file,
                "executor::group",
                format!(
                    "executor `{}` speaks `{}`, but group `{group}` is `{}` (executor `{}`)",
                    e.id,
                    e.kind.as_str(),
                    lead.kind.as_str(),
                    lead.id
                ),
            )
            .label_loc(file, &loc, "in this group")
            .help(format!(
                "the hosts of a group are interchangeable, so they speak one protocol: give `{}` a `group:` of its own",
                e.id
            ))
        } else {
            continue;
        };
        errors.push(error);
    }
}

/// Resolve the group of every service engine in `rules` (into
/// [`Choice::group`]): the entry's `executor:`, else the rule's, else the
/// protocol's default group. Each must exist and speak the engine's
/// protocol, and the hosts of a group that engines use must serve one
/// `model:` (located in `studio` at the executor ids in `at`).
pub fn resolve(
    seen: &BTreeMap<NodeKind, SourceFile>,
    rules: &mut Rules,
    executors: &[Executor],
    (studio, at): (&SourceFile, &std::collections::HashMap<String, Location>),
    errors: &mut Collector,
) {
    let all = groups(executors);
    let mut used = std::collections::BTreeSet::new();
    for (kind, rule) in rules.by_kind.iter_mut() {
        let file = &seen[kind];
        let rule_executor = rule.executor.clone();
        for entry in rule.entries_mut() {
            entry.group = match entry_group(file, *kind, entry, rule_executor.as_ref(), &all, executors) {
                Ok(g) => g,
                Err(e) => {
                    errors.push(*e);
                    None
                }
            };
            used.extend(entry.group.clone());
        }
    }
    for g in all.iter().filter(|g| used.contains(&g.name)) {
        let lead = &executors[g.hosts[0]];
        for &h in &g.hosts[1..] {
            let e = &executors[h];
            if e.model == lead.model {
                continue;
            }
            let show = |m: &Option<String>| m.as_deref().map_or("no model".to_string(), |m| format!("`{m}`"));
            let mut error = ProjectError::at(
                studio,
                "executor::group",
                format!(
                    "executor `{}` serves {}, but `{}` of the same group `{}` serves {}",
                    e.id,
                    show(&e.model),
                    lead.id,
                    g.name,
                    show(&lead.model)
                ),
            );
            if let Some(loc) = at.get(&e.id) {
                error = error.label_loc(studio, loc, "in this group");
            }
            errors.push(error.help(
                "a job may run on any host of its group and the model is part of its cache key, so the hosts of a \
                 group serve the same `model:`; put the other model in a group of its own (`group: NAME`)",
            ));
        }
    }
}

fn entry_group(
    file: &SourceFile,
    kind: NodeKind,
    entry: &Choice,
    rule_executor: Option<&Spanned<String>>,
    all: &[Group],
    executors: &[Executor],
) -> Result<Option<String>, Box<ProjectError>> {
    let engine = entry.engine;
    let Placement::Service(protocol) = engine.placement else {
        return match &entry.executor {
            Some(x) => Err(Box::new(
                ProjectError::at(
                    file,
                    "rules::executor",
                    format!("engine `{}` runs on this machine, not on an executor", engine.name),
                )
                .label_loc(file, &x.referenced, "no executor group applies")
                .help("remove `executor:` from this entry"),
            )),
            None => Ok(None),
        };
    };
    let serving: Vec<&Group> = all.iter().filter(|g| g.protocol == protocol).collect();
    let names = |gs: &[&Group]| {
        gs.iter()
            .map(|g| format!("`{}`", g.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p = protocol.as_str();
    let Some(named) = entry.executor.as_ref().or(rule_executor) else {
        return match serving.as_slice() {
            [only] => Ok(Some(only.name.clone())),
            [] => Err(Box::new(
                ProjectError::at(
                    file,
                    "rules::executor",
                    format!(
                        "engine `{}` needs a `{p}` executor, and studio.yaml has none",
                        engine.name
                    ),
                )
                .label(file, file.key_span(kind.as_str()), "this rule")
                .help(format!(
                    "add `- {{id: NAME, kind: {p}, url: ...}}` under `executors:` in studio.yaml"
                )),
            )),
            several => match several.iter().find(|g| g.name == p) {
                Some(g) => Ok(Some(g.name.clone())),
                None => Err(Box::new(
                    ProjectError::at(
                        file,
                        "rules::executor",
                        format!(
                            "engine `{}` could run on the `{p}` groups {}: which one?",
                            engine.name,
                            names(several)
                        ),
                    )
                    .label(file, file.key_span(kind.as_str()), "this rule")
                    .help("name the group with `executor: GROUP` on the entry or the rule"),
                )),
            },
        };
    };
    let loc: Location = named.referenced;
    match all.iter().find(|g| g.name == named.value) {
        Some(g) if g.protocol == protocol => Ok(Some(g.name.clone())),
        Some(g) => Err(Box::new(
            ProjectError::at(
                file,
                "rules::executor",
                format!(
                    "engine `{}` speaks `{p}`, but executor group `{}` is `{}`",
                    engine.name,
                    g.name,
                    g.protocol.as_str()
                ),
            )
            .label_loc(file, &loc, "wrong protocol")
            .help(if serving.is_empty() {
                format!("add a `{p}` executor under `executors:` in studio.yaml and name its group here")
            } else {
                format!("`{p}` groups: {}", names(&serving))
            }),
        )),
        None => {
            let help = match executors.iter().find(|e| e.id == named.value) {
                Some(e) => format!(
                    "`{}` is an executor of group `{}`, and rules name groups: write `executor: {}`, or give `{}` \
                     a group of its own (`group: {}`)",
                    e.id, e.group, e.group, e.id, e.id
                ),
                None if serving.is_empty() => format!(
                    "add `- {{id: NAME, kind: {p}, url: ..., group: {}}}` under `executors:` in studio.yaml",
                    named.value
                ),
                None => format!("`{p}` groups: {}", names(&serving)),
            };
            Err(Box::new(
                ProjectError::at(
                    file,
                    "rules::executor",
                    format!("no executor group `{}` for engine `{}`", named.value, engine.name),
                )
                .label_loc(file, &loc, "unknown group")
                .help(help),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor(id: &str, kind: ServiceKind, group: &str) -> Executor {
        Executor {
            id: id.into(),
            kind,
            group: group.into(),
            line: 1,
            url: "http://127.0.0.1:1".into(),
            remote_host: false,
            max_tokens: None,
            slots: 1,
            model: None,
            token_env: None,
            api_key_env: None,
            timeout: 1.0,
            connect_timeout: 1.0,
        }
    }

    #[test]
    fn groups_collect_hosts_in_file_order() {
        let e = [
            executor("a", ServiceKind::Comfyui, "comfyui"),
            executor("s", ServiceKind::OpenaiSpeech, "openai_speech"),
            executor("b", ServiceKind::Comfyui, "comfyui"),
            executor("big", ServiceKind::Comfyui, "big"),
        ];
        let g = groups(&e);
        let names: Vec<(&str, Vec<usize>)> = g.iter().map(|g| (g.name.as_str(), g.hosts.clone())).collect();
        assert_eq!(
            names,
            vec![("comfyui", vec![0, 2]), ("openai_speech", vec![1]), ("big", vec![3])]
        );
    }
}
