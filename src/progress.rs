//! Progress on stderr: a bar per pool with counts and an ETA from learned
//! durations, or one line per finished job when stderr is not a terminal.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::graph::Pool;

struct Bars {
    multi: MultiProgress,
    bars: HashMap<usize, ProgressBar>,
    /// Expected seconds of queued and running work, per pool.
    remaining: HashMap<usize, f64>,
    cost: HashMap<String, f64>,
}

pub struct Progress {
    verbose: bool,
    pools: Vec<Pool>,
    bars: Option<RefCell<Bars>>,
    cached: RefCell<(usize, usize)>,
}

impl Progress {
    pub fn new(verbose: bool, pools: &[Pool]) -> Progress {
        let bars = (verbose && crate::session::interactive()).then(|| {
            RefCell::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)),
                bars: HashMap::new(),
                remaining: HashMap::new(),
                cost: HashMap::new(),
            })
        });
        Progress {
            verbose,
            pools: pools.to_vec(),
            bars,
            cached: RefCell::new((0, 0)),
        }
    }

    pub fn queued(&self, pool: usize, id: &str, cost: f64) {
        let Some(b) = &self.bars else { return };
        let mut b = b.borrow_mut();
        let Bars {
            multi,
            bars,
            remaining,
            cost: costs,
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
        let eta = remaining[&pool] / self.pools[pool].slots.min(64) as f64;
        bar.set_message(format!("ETA {}", human(eta)));
    }

    pub fn started(&self, _pool: usize, _id: &str) {}

    pub fn finished(&self, pool: usize, id: &str, seconds: f64, engine: &str, error: Option<&str>) {
        let line = match error {
            None => format!("   built {id} ({engine}, {seconds:.2}s)"),
            Some(e) => format!("  FAILED {id} ({engine}): {}", e.lines().next().unwrap_or("")),
        };
        match &self.bars {
            Some(b) => {
                let mut b = b.borrow_mut();
                let Bars {
                    multi,
                    bars,
                    remaining,
                    cost,
                } = &mut *b;
                if let Some(bar) = bars.get(&pool) {
                    bar.inc(1);
                    let r = remaining.entry(pool).or_default();
                    *r = (*r - cost.remove(id).unwrap_or(seconds)).max(0.0);
                    let eta = *r / self.pools[pool].slots.min(64) as f64;
                    bar.set_message(format!("ETA {}", human(eta)));
                }
                if error.is_some() {
                    let _ = multi.println(line);
                }
            }
            None if self.verbose => eprintln!("{line}"),
            None => {}
        }
    }

    pub fn cached(&self, cutoff: bool) {
        let mut c = self.cached.borrow_mut();
        if cutoff { c.1 += 1 } else { c.0 += 1 }
    }

    pub fn clear(&self) {
        if let Some(b) = &self.bars {
            let b = b.borrow();
            for bar in b.bars.values() {
                bar.finish_and_clear();
            }
            let _ = b.multi.clear();
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
