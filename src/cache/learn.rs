//! Expected job durations, learned from earlier builds.
//!
//! Per engine, the ratio of measured seconds to the engine table's estimate,
//! as an exponentially weighted mean. Priorities and ETAs use
//! `estimate × ratio`.

use std::collections::BTreeMap;
use std::io;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use super::atomic::{load_json, save_json};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Ratio {
    mean: f64,
    samples: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Durations {
    ratios: BTreeMap<String, Ratio>,
    #[serde(skip)]
    dirty: bool,
}

impl Durations {
    pub fn load(path: &Utf8Path) -> Durations {
        load_json(path)
    }

    /// Write the durations if a job taught something new.
    pub fn save(&mut self, path: &Utf8Path) -> io::Result<()> {
        if self.dirty {
            save_json(path, self)?;
            self.dirty = false;
        }
        Ok(())
    }

    /// The learned ratio for `engine` (1.0, or `default` when never measured).
    pub fn ratio(&self, engine: &str, default: f64) -> f64 {
        self.ratios.get(engine).map_or(default, |r| r.mean)
    }

    /// Record that a job estimated at `estimate` seconds took `actual`.
    pub fn record(&mut self, engine: &str, estimate: f64, actual: f64) {
        if estimate <= 0.0 || !actual.is_finite() {
            return;
        }
        let sample = actual / estimate;
        let r = self.ratios.entry(engine.to_string()).or_insert(Ratio {
            mean: sample,
            samples: 0,
        });
        let weight = 1.0 / f64::from(r.samples.min(9) + 1);
        r.mean += (sample - r.mean) * weight;
        r.samples += 1;
        self.dirty = true;
    }
}
