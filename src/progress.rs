//! Progress on stderr, drawn from build events: a bar per pool with counts,
//! an ETA from learned durations and the latest running job's report, or
//! one line per finished job when stderr is not a terminal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::build::{BuildEvent, NodeRecord, Subscriber};
use crate::graph::Pool;

struct Bars {
    multi: MultiProgress,
    bars: HashMap<usize, ProgressBar>,
    /// Expected seconds of queued and running work, per pool.
    remaining: HashMap<usize, f64>,
    cost: HashMap<String, f64>,
    /// The latest report of a running job, per pool.
    latest: HashMap<usize, String>,
}

pub struct Progress {
    verbose: bool,
    pools: Vec<Pool>,
    bars: Option<Mutex<Bars>>,
}

impl Progress {
    pub fn new(verbose: bool, pools: &[Pool]) -> Progress {
        let bars = (verbose && crate::session::interactive()).then(|| {
            Mutex::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)),
                bars: HashMap::new(),
                remaining: HashMap::new(),
                cost: HashMap::new(),
                latest: HashMap::new(),
            })
        });
        Progress {
            verbose,
            pools: pools.to_vec(),
            bars,
        }
    }

    fn queued(&self, pool: usize, id: &str, cost: f64) {
        let Some(b) = &self.bars else { return };
        let mut b = b.lock().expect("progress bars");
        let Bars {
            multi,
            bars,
            remaining,
            cost: costs,
            ..
        } = &mut *b;
        costs.insert(id.to_string(), cost);
        let bar = bars.entry(pool).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(self.pools[pool].name.clone());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        bar.inc_length(1);
        *remaining.entry(pool).or_default() += cost;
        self.show(&mut b, pool);
    }

    /// A running job's report, shown after its pool's ETA.
    fn reported(&self, pool: usize, id: &str, fraction: Option<f64>, status: &str) {
        let Some(b) = &self.bars else { return };
        let mut b = b.lock().expect("progress bars");
        let done = fraction.map_or(String::new(), |f| format!(" {:.0}%", f * 100.0));
        b.latest.insert(pool, format!("{id}{done} {status}"));
        self.show(&mut b, pool);
    }

    fn finished(&self, pool: usize, r: &NodeRecord) {
        let (id, engine) = (&r.id, &r.engine);
        let line = match &r.error {
            None => format!("   built {id} ({engine}, {:.2}s)", r.seconds),
            // A fallback made it: built, with why.
            Some(e) if r.status == crate::build::Status::Built => {
                format!(
                    "   built {id} ({engine}, {:.2}s): {}",
                    r.seconds,
                    e.lines().next().unwrap_or("")
                )
            }
            Some(e) => format!("  FAILED {id} ({engine}): {}", e.lines().next().unwrap_or("")),
        };
        match &self.bars {
            Some(b) => {
                let mut b = b.lock().expect("progress bars");
                // Only jobs the bar counted (a lookup that panicked was not queued).
                if let Some(cost) = b.cost.remove(id) {
                    if let Some(bar) = b.bars.get(&pool) {
                        bar.inc(1);
                    }
                    let r = b.remaining.entry(pool).or_default();
                    *r = (*r - cost).max(0.0);
                    if b.latest.get(&pool).is_some_and(|l| l.starts_with(id.as_str())) {
                        b.latest.remove(&pool);
                    }
                    self.show(&mut b, pool);
                }
                if r.error.is_some() {
                    let _ = b.multi.println(line);
                }
            }
            None if self.verbose => eprintln!("{line}"),
            None => {}
        }
    }

    /// Refresh `pool`'s message: its ETA and its latest report.
    fn show(&self, b: &mut Bars, pool: usize) {
        let Some(bar) = b.bars.get(&pool) else { return };
        let eta = b.remaining.get(&pool).copied().unwrap_or(0.0) / self.pools[pool].slots.clamp(1, 64) as f64;
        match b.latest.get(&pool) {
            Some(latest) => bar.set_message(format!("ETA {} · {latest}", human(eta))),
            None => bar.set_message(format!("ETA {}", human(eta))),
        }
    }

    fn clear(&self) {
        if let Some(b) = &self.bars {
            let b = b.lock().expect("progress bars");
            for bar in b.bars.values() {
                bar.finish_and_clear();
            }
            let _ = b.multi.clear();
        }
    }
}

impl Subscriber for Progress {
    fn on_event(&self, event: &BuildEvent) {
        match event {
            BuildEvent::NodeQueued {
                id,
                pool,
                expected_seconds,
                ..
            } => self.queued(*pool, id, *expected_seconds),
            BuildEvent::NodeProgress {
                id,
                pool,
                fraction,
                status,
                ..
            } => self.reported(*pool, id, *fraction, status),
            BuildEvent::NodeFinished { pool, record, .. } => self.finished(*pool, record),
            BuildEvent::BuildFinished { .. } => self.clear(),
            _ => {}
        }
    }
}

/// `75` → `1m15s`.
pub fn human(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
