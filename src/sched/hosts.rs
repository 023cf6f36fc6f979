//! Host health: which hosts are set aside, for how long, and when to warn.
//!
//! A host whose job fails with a transient error (refused, timed out, 5xx)
//! is set aside for a cool-down that doubles, with jitter, while it keeps
//! failing (30 s, 60 s, … at most 10 minutes, scaled like the sim's
//! sleeps); a success ends its streak. The driver turns a cool-down into a
//! timer and [`crate::sched::Scheduler::set_down`] calls; this book only
//! decides. One warning per host going down: when its streak starts, not
//! for every job it fails.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The first cool-down of a host, before time scaling.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(30);
/// The longest cool-down, before time scaling.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);

/// The cool-down policy: from `FIRST_COOLDOWN` doubling up to
/// `MAX_COOLDOWN`, with jitter, all times `scale` (the sim's time scale; 1
/// for real builds).
pub fn cooldown_policy(scale: f64) -> ExponentialBuilder {
    let scaled = |d: Duration| Duration::try_from_secs_f64(d.as_secs_f64() * scale.max(0.0)).unwrap_or(MAX_COOLDOWN);
    ExponentialBuilder::new()
        .with_min_delay(scaled(FIRST_COOLDOWN))
        .with_max_delay(scaled(MAX_COOLDOWN))
        .with_factor(2.0)
        .without_max_times()
        .with_jitter()
}

#[derive(Debug, Default)]
struct Health {
    down: bool,
    /// Failures since the last success.
    streak: u32,
    /// The streak's cool-downs.
    backoff: Option<ExponentialBackoff>,
}

/// A host was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// How long it takes no job.
    pub wait: Duration,
    /// Its first failure since it last worked (or ever): say so, once.
    pub warn: bool,
}

/// The health of every host of every pool.
#[derive(Debug)]
pub struct HostBook {
    hosts: Vec<Vec<Health>>,
    policy: ExponentialBuilder,
}

impl HostBook {
    /// `hosts[p]`: how many hosts pool `p` has.
    pub fn new(hosts: &[usize], policy: ExponentialBuilder) -> HostBook {
        HostBook {
            hosts: hosts
                .iter()
                .map(|&n| (0..n).map(|_| Health::default()).collect())
                .collect(),
            policy,
        }
    }

    /// A job on host `host` of `pool` failed transiently. `None` when the
    /// host is already set aside (another of its jobs failed first).
    pub fn failed(&mut self, pool: usize, host: usize) -> Option<Cooldown> {
        let policy = self.policy;
        let h = &mut self.hosts[pool][host];
        if h.down {
            return None;
        }
        h.down = true;
        h.streak += 1;
        let wait = h
            .backoff
            .get_or_insert_with(|| policy.build())
            .next()
            .unwrap_or(MAX_COOLDOWN);
        Some(Cooldown {
            wait,
            warn: h.streak == 1,
        })
    }

    /// The cool-down is over: the host takes jobs again (its streak goes
    /// on until one succeeds).
    pub fn back(&mut self, pool: usize, host: usize) {
        self.hosts[pool][host].down = false;
    }

    /// A job on the host succeeded: its streak is over.
    pub fn succeeded(&mut self, pool: usize, host: usize) {
        let h = &mut self.hosts[pool][host];
        h.streak = 0;
        h.backoff = None;
    }

    pub fn is_down(&self, pool: usize, host: usize) -> bool {
        self.hosts[pool][host].down
    }

    /// Every host of `pool` is set aside (false for a pool without hosts).
    pub fn all_down(&self, pool: usize) -> bool {
        !self.hosts[pool].is_empty() && self.hosts[pool].iter().all(|h| h.down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> HostBook {
        let policy = ExponentialBuilder::new()
            .with_min_delay(Duration::from_secs(30))
            .with_max_delay(Duration::from_secs(600))
            .without_max_times();
        HostBook::new(&[1, 2], policy)
    }

    #[test]
    fn a_failing_host_cools_longer_each_time_and_warns_once() {
        let mut b = book();
        let first = b.failed(1, 0).unwrap();
        assert_eq!(
            first,
            Cooldown {
                wait: Duration::from_secs(30),
                warn: true
            }
        );
        assert!(b.is_down(1, 0) && !b.is_down(1, 1));
        assert_eq!(
            b.failed(1, 0),
            None,
            "already set aside: no second cool-down, no warning"
        );
        b.back(1, 0);
        assert!(!b.is_down(1, 0));
        let again = b.failed(1, 0).unwrap();
        assert_eq!(
            again,
            Cooldown {
                wait: Duration::from_secs(60),
                warn: false
            }
        );
        b.back(1, 0);
        assert_eq!(b.failed(1, 0).unwrap().wait, Duration::from_secs(120));
        for _ in 0..10 {
            b.back(1, 0);
            b.failed(1, 0);
        }
        b.back(1, 0);
        assert_eq!(b.failed(1, 0).unwrap().wait, Duration::from_secs(600), "bounded");
    }

    #[test]
    fn a_success_ends_the_streak() {
        let mut b = book();
        b.failed(0, 0).unwrap();
        b.back(0, 0);
        b.succeeded(0, 0);
        let next = b.failed(0, 0).unwrap();
        assert_eq!(
            next,
            Cooldown {
                wait: Duration::from_secs(30),
                warn: true
            },
            "down again: a new warning"
        );
    }

    #[test]
    fn the_policy_scales_with_the_sim_and_jitters_upwards() {
        let mut d = cooldown_policy(0.01).build();
        let first = d.next().unwrap();
        assert!(
            first >= Duration::from_millis(300) && first <= Duration::from_millis(600),
            "{first:?}"
        );
        let mut zero = cooldown_policy(0.0).build();
        assert_eq!(zero.next(), Some(Duration::ZERO));
        let mut real = cooldown_policy(1.0).build();
        let w = real.next().unwrap();
        assert!(w >= FIRST_COOLDOWN && w <= FIRST_COOLDOWN * 2, "{w:?}");
    }
}
