//! The ready queue: which job runs next, on which pool. No I/O.
//!
//! The driver feeds it a dependency graph; it hands back nodes as their
//! inputs finish (`take_ready`), the driver decides cached vs. to-run, and
//! `next_job` picks among queued jobs, per pool with a free slot, the one
//! with the longest remaining path (weighted by expected seconds). A failed
//! node marks everything downstream skipped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Queued,
    Running,
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

/// The scheduler over nodes `0..n` (indices into the driver's node list).
#[derive(Debug)]
pub struct Scheduler {
    state: Vec<State>,
    missing: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    pool: Vec<usize>,
    free: Vec<usize>,
    queues: Vec<BinaryHeap<Ranked>>,
    priority: Vec<f64>,
    ready: Vec<usize>,
    open: usize,
}

impl Scheduler {
    /// `inputs[i]`: the nodes `i` needs; `pool[i]`: the pool it runs in;
    /// `slots[p]`: slots of pool `p`; `cost[i]`: expected seconds if it runs.
    pub fn new(inputs: &[Vec<usize>], pool: Vec<usize>, slots: &[usize], cost: &[f64]) -> Scheduler {
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
            free: slots.to_vec(),
            queues: slots.iter().map(|_| BinaryHeap::new()).collect(),
            priority,
            ready,
            open: n,
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

    /// The next job to start, taking a slot of its pool.
    pub fn next_job(&mut self) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (p, q) in self.queues.iter().enumerate() {
            if self.free[p] == 0 {
                continue;
            }
            if let Some(top) = q.peek()
                && best.is_none_or(|(_, pr)| top.priority > pr)
            {
                best = Some((p, top.priority));
            }
        }
        let (p, _) = best?;
        let node = self.queues[p].pop().expect("peeked").node;
        self.free[p] -= 1;
        self.state[node] = State::Running;
        Some(node)
    }

    /// `node` finished (ran, or came from the cache). On failure, returns the
    /// nodes skipped because they depend on it.
    pub fn finish(&mut self, node: usize, ok: bool) -> Vec<usize> {
        if self.state[node] == State::Running {
            self.free[self.pool[node]] += 1;
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
        self.ready.clear();
        for q in &mut self.queues {
            q.clear();
        }
        dropped
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
        let mut s = Scheduler::new(&inputs, vec![0, 0, 0], &[1], &[1.0, 5.0, 1.0]);
        let ready = s.take_ready();
        assert_eq!(ready, vec![0, 1]);
        for r in ready {
            s.enqueue(r);
        }
        // Node 1 lies on the longer path: it goes first.
        assert_eq!(s.next_job(), Some(1));
        assert_eq!(s.next_job(), None, "one slot");
        s.finish(1, true);
        assert_eq!(s.next_job(), Some(0));
        s.finish(0, true);
        assert_eq!(s.take_ready(), vec![2]);
        s.enqueue(2);
        assert_eq!(s.next_job(), Some(2));
        s.finish(2, true);
        assert!(s.is_done());
    }

    #[test]
    fn failure_skips_everything_downstream_only() {
        // 0 → 1 → 2, and 3 alone.
        let inputs = vec![vec![], vec![0], vec![1], vec![]];
        let mut s = Scheduler::new(&inputs, vec![0; 4], &[4], &[1.0; 4]);
        for r in s.take_ready() {
            s.enqueue(r);
        }
        let a = s.next_job().unwrap();
        let b = s.next_job().unwrap();
        assert_eq!((a, b), (0, 3));
        assert_eq!(s.finish(0, false), vec![1, 2]);
        assert!(!s.is_done());
        s.finish(3, true);
        assert!(s.is_done());
    }

    #[test]
    fn cache_hits_take_no_slot() {
        let inputs = vec![vec![], vec![0]];
        let mut s = Scheduler::new(&inputs, vec![0, 0], &[1], &[1.0, 1.0]);
        assert_eq!(s.take_ready(), vec![0]);
        s.finish(0, true); // from the cache
        assert_eq!(s.take_ready(), vec![1]);
        s.enqueue(1);
        assert_eq!(s.next_job(), Some(1));
    }
}
