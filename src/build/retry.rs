//! A failed try: set its host aside, put the job back for another host,
//! or walk the fallback chain.
//!
//! The decisions are the scheduler's pure books ([`Tries`], [`HostBook`]);
//! this adds the timers (a cool-down ends, a backoff ends) that come back
//! to the build loop as messages, and the one warning per host going down.

use tokio::task::JoinSet;

use super::Message;
use super::tasks::JobError;
use crate::exec::ExecError;
use crate::graph::{Graph, Node};
use crate::project::model::Executor;
use crate::sched::hosts::{HostBook, cooldown_policy};
use crate::sched::tries::{Next, Tries, Try};
use crate::sched::{Dispatch, Scheduler};

impl From<ExecError> for JobError {
    fn from(e: ExecError) -> JobError {
        match e {
            ExecError::Cancelled => JobError::Cancelled,
            ExecError::Transient(m) => JobError::Transient(m),
            ExecError::Permanent(m) => JobError::Failed(m),
        }
    }
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
        let lines = graph
            .pools
            .iter()
            .map(|p| p.hosts.iter().map(|h| executors[h.executor].line).collect())
            .collect();
        Retry {
            tries: Tries::new(chain, retries),
            hosts: HostBook::new(&hosts, cooldown_policy(scale)),
            lines,
            scale,
        }
    }

    /// The engine and attempt of `l`'s next try.
    pub fn current(&self, l: usize) -> Try {
        self.tries.current(l)
    }

    /// A try on `at` made its node.
    pub fn succeeded(&mut self, graph: &Graph, at: Dispatch) {
        if !graph.pools[at.pool].hosts.is_empty() {
            self.hosts.succeeded(at.pool, at.host);
        }
    }

    /// A cool-down is over.
    pub fn host_back(&mut self, sched: &mut Scheduler, pool: usize, host: usize) {
        self.hosts.back(pool, host);
        sched.set_down(pool, host, false);
    }

    /// A try of `at.node` (`node`) failed with `error` (not a cancellation).
    /// A transient failure sets its host aside; the node goes back to the
    /// scheduler (now, for another host or a fallback; after a backoff, for
    /// a local retry) or, with no engine left, fails: then its errors are
    /// returned.
    pub fn failed(
        &mut self,
        sched: &mut Scheduler,
        graph: &Graph,
        at: Dispatch,
        node: &Node,
        error: JobError,
        tasks: &mut JoinSet<Message>,
    ) -> Option<String> {
        let (transient, error) = match error {
            JobError::Transient(e) => (true, e),
            JobError::Failed(e) => (false, e),
            JobError::Cancelled | JobError::Io(_) => unreachable!("only failures are tried again"),
        };
        let pool = &graph.pools[at.pool];
        let on_host = !pool.hosts.is_empty();
        if transient
            && on_host
            && let Some(c) = self.hosts.failed(at.pool, at.host)
        {
            sched.set_down(at.pool, at.host, true);
            if c.warn {
                let host = &pool.hosts[at.host];
                let others = if pool.hosts.len() > 1 {
                    "its jobs go to the other hosts of the group"
                } else {
                    "its jobs wait for it"
                };
                eprintln!(
                    "warning: executor `{}` (studio.yaml:{}, group `{}`) is set aside for {}, longer while it \
                     keeps failing, and {others}: {}",
                    host.id,
                    self.lines[at.pool][at.host],
                    pool.name,
                    human(c.wait),
                    strip_origin(&error, &host.id)
                );
            }
            let (pool, host) = (at.pool, at.host);
            tasks.spawn(async move {
                tokio::time::sleep(c.wait).await;
                Message::HostBack { pool, host }
            });
        }
        let engine = node.engines[self.tries.current(at.node).engine];
        match self
            .tries
            .failed(at.node, transient, format!("{}: {error}", engine.name))
        {
            Next::Again(_) if on_host => sched.requeue(at.node, at.pool),
            Next::Again(t) => {
                // Work on this machine: try again after a backoff, holding no slot.
                sched.release(at.node);
                let first = crate::exec::http::seconds(0.5 * self.scale);
                let wait = backon::BackoffBuilder::build(crate::exec::http::backoff(first, t.attempt as usize))
                    .last()
                    .unwrap_or(first);
                let l = at.node;
                tasks.spawn(async move {
                    tokio::time::sleep(wait).await;
                    Message::Retry { node: l }
                });
            }
            Next::Fallback(t) => sched.requeue(at.node, node.pools[t.engine]),
            Next::GiveUp(errors) => return Some(errors),
        }
        None
    }
}

/// `30 s`, `1.5 s`, `30 ms`.
fn human(d: std::time::Duration) -> String {
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
fn strip_origin<'a>(error: &'a str, id: &str) -> &'a str {
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
