//! A failed try: set its host aside, put the job back for another host,
//! or walk the fallback chain. The one place that decides whether and
//! when a node is tried again.
//!
//! The decisions are the scheduler's pure books ([`Tries`], [`HostBook`]);
//! this turns them into what the drain state acts on (a cool-down to time,
//! a pool to queue the node in, a backoff to wait) and writes the one
//! warning per host going down. The drain state
//! ([`super::drain::DrainState`]) moves the scheduler, starts the timers
//! and emits the events.

use std::collections::HashMap;
use std::time::Duration;

use super::tasks::JobError;
use crate::exec::ExecError;
use crate::graph::{Graph, Node};
use crate::project::model::Executor;
use crate::sched::Dispatch;
use crate::sched::hosts::{HostBook, cooldown_policy};
use crate::sched::tries::{Fallback, Next, Tries, Try};

impl From<ExecError> for JobError {
    fn from(e: ExecError) -> JobError {
        match e {
            ExecError::Cancelled => JobError::Cancelled,
            ExecError::Transient(m) => JobError::Transient(m),
            ExecError::Permanent(m) => JobError::Failed(m),
        }
    }
}

/// What becomes of a node whose try failed.
#[derive(Debug)]
pub(super) enum Then {
    /// Queue it again now in this pool: its own (another host) or a
    /// fallback engine's.
    Requeue { pool: usize, engine: &'static str },
    /// Work on this machine: queue it again after this backoff, holding no
    /// slot meanwhile.
    After { wait: Duration, engine: &'static str },
    /// No engine left: it fails with every engine's error.
    GiveUp(String),
}

/// The tries of this build's nodes and the health of the hosts.
pub(super) struct Retry {
    tries: Tries,
    hosts: HostBook,
    /// The studio.yaml line of each host of each pool, for warnings.
    lines: Vec<Vec<usize>>,
    /// The sim's time scale (1 for a real build): backoffs scale with it.
    scale: f64,
}

impl Retry {
    pub fn new(graph: &Graph, executors: &[Executor], nodes: &[usize], scale: f64) -> Retry {
        let chain = nodes.iter().map(|&g| graph.nodes[g].engines.len()).collect();
        let retries = nodes.iter().map(|&g| graph.nodes[g].retries).collect();
        let hosts: Vec<usize> = graph.pools.iter().map(|p| p.hosts.len()).collect();
        let lines = (graph.pools.iter())
            .map(|p| p.hosts.iter().map(|h| executors[h.executor].line).collect())
            .collect();
        Retry {
            tries: Tries::new(chain, retries),
            hosts: HostBook::new(&hosts, cooldown_policy(scale)),
            lines,
            scale,
        }
    }

    /// `l` (`node`) before its first try: while its engine's group is
    /// unreachable (`down`, from [`super::health`]) and a later engine
    /// remains, move on to that engine; the pool its first try goes to.
    pub fn skip_unreachable(&mut self, l: usize, node: &Node, down: &HashMap<usize, String>) -> usize {
        loop {
            let t = self.tries.current(l);
            let pool = node.pools[t.engine];
            match down.get(&pool) {
                Some(reason) if t.engine + 1 < node.engines.len() => {
                    self.tries.skip(l, format!("{}: {reason}", node.engines[t.engine].name));
                }
                _ => return pool,
            }
        }
    }

    /// How `l` came to its current engine, when it is not its first.
    pub fn fallback(&self, l: usize) -> Option<Fallback<'_>> {
        self.tries.fallback(l)
    }

    /// Every host of service pool `pool` is set aside.
    pub fn group_down(&self, pool: usize) -> bool {
        self.hosts.all_down(pool)
    }

    /// `l` (`node`, not running) is bound for a pool every host of which is
    /// set aside: move on to its next engine whose pool is not, each engine
    /// skipped recording `error`. The pool it goes to now; `None`: it stays
    /// (no later engine, or its pool has a host up).
    pub fn fall_back_from_down(&mut self, l: usize, node: &Node, error: &str) -> Option<usize> {
        let mut moved = None;
        loop {
            let t = self.tries.current(l);
            if !(self.group_down(node.pools[t.engine]) && t.engine + 1 < node.engines.len()) {
                return moved;
            }
            // A host that is down may come back: the fallback's result is provisional.
            self.tries.skip(l, format!("{}: {error}", node.engines[t.engine].name));
            moved = Some(node.pools[t.engine + 1]);
        }
    }

    /// The engine and attempt of `l`'s next try.
    pub fn current(&self, l: usize) -> Try {
        self.tries.current(l)
    }

    /// A try on `at` made its node: its host's streak of failures ends.
    pub fn succeeded(&mut self, graph: &Graph, at: Dispatch) {
        if !graph.pools[at.pool].hosts.is_empty() {
            self.hosts.succeeded(at.pool, at.host);
        }
    }

    /// A cool-down is over.
    pub fn host_back(&mut self, pool: usize, host: usize) {
        self.hosts.back(pool, host);
    }

    /// A try on `at` failed transiently with `error`: when it ran on a
    /// service host that is not set aside yet, set it aside and return for
    /// how long (warning once per streak of failures).
    pub fn set_aside(&mut self, graph: &Graph, at: Dispatch, error: &str) -> Option<Duration> {
        let pool = &graph.pools[at.pool];
        if pool.hosts.is_empty() {
            return None;
        }
        let c = self.hosts.failed(at.pool, at.host)?;
        if c.warn {
            let host = &pool.hosts[at.host];
            let others = if pool.hosts.len() > 1 {
                "its jobs go to the other hosts of the group"
            } else {
                "its jobs wait for it"
            };
            eprintln!(
                "warning: executor `{}` (studio.yaml:{}, group `{}`) is set aside for {}, longer while it keeps \
                 failing, and {others}: {}",
                host.id,
                self.lines[at.pool][at.host],
                pool.name,
                human(c.wait),
                strip_origin(error, &host.id)
            );
        }
        Some(c.wait)
    }

    /// A try of `at.node` (`node`) failed with `error` (transient or not):
    /// where it goes next. A transient failure is tried again, unless every
    /// host of its group is set aside and a later engine remains: then the
    /// node falls back at once rather than wait out the cool-downs.
    pub fn next(&mut self, graph: &Graph, at: Dispatch, node: &Node, transient: bool, error: &str) -> Then {
        let current = self.tries.current(at.node).engine;
        let engine = node.engines[current];
        let on_host = !graph.pools[at.pool].hosts.is_empty();
        let group_down = on_host && self.hosts.all_down(at.pool) && current + 1 < node.engines.len();
        let error = format!("{}: {error}", engine.name);
        // Every host down: no retry, but a failure that may pass all the
        // same, so what the next engine makes is provisional.
        let next = if transient && group_down {
            self.tries.skip(at.node, error)
        } else {
            self.tries.failed(at.node, transient, error)
        };
        match next {
            Next::Again(_) if on_host => Then::Requeue {
                pool: at.pool,
                engine: engine.name,
            },
            Next::Again(t) => Then::After {
                wait: self.backoff(t.attempt),
                engine: engine.name,
            },
            Next::Fallback(t) => Then::Requeue {
                pool: node.pools[t.engine],
                engine: node.engines[t.engine].name,
            },
            Next::GiveUp(errors) => Then::GiveUp(errors),
        }
    }

    /// The wait before local attempt `attempt` (1 for the first retry):
    /// exponential with jitter from half a second, scaled like the sim.
    fn backoff(&self, attempt: u32) -> Duration {
        let first = crate::exec::http::seconds(0.5 * self.scale);
        backon::BackoffBuilder::build(crate::exec::http::backoff(first, attempt as usize))
            .last()
            .unwrap_or(first)
    }
}

/// `30 s`, `1.5 s`, `30 ms`.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// `error` without the `executor `ID` (studio.yaml:N): ` it may start with.
pub(super) fn strip_origin<'a>(error: &'a str, id: &str) -> &'a str {
    let prefix = format!("executor `{id}` (studio.yaml:");
    match error.strip_prefix(&prefix).and_then(|rest| rest.split_once("): ")) {
        Some((line, rest)) if line.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::{human, strip_origin};
    use std::time::Duration;

    #[test]
    fn cool_downs_read_well() {
        assert_eq!(human(Duration::from_secs_f64(41.7)), "42 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::from_millis(30)), "30 ms");
    }

    #[test]
    fn warnings_name_the_host_once() {
        assert_eq!(
            strip_origin("executor `a` (studio.yaml:12): cannot connect to x", "a"),
            "cannot connect to x"
        );
        assert_eq!(
            strip_origin("simulated transient failure", "a"),
            "simulated transient failure"
        );
        assert_eq!(
            strip_origin("executor `b` (studio.yaml:12): x", "a"),
            "executor `b` (studio.yaml:12): x"
        );
    }
}
