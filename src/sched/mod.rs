//! The ready queue: which job runs next, on which host of which pool. No I/O.
//!
//! The driver feeds it a dependency graph; it hands back nodes as their
//! inputs finish (`take_ready`), the driver decides cached vs. to-run, and
//! `next_job` picks among queued jobs, per pool with a free slot on a host
//! that is up, the one with the longest remaining path (weighted by
//! expected seconds), and the host with the most free slots. A pool is an
//! executor group (or `cpu`, `inline`: one host each); a host set aside
//! ([`Scheduler::set_down`]) takes no job, so a job never waits on a host
//! that is down while another is up. A failed node marks everything
//! downstream skipped. [`hosts`] keeps the cool-downs, [`tries`] the
//! attempts and fallbacks of each node.

pub mod hosts;
pub mod tries;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Queued,
    Running,
    /// Its job ended and its slot is free; its result is being stored
    /// ([`Scheduler::ran`]). Not done for its dependents yet.
    Storing,
    Done,
    Failed,
    Skipped,
}

#[derive(Debug, PartialEq)]
struct Ranked {
    priority: f64,
    node: usize,
}

impl Eq for Ranked {}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .total_cmp(&other.priority)
            // Among equals, the earlier node (screenplay order) first.
            .then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A job to start: `node` on host `host` of pool `pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub node: usize,
    pub pool: usize,
    /// Index into the pool's hosts.
    pub host: usize,
}

#[derive(Debug, Clone, Copy)]
struct Host {
    free: usize,
    down: bool,
}

/// The scheduler over nodes `0..n` (indices into the driver's node list).
#[derive(Debug)]
pub struct Scheduler {
    state: Vec<State>,
    missing: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    pool: Vec<usize>,
    hosts: Vec<Vec<Host>>,
    /// The host slot a running node holds.
    held: Vec<Option<(usize, usize)>>,
    queues: Vec<BinaryHeap<Ranked>>,
    priority: Vec<f64>,
    ready: Vec<usize>,
    open: usize,
    /// [`Scheduler::abandon`] was called: nothing new starts.
    stopped: bool,
}

impl Scheduler {
    /// `inputs[i]`: the nodes `i` needs; `pool[i]`: the pool it runs in;
    /// `hosts[p][h]`: slots of host `h` of pool `p`; `cost[i]`: expected
    /// seconds if it runs.
    pub fn new(inputs: &[Vec<usize>], pool: Vec<usize>, hosts: &[Vec<usize>], cost: &[f64]) -> Scheduler {
        let n = inputs.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, ins) in inputs.iter().enumerate() {
            for &d in ins {
                dependents[d].push(i);
            }
        }
        let priority = longest_paths(inputs, &dependents, cost);
        let missing: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let ready = (0..n).filter(|&i| missing[i] == 0).collect::<Vec<_>>();
        let mut state = vec![State::Waiting; n];
        for &r in &ready {
            state[r] = State::Ready;
        }
        Scheduler {
            state,
            missing,
            dependents,
            pool,
            hosts: hosts
                .iter()
                .map(|p| p.iter().map(|&free| Host { free, down: false }).collect())
                .collect(),
            held: vec![None; n],
            queues: hosts.iter().map(|_| BinaryHeap::new()).collect(),
            priority,
            ready,
            open: n,
            stopped: false,
        }
    }

    /// Nodes whose inputs are all done, not yet handed out.
    pub fn take_ready(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.ready)
    }

    /// `node` (ready) has to run.
    pub fn enqueue(&mut self, node: usize) {
        debug_assert_eq!(self.state[node], State::Ready);
        self.state[node] = State::Queued;
        self.queues[self.pool[node]].push(Ranked {
            priority: self.priority[node],
            node,
        });
    }

    /// The host of pool `p` to start a job on: up, with a free slot, the
    /// most free slots first (then the first listed).
    fn free_host(&self, p: usize) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (h, host) in self.hosts[p].iter().enumerate() {
            if !host.down && host.free > 0 && best.is_none_or(|(_, free)| host.free > free) {
                best = Some((h, host.free));
            }
        }
        best.map(|(h, _)| h)
    }

    /// The next job to start, taking a slot of a host of its pool.
    pub fn next_job(&mut self) -> Option<Dispatch> {
        let mut best: Option<(usize, usize, f64)> = None;
        for (p, q) in self.queues.iter().enumerate() {
            let Some(top) = q.peek() else { continue };
            if best.is_some_and(|(_, _, pr)| top.priority <= pr) {
                continue;
            }
            if let Some(h) = self.free_host(p) {
                best = Some((p, h, top.priority));
            }
        }
        let (pool, host, _) = best?;
        let node = self.queues[pool].pop().expect("peeked").node;
        self.hosts[pool][host].free -= 1;
        self.held[node] = Some((pool, host));
        self.state[node] = State::Running;
        Some(Dispatch { node, pool, host })
    }

    fn release_slot(&mut self, node: usize) {
        if let Some((p, h)) = self.held[node].take() {
            self.hosts[p][h].free += 1;
        }
    }

    /// Running `node` goes back to the queue of `pool` (its own, for a try
    /// on another host; a fallback engine's, for the next engine), freeing
    /// its slot.
    pub fn requeue(&mut self, node: usize, pool: usize) {
        debug_assert_eq!(self.state[node], State::Running);
        self.release_slot(node);
        self.pool[node] = pool;
        self.state[node] = State::Queued;
        self.queues[pool].push(Ranked {
            priority: self.priority[node],
            node,
        });
    }

    /// The pool `node` runs in now (its current engine's).
    pub fn pool_of(&self, node: usize) -> usize {
        self.pool[node]
    }

    /// Ready `node` will queue in `pool` (a fallback engine's).
    pub fn set_pool(&mut self, node: usize, pool: usize) {
        debug_assert_eq!(self.state[node], State::Ready);
        self.pool[node] = pool;
    }

    /// Move the queued nodes of `pool` for which `to` names another pool to
    /// that pool's queue (their fallback engine's, when every host of
    /// `pool` is set aside); the moved nodes with their new pool.
    pub fn reroute(&mut self, pool: usize, mut to: impl FnMut(usize) -> Option<usize>) -> Vec<(usize, usize)> {
        let mut moved = Vec::new();
        for ranked in std::mem::take(&mut self.queues[pool]).into_vec() {
            match to(ranked.node) {
                Some(p) if p != pool => {
                    self.pool[ranked.node] = p;
                    moved.push((ranked.node, p));
                    self.queues[p].push(ranked);
                }
                _ => self.queues[pool].push(ranked),
            }
        }
        moved
    }

    /// Running `node` stops and frees its slot, to be queued again later
    /// with [`Scheduler::enqueue`] (a retry after a backoff).
    pub fn release(&mut self, node: usize) {
        debug_assert_eq!(self.state[node], State::Running);
        self.release_slot(node);
        self.state[node] = State::Ready;
    }

    /// Running `node`'s job ended: its slot is free for the next job while
    /// its result is stored; it stays open until [`Scheduler::finish`], and
    /// stopping the build does not drop it.
    pub fn ran(&mut self, node: usize) {
        debug_assert_eq!(self.state[node], State::Running);
        self.release_slot(node);
        self.state[node] = State::Storing;
    }

    /// Set host `host` of pool `pool` aside (`down`), or take it back.
    /// Running jobs keep their slots.
    pub fn set_down(&mut self, pool: usize, host: usize, down: bool) {
        self.hosts[pool][host].down = down;
    }

    /// `node` finished (ran, or came from the cache). On failure, returns the
    /// nodes skipped because they depend on it.
    pub fn finish(&mut self, node: usize, ok: bool) -> Vec<usize> {
        if self.state[node] == State::Running {
            self.release_slot(node);
        }
        self.open -= 1;
        if ok {
            self.state[node] = State::Done;
            for &d in &self.dependents[node] {
                self.missing[d] -= 1;
                if self.missing[d] == 0 && self.state[d] == State::Waiting {
                    self.state[d] = State::Ready;
                    self.ready.push(d);
                }
            }
            return Vec::new();
        }
        self.state[node] = State::Failed;
        let mut skipped = Vec::new();
        let mut stack = self.dependents[node].clone();
        while let Some(d) = stack.pop() {
            if self.state[d] == State::Waiting {
                self.state[d] = State::Skipped;
                self.open -= 1;
                skipped.push(d);
                stack.extend(self.dependents[d].iter().copied());
            }
        }
        skipped
    }

    /// Stop starting work: drop queued and waiting nodes (after a failure
    /// without --keep-going, or on Ctrl-C). Returns them.
    pub fn abandon(&mut self) -> Vec<usize> {
        let mut dropped = Vec::new();
        for (i, s) in self.state.iter_mut().enumerate() {
            if matches!(s, State::Waiting | State::Ready | State::Queued) {
                *s = State::Skipped;
                dropped.push(i);
            }
        }
        self.open -= dropped.len();
        self.stopped = true;
        self.ready.clear();
        for q in &mut self.queues {
            q.clear();
        }
        dropped
    }

    /// Whether the build stopped starting work ([`Scheduler::abandon`]):
    /// a failed try is then not tried again.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether every node has finished, failed or been skipped.
    pub fn is_done(&self) -> bool {
        self.open == 0
    }

    pub fn running(&self) -> usize {
        self.state.iter().filter(|s| **s == State::Running).count()
    }

    pub fn priority(&self, node: usize) -> f64 {
        self.priority[node]
    }
}

/// For each node, its cost plus the costliest path through its dependents.
fn longest_paths(inputs: &[Vec<usize>], dependents: &[Vec<usize>], cost: &[f64]) -> Vec<f64> {
    let n = inputs.len();
    // Kahn's order, then a reverse sweep.
    let mut indegree: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut order: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let i = order[head];
        head += 1;
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                order.push(d);
            }
        }
    }
    let mut best = vec![0.0; n];
    for &i in order.iter().rev() {
        let tail = dependents[i].iter().map(|&d| best[d]).fold(0.0, f64::max);
        best[i] = cost[i] + tail;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_dependency_order_and_respects_slots() {
        // 0 → 2, 1 → 2; one pool with one slot.
        let inputs = vec![vec![], vec![], vec![0, 1]];
        let mut s = Scheduler::new(&inputs, vec![0, 0, 0], &[vec![1]], &[1.0, 5.0, 1.0]);
        let ready = s.take_ready();
        assert_eq!(ready, vec![0, 1]);
        for r in ready {
            s.enqueue(r);
        }
        // Node 1 lies on the longer path: it goes first.
        assert_eq!(node(s.next_job()), Some(1));
        assert_eq!(s.next_job(), None, "one slot");
        s.finish(1, true);
        assert_eq!(node(s.next_job()), Some(0));
        s.finish(0, true);
        assert_eq!(s.take_ready(), vec![2]);
        s.enqueue(2);
        assert_eq!(node(s.next_job()), Some(2));
        s.finish(2, true);
        assert!(s.is_done());
    }

    #[test]
    fn failure_skips_everything_downstream_only() {
        // 0 → 1 → 2, and 3 alone.
        let inputs = vec![vec![], vec![0], vec![1], vec![]];
        let mut s = Scheduler::new(&inputs, vec![0; 4], &[vec![4]], &[1.0; 4]);
        for r in s.take_ready() {
            s.enqueue(r);
        }
        let a = s.next_job().unwrap().node;
        let b = s.next_job().unwrap().node;
        assert_eq!((a, b), (0, 3));
        assert_eq!(s.finish(0, false), vec![1, 2]);
        assert!(!s.is_done());
        s.finish(3, true);
        assert!(s.is_done());
    }

    #[test]
    fn queued_jobs_of_a_dead_pool_move_to_their_fallback_pool() {
        // Three jobs for pool 0 (one host, down), a fallback pool 1.
        let inputs = vec![vec![], vec![], vec![]];
        let mut s = Scheduler::new(&inputs, vec![0, 0, 0], &[vec![1], vec![2]], &[1.0, 2.0, 3.0]);
        for n in s.take_ready() {
            s.enqueue(n);
        }
        s.set_down(0, 0, true);
        assert_eq!(s.next_job(), None, "the host is down");
        // Job 1 has no fallback: it stays.
        let mut moved = s.reroute(0, |n| (n != 1).then_some(1));
        moved.sort_unstable();
        assert_eq!(moved, [(0, 1), (2, 1)]);
        assert_eq!((s.pool_of(0), s.pool_of(1), s.pool_of(2)), (1, 0, 1));
        let mut ran: Vec<usize> = std::iter::from_fn(|| s.next_job()).map(|d| d.node).collect();
        ran.sort_unstable();
        assert_eq!(ran, [0, 2], "the moved jobs run on the fallback pool's host");
        s.set_down(0, 0, false);
        assert_eq!(node(s.next_job()), Some(1));
    }

    #[test]
    fn cache_hits_take_no_slot() {
        let inputs = vec![vec![], vec![0]];
        let mut s = Scheduler::new(&inputs, vec![0, 0], &[vec![1]], &[1.0, 1.0]);
        assert_eq!(s.take_ready(), vec![0]);
        s.finish(0, true); // from the cache
        assert_eq!(s.take_ready(), vec![1]);
        s.enqueue(1);
        assert_eq!(node(s.next_job()), Some(1));
    }

    #[test]
    fn a_job_that_ran_frees_its_slot_but_not_its_dependents_and_survives_a_stop() {
        // 0 → 2, and 1 alone; one slot.
        let inputs = vec![vec![], vec![], vec![0]];
        let mut s = Scheduler::new(&inputs, vec![0; 3], &[vec![1]], &[2.0, 1.0, 1.0]);
        for r in s.take_ready() {
            s.enqueue(r);
        }
        assert_eq!(node(s.next_job()), Some(0));
        assert_eq!(s.next_job(), None, "one slot");
        s.ran(0);
        assert_eq!(node(s.next_job()), Some(1), "the slot is free while 0 is stored");
        assert!(s.take_ready().is_empty(), "2 waits until 0 is stored");
        // Stopping drops what waits, not what is being stored.
        assert_eq!(s.abandon(), vec![2]);
        assert!(!s.is_done());
        s.ran(1);
        s.finish(0, true);
        s.finish(1, true);
        assert!(s.is_done());
        assert_eq!(s.running(), 0);
    }

    fn node(d: Option<Dispatch>) -> Option<usize> {
        d.map(|d| d.node)
    }

    fn queued(n: usize, hosts: &[Vec<usize>]) -> Scheduler {
        let inputs = vec![vec![]; n];
        let pools = vec![0; n];
        let cost: Vec<f64> = (0..n).map(|i| (n - i) as f64).collect();
        let mut s = Scheduler::new(&inputs, pools, hosts, &cost);
        for r in s.take_ready() {
            s.enqueue(r);
        }
        s
    }

    #[test]
    fn two_hosts_with_one_slot_each_run_two_jobs_at_once() {
        let mut s = queued(3, &[vec![1, 1]]);
        let a = s.next_job().unwrap();
        let b = s.next_job().unwrap();
        assert_eq!((a.node, a.host), (0, 0));
        assert_eq!((b.node, b.host), (1, 1));
        assert_eq!(s.next_job(), None, "both hosts busy");
        s.finish(b.node, true);
        assert_eq!(
            s.next_job(),
            Some(Dispatch {
                node: 2,
                pool: 0,
                host: 1
            })
        );
    }

    #[test]
    fn jobs_spread_over_the_hosts_with_most_free_slots() {
        let mut s = queued(4, &[vec![1, 3]]);
        let hosts: Vec<usize> = (0..4).map(|_| s.next_job().unwrap().host).collect();
        assert_eq!(hosts, vec![1, 1, 0, 1]);
        assert_eq!(s.running(), 4);
    }

    #[test]
    fn a_host_that_is_down_takes_no_job_while_another_is_up() {
        let mut s = queued(3, &[vec![1, 1]]);
        let a = s.next_job().unwrap();
        assert_eq!(a.host, 0);
        // Host 0 failed the job: set aside, the job goes back in the queue.
        s.set_down(0, 0, true);
        s.requeue(a.node, 0);
        let again = s.next_job().unwrap();
        assert_eq!((again.node, again.host), (0, 1), "on the other host, first in line");
        assert_eq!(s.next_job(), None, "host 0 is down, host 1 busy: the rest wait");
        s.finish(again.node, true);
        assert_eq!(s.next_job().map(|d| d.host), Some(1));
        // Every host down: nothing starts until one is back.
        s.set_down(0, 1, true);
        s.finish(1, true);
        assert_eq!(s.next_job(), None);
        s.set_down(0, 0, false);
        assert_eq!(
            s.next_job(),
            Some(Dispatch {
                node: 2,
                pool: 0,
                host: 0
            })
        );
        s.finish(2, true);
        assert!(s.is_done());
    }

    #[test]
    fn a_requeued_job_may_move_to_another_pool_and_a_released_one_waits() {
        // Pool 0: a service group of one host; pool 1: the cpu.
        let inputs = vec![vec![], vec![]];
        let mut s = Scheduler::new(&inputs, vec![0, 0], &[vec![1], vec![2]], &[2.0, 1.0]);
        for r in s.take_ready() {
            s.enqueue(r);
        }
        let a = s.next_job().unwrap();
        assert_eq!((a.node, a.pool), (0, 0));
        // A fallback engine runs on the cpu.
        s.requeue(0, 1);
        assert_eq!(
            s.next_job(),
            Some(Dispatch {
                node: 0,
                pool: 1,
                host: 0
            })
        );
        assert_eq!(
            s.next_job(),
            Some(Dispatch {
                node: 1,
                pool: 0,
                host: 0
            })
        );
        // A retry after a backoff: no slot held meanwhile.
        s.release(1);
        assert_eq!(s.running(), 1);
        assert_eq!(s.next_job(), None);
        s.enqueue(1);
        assert_eq!(s.next_job().map(|d| d.node), Some(1));
        s.finish(0, true);
        s.finish(1, true);
        assert!(s.is_done());
    }

    #[test]
    fn abandon_drops_released_jobs() {
        let mut s = queued(2, &[vec![2]]);
        let a = s.next_job().unwrap();
        s.release(a.node);
        assert!(!s.stopped());
        let mut dropped = s.abandon();
        dropped.sort_unstable();
        assert_eq!(dropped, vec![0, 1]);
        assert!(s.is_done() && s.stopped());
    }
}
