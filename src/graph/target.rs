//! Targets on the command line (`ep01`, `ep01/s02`, `ep01/s02/sh03`, `all`,
//! a node id) → graph nodes; and the check that the graph has no cycle.

use std::collections::{HashMap, HashSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;

use super::Graph;
use crate::kind::NodeKind;
use crate::project::{Diagnostics, Project, ProjectError, Spans};

/// The nodes a target names.
pub fn resolve(project: &Project, spans: &Spans, graph: &Graph, target: &str) -> Result<Vec<usize>, Diagnostics> {
    if target == "all" {
        return Ok(all(project, graph));
    }
    if let Some(i) = graph.get(target) {
        return Ok(vec![i]);
    }
    if target.contains(':') {
        return Err(
            ProjectError::plain("target::unknown", format!("no node `{target}` in the graph"))
                .help("list node ids with `studio graph all --format json`")
                .into(),
        );
    }
    let parts: Vec<&str> = target.split('/').collect();
    if parts[0] == "characters" && parts.len() == 2 {
        return one(graph, &format!("character_refs:{}", parts[1]), target);
    }
    // The characters' voice samples: `cast`, or one: `cast/hana`.
    if parts[0] == "cast" {
        return match parts[..] {
            [_] => Ok((project.characters.iter())
                .filter_map(|c| graph.get(&format!("voice_line:cast/{}", c.id)))
                .collect()),
            [_, id] => one(graph, &format!("voice_line:cast/{id}"), target),
            _ => Err(
                ProjectError::plain("target::cast", format!("`{target}` is not a target"))
                    .help("`cast` names every character's voice sample, `cast/ID` one")
                    .into(),
            ),
        };
    }
    let ep_id = parts[0];
    let Some(ep) = project.episode(ep_id) else {
        let known: Vec<&str> = project.episodes.iter().map(|e| e.id.as_str()).collect();
        return Err(
            ProjectError::plain("target::unknown_episode", format!("unknown episode `{ep_id}`"))
                .help(format!(
                    "episodes in studio.yaml: {}; targets look like ep01, ep01/s02, ep01/s02/sh03 or all",
                    known.join(", ")
                ))
                .into(),
        );
    };
    if ep.screenplay.is_none() {
        let studio = spans.studio.as_ref().expect("studio.yaml was read");
        let e = ProjectError::at(
            studio,
            "episode::missing_screenplay",
            format!("episode `{ep_id}` has no screenplay: episodes/{ep_id}.yaml does not exist"),
        );
        let e = match spans.episodes.get(ep_id) {
            Some(loc) => e.label_loc(studio, loc, "listed here"),
            None => e,
        };
        return Err(e
            .help(format!(
                "write episodes/{ep_id}.yaml (see episodes/ep01.yaml for the format), or have the LLM write it: \
                 `studio write {ep_id}` (a profile with `writer:` does that on build)"
            ))
            .into());
    }
    let wanted: &[NodeKind] = match parts.len() {
        1 => &[NodeKind::Episode],
        2 => &[NodeKind::SceneVideo, NodeKind::SceneMix],
        3 => &[NodeKind::ShotVideo, NodeKind::LastFrame],
        _ => &[],
    };
    let mut out: Vec<usize> = wanted
        .iter()
        .filter_map(|k| graph.get(&format!("{k}:{target}")))
        .collect();
    if parts.len() == 1 {
        // Every shot's last frame is part of the episode, used by continuity or not.
        let prefix = format!("{ep_id}/");
        out.extend(
            graph
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.kind == NodeKind::LastFrame && n.path.starts_with(&prefix))
                .map(|(i, _)| i),
        );
    }
    if parts.len() == 3 {
        // The shot's voice lines are part of the shot.
        let prefix = format!("{target}/");
        out.extend(
            graph
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.kind == NodeKind::VoiceLine && n.path.starts_with(&prefix))
                .map(|(i, _)| i),
        );
    }
    if out.is_empty() {
        return Err(ProjectError::plain(
            "target::unknown",
            format!("`{target}` names no scene or shot of {ep_id}"),
        )
        .help("targets look like ep01, ep01/s02, ep01/s02/sh03, all, or a node id such as voice_line:ep01/s01/sh02/1")
        .into());
    }
    Ok(out)
}

/// `all`: every episode with a screenplay, each followed by its shots'
/// last frames (as its own target would give them), in one pass over the
/// graph.
fn all(project: &Project, graph: &Graph) -> Vec<usize> {
    let mut last_frames: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        if n.kind == NodeKind::LastFrame
            && let Some((ep, _)) = n.path.split_once('/')
        {
            last_frames.entry(ep).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for ep in project.episodes.iter().filter(|e| e.screenplay.is_some()) {
        out.extend(graph.get(&format!("{}:{}", NodeKind::Episode, ep.id)));
        out.extend(last_frames.remove(ep.id.as_str()).unwrap_or_default());
    }
    out
}

/// The episodes whose screenplays `targets` need, or `None` for all of
/// them (`all`, or a target of a shape this cannot tell). A node id names
/// its episode first in its path (`voice_line:ep01/s01/sh02/1`); a
/// character's refs (`characters/aoi`, `character_refs:aoi`) need none.
pub fn episodes_of(targets: &[String]) -> Option<HashSet<String>> {
    let mut episodes = HashSet::new();
    for t in targets {
        if t == "all" {
            return None;
        }
        let (kind, path) = match t.split_once(':') {
            Some((kind, path)) => (Some(kind), path),
            None => (None, t.as_str()),
        };
        // A dub's node names its episode before a dot: `episode_audio:ep01.ja`.
        let first = path.split(['/', '.']).next().unwrap_or_default();
        // A character's refs and voice sample (`cast`, `voice_line:cast/hana`).
        let character = first == "cast"
            || match kind {
                Some(kind) => kind == NodeKind::CharacterRefs.as_str(),
                None => first == "characters" && path.contains('/'),
            };
        if kind.is_some_and(|k| NodeKind::ALL.iter().all(|n| n.as_str() != k)) {
            return None;
        }
        if !character {
            episodes.insert(first.to_string());
        }
    }
    Some(episodes)
}

fn one(graph: &Graph, id: &str, target: &str) -> Result<Vec<usize>, Diagnostics> {
    graph
        .get(id)
        .map(|i| vec![i])
        .ok_or_else(|| ProjectError::plain("target::unknown", format!("no character `{target}`")).into())
}

/// Refuse a graph with a cycle, naming every node on it.
pub fn check_acyclic(graph: &Graph, spans: &Spans) -> Result<(), Diagnostics> {
    let mut g = DiGraph::<usize, ()>::with_capacity(graph.nodes.len(), graph.nodes.len() * 2);
    let ix: Vec<_> = (0..graph.nodes.len()).map(|i| g.add_node(i)).collect();
    for (i, n) in graph.nodes.iter().enumerate() {
        for input in &n.inputs {
            g.add_edge(ix[input.node], ix[i], ());
        }
    }
    let mut errors = Vec::new();
    for scc in tarjan_scc(&g) {
        if scc.len() < 2 {
            continue;
        }
        let members: std::collections::HashSet<usize> = scc.iter().map(|n| g[*n]).collect();
        let cycle = walk_cycle(graph, &members);
        let names: Vec<&str> = cycle.iter().map(|&i| graph.nodes[i].id.as_str()).collect();
        let message = format!("dependency cycle: {} → {}", names.join(" → "), names[0]);
        // Point at the `continue_from` lines that close the loop.
        let mut e = None;
        for &i in &cycle {
            let node = &graph.nodes[i];
            let (Some(loc), Some(ep)) = (
                spans
                    .continue_from
                    .get(&node.path)
                    .filter(|_| node.kind == NodeKind::ShotImage),
                node.path.split('/').next(),
            ) else {
                continue;
            };
            let file = &spans.files[ep];
            let err = e
                .take()
                .unwrap_or_else(|| ProjectError::at(file, "graph::cycle", message.clone()));
            e = Some(err.label_loc(file, loc, format!("{} continues from here", node.path)));
        }
        let e = e.unwrap_or_else(|| ProjectError::plain("graph::cycle", message));
        errors.push(e.help("a shot cannot continue (directly or through the shots between) from a shot that continues from it; remove one `continue_from`"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics { errors })
    }
}

/// One cycle through `members` (a strongly connected set), in dependency order.
fn walk_cycle(graph: &Graph, members: &std::collections::HashSet<usize>) -> Vec<usize> {
    let start = *members.iter().min().expect("non-empty");
    // Follow inputs inside the component until a node repeats.
    let mut path = vec![start];
    let mut pos = std::collections::HashMap::from([(start, 0usize)]);
    let mut at = start;
    loop {
        let next = graph.nodes[at]
            .inputs
            .iter()
            .map(|i| i.node)
            .find(|n| members.contains(n))
            .expect("a strongly connected node has an input inside its component");
        if let Some(&p) = pos.get(&next) {
            let mut cycle = path[p..].to_vec();
            cycle.reverse(); // inputs first: a → b means b uses a
            return cycle;
        }
        pos.insert(next, path.len());
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(targets: &[&str]) -> Option<Vec<String>> {
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        episodes_of(&targets).map(|e| {
            let mut e: Vec<String> = e.into_iter().collect();
            e.sort();
            e
        })
    }

    #[test]
    fn targets_name_the_episodes_they_need() {
        assert_eq!(of(&["ep01"]), Some(vec!["ep01".to_string()]));
        assert_eq!(
            of(&["ep02/s01", "ep01/s01/sh02", "voice_line:ep03/s01/sh02/1"]),
            Some(vec!["ep01".into(), "ep02".into(), "ep03".into()])
        );
        assert_eq!(of(&["characters/aoi", "character_refs:ren"]), Some(vec![]));
        assert_eq!(of(&["cast", "cast/aoi", "voice_line:cast/ren"]), Some(vec![]));
        // A dub's nodes name their episode before the language.
        assert_eq!(
            of(&["episode_audio:ep04.ja", "scene_mix:ep05/s01.ja"]),
            Some(vec!["ep04".into(), "ep05".into()])
        );
        assert_eq!(of(&["ep01", "all"]), None);
        // A node id of no known kind: load everything, and let the target
        // resolution say what is wrong.
        assert_eq!(of(&["nonsense:ep01"]), None);
    }
}
