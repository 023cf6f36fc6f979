//! The health check before a real build: a service group none of whose
//! hosts can be reached is skipped, not waited for.
//!
//! A node whose first engine runs on such a group, and that has a later
//! engine in its chain, starts with that engine (its record then says it
//! fell back); one warning per group says so. Without this, the jobs of an
//! unreachable group would wait out growing cool-downs one after another
//! before their fallbacks ran (a voice server that is not running would
//! hold an episode for many minutes). Hosts that fail during the build go
//! through `retry` as before. Simulated builds have their own host check
//! (`simulate.check_hosts`), so they are not probed here. A build of the
//! review loop probes before each of its passes; each group is warned
//! about once a build (`warned`).

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;

use crate::exec::http::probe;
use crate::exec::services::Services;
use crate::session::Session;

/// The pools (by index) that none of whose hosts answered, each with the
/// first host's reason, for the nodes `nodes` would run on them first.
/// Warns about each one not in `warned` yet, and adds it there.
pub(super) async fn unreachable_pools(
    session: &Session,
    nodes: &[usize],
    warned: &mut HashSet<usize>,
) -> HashMap<usize, String> {
    if session.project.profile.simulate.is_some() {
        return HashMap::new();
    }
    let graph = &session.graph;
    // Only groups a node starts on and could fall back from.
    let mut wanted: Vec<usize> = (nodes.iter())
        .map(|&g| &graph.nodes[g])
        .filter(|n| n.engines.len() > 1 && !graph.pools[n.pools[0]].hosts.is_empty())
        .map(|n| n.pools[0])
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return HashMap::new();
    }
    let services = Services::new(&session.project.executors);
    let checks = wanted.into_iter().map(|p| {
        let pool = &graph.pools[p];
        let services = &services;
        async move {
            let probes = pool.hosts.iter().map(|h| async move {
                match services.get(h.executor) {
                    Some(Ok(service)) => probe(&service).await.map_err(|e| e.to_string()),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err(format!("executor `{}` has no URL", h.id)),
                }
            });
            let results = join_all(probes).await;
            let first_error = results.iter().find_map(|r| r.as_ref().err().cloned());
            match (results.iter().any(Result::is_ok), first_error) {
                (false, Some(reason)) => Some((p, reason)),
                _ => None,
            }
        }
    });
    let down: HashMap<usize, String> = join_all(checks).await.into_iter().flatten().collect();
    for (&p, reason) in &down {
        if !warned.insert(p) {
            continue;
        }
        let pool = &graph.pools[p];
        let reason = super::retry::strip_origin(reason, &pool.hosts[0].id);
        let hosts: Vec<String> = (pool.hosts.iter())
            .map(|h| {
                format!(
                    "`{}` (studio.yaml:{})",
                    h.id, session.project.executors[h.executor].line
                )
            })
            .collect();
        eprintln!(
            "warning: executor {} of group `{}` cannot be reached, so its jobs use their fallback engines in this \
             build: {reason}",
            hosts.join(", "),
            pool.name
        );
    }
    down
}
