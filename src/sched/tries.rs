//! Each node's way through its engine chain: which engine, which attempt,
//! and the errors so far.
//!
//! A transient failure is tried again with the same engine (on another host
//! when the scheduler has one) until the rule's `retries` are spent; a
//! permanent one, or a transient one with no retry left, moves to the next
//! engine of the chain (a fallback, perhaps in another pool); past the last
//! engine the node fails with every engine's error.
//!
//! The book also remembers whether an engine was left behind for a failure
//! that may pass (a transient one, or its service unreachable before the
//! build): what a later engine makes is then provisional ([`Tries::fallback`]).

/// Where a node stands: the index of its engine in the chain, and the
/// attempt with that engine (0 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Try {
    pub engine: usize,
    pub attempt: u32,
}

/// What to do after a failed try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The same engine again.
    Again(Try),
    /// The next engine of the chain.
    Fallback(Try),
    /// No engine left: the node fails with these errors (one line each).
    GiveUp(String),
}

#[derive(Debug, Clone, Default)]
struct Node {
    at: Try,
    errors: Vec<String>,
    /// An engine was left behind for a failure that may pass.
    soft: bool,
}

/// How a node came to its current engine, when it is not the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback<'a> {
    /// The first engine's error (naming the engine).
    pub primary: &'a str,
    /// An engine before the current one was left for a failure that may
    /// pass: what the current one makes stands in for it.
    pub provisional: bool,
}

/// The tries of nodes `0..n`.
#[derive(Debug)]
pub struct Tries {
    nodes: Vec<Node>,
    chain: Vec<usize>,
    retries: Vec<u32>,
}

impl Tries {
    /// `chain[i]`: how many engines node `i` may use; `retries[i]`: its
    /// rule's retries after a transient failure.
    pub fn new(chain: Vec<usize>, retries: Vec<u32>) -> Tries {
        Tries {
            nodes: vec![Node::default(); chain.len()],
            chain,
            retries,
        }
    }

    pub fn current(&self, node: usize) -> Try {
        self.nodes[node].at
    }

    /// The current try of `node` failed with `error` (already naming its engine).
    pub fn failed(&mut self, node: usize, transient: bool, error: String) -> Next {
        let n = &mut self.nodes[node];
        if transient && n.at.attempt < self.retries[node] {
            n.at.attempt += 1;
            return Next::Again(n.at);
        }
        n.errors.push(error);
        if n.at.engine + 1 < self.chain[node] {
            n.soft |= transient;
            n.at = Try {
                engine: n.at.engine + 1,
                attempt: 0,
            };
            return Next::Fallback(n.at);
        }
        Next::GiveUp(n.errors.join("\n"))
    }

    /// Leave `node`'s current engine before trying it, because its service
    /// cannot be reached (`error`): like a failure that may pass, with no
    /// retry. The caller checks a later engine remains.
    pub fn skip(&mut self, node: usize, error: String) -> Next {
        let n = &mut self.nodes[node];
        n.errors.push(error);
        n.soft = true;
        n.at = Try {
            engine: n.at.engine + 1,
            attempt: 0,
        };
        Next::Fallback(n.at)
    }

    /// How `node` came to its current engine; `None` on its first.
    pub fn fallback(&self, node: usize) -> Option<Fallback<'_>> {
        let n = &self.nodes[node];
        (n.at.engine > 0).then(|| Fallback {
            primary: n.errors.first().map_or("", String::as_str),
            provisional: n.soft,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_retry_then_fall_back_then_give_up() {
        let mut t = Tries::new(vec![2], vec![2]);
        assert_eq!(t.current(0), Try::default());
        assert_eq!(
            t.failed(0, true, "a: 503".into()),
            Next::Again(Try { engine: 0, attempt: 1 })
        );
        assert_eq!(
            t.failed(0, true, "a: 503".into()),
            Next::Again(Try { engine: 0, attempt: 2 })
        );
        assert_eq!(
            t.failed(0, true, "a: 503".into()),
            Next::Fallback(Try { engine: 1, attempt: 0 })
        );
        assert_eq!(t.current(0), Try { engine: 1, attempt: 0 });
        assert_eq!(
            t.failed(0, false, "b: broken".into()),
            Next::GiveUp("a: 503\nb: broken".into())
        );
    }

    #[test]
    fn a_fallback_after_a_failure_that_may_pass_is_provisional() {
        let mut t = Tries::new(vec![3, 2, 3], vec![0, 0, 0]);
        assert_eq!(t.fallback(0), None, "the first engine is no fallback");
        t.failed(0, false, "a: 400".into());
        assert_eq!(
            t.fallback(0),
            Some(Fallback {
                primary: "a: 400",
                provisional: false
            }),
            "a permanent failure: the fallback's result stands"
        );
        t.failed(0, true, "b: 503".into());
        assert_eq!(t.fallback(0).unwrap().primary, "a: 400");
        assert!(t.fallback(0).unwrap().provisional, "b may come back");
        t.failed(1, true, "a: refused".into());
        assert!(t.fallback(1).unwrap().provisional);
        assert_eq!(
            t.skip(2, "a: unreachable".into()),
            Next::Fallback(Try { engine: 1, attempt: 0 })
        );
        assert_eq!(
            t.fallback(2),
            Some(Fallback {
                primary: "a: unreachable",
                provisional: true
            })
        );
    }

    #[test]
    fn permanent_failures_fall_back_at_once() {
        let mut t = Tries::new(vec![3, 1], vec![5, 0]);
        assert_eq!(
            t.failed(0, false, "a: 400".into()),
            Next::Fallback(Try { engine: 1, attempt: 0 })
        );
        assert_eq!(
            t.failed(1, true, "x: refused".into()),
            Next::GiveUp("x: refused".into())
        );
    }
}
