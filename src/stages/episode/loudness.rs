//! Loudness: two-pass linear loudnorm to the target, checked by ebur128.

use super::*;

/// Below this integrated loudness the audio is silence: nothing to normalize.
pub(super) const SILENCE_LUFS: f64 = -70.0;

/// The loudness target: integrated LUFS and true peak dBTP.
pub(super) struct Target {
    pub(super) i: f64,
    pub(super) tp: f64,
}

/// What a loudnorm measuring pass reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Measured {
    pub(super) i: f64,
    pub(super) tp: f64,
    pub(super) lra: f64,
    pub(super) thresh: f64,
    pub(super) offset: f64,
}

impl Target {
    pub(super) fn gain(&self, m: &Measured) -> f64 {
        self.i - m.i
    }

    /// loudnorm stays linear only if the gained true peak fits under the
    /// target and the measured range fits under the LRA it is given.
    pub(super) fn linear_ok(&self, m: &Measured) -> bool {
        m.tp + self.gain(m) <= self.tp && m.lra <= lra_target(m)
    }

    /// A look-ahead limiter that keeps the peaks `margin` dB under what a
    /// linear gain allows. `level=0` keeps it from auto-gaining; `latency=1`
    /// keeps the length exact.
    pub(super) fn limiter(&self, m: &Measured, margin: f64) -> String {
        let db = self.tp - self.gain(m) - margin;
        let limit = 10f64.powf(db / 20.0).clamp(0.0625, 1.0);
        format!("alimiter=limit={limit:.4}:attack=5:release=50:level=0:latency=1")
    }

    pub(super) fn measure_filter(&self) -> String {
        format!("loudnorm=I={}:TP={}:LRA=11:print_format=json", self.i, self.tp)
    }

    /// The applying pass. loudnorm treats a measured LRA of exactly 0, a
    /// threshold of exactly -70 and an I of exactly 0 as "not measured" and
    /// then goes dynamic; a steady mix (LRA 0.00) must still stay linear, so
    /// those values are nudged by 0.01 (LRA and threshold play no other part
    /// in linear mode).
    pub(super) fn apply_filter(&self, m: &Measured) -> String {
        let nudge = |v: f64, sentinel: f64, by: f64| if v == sentinel { v + by } else { v };
        format!(
            "loudnorm=I={}:TP={}:LRA={}:measured_I={}:measured_TP={}:measured_LRA={}:measured_thresh={}:offset={}:linear=true:print_format=json",
            self.i,
            self.tp,
            lra_target(m),
            nudge(m.i, 0.0, -0.01),
            m.tp,
            m.lra.max(0.01),
            nudge(m.thresh, -70.0, 0.01),
            m.offset
        )
    }
}

/// An LRA target the measured range cannot exceed (ffmpeg 5.1's default of 7
/// would force dynamic mode on a wide mix).
pub(super) fn lra_target(m: &Measured) -> f64 {
    (m.lra + 1.0).ceil().clamp(11.0, 50.0)
}

/// The JSON loudnorm prints last on stderr.
pub(super) fn loudnorm_json(stderr: &str) -> Result<Value, String> {
    let (Some(open), Some(close)) = (stderr.rfind('{'), stderr.rfind('}')) else {
        return Err("loudnorm printed no measurements".into());
    };
    if close < open {
        return Err("loudnorm printed no measurements".into());
    }
    serde_json::from_str(&stderr[open..=close]).map_err(|e| format!("loudnorm printed unreadable JSON: {e}"))
}

pub(super) fn parse_measured(stderr: &str) -> Result<Measured, String> {
    let json = loudnorm_json(stderr)?;
    let field = |key: &str| -> Result<f64, String> {
        num(&json, key).ok_or_else(|| format!("loudnorm's measurements lack `{key}`"))
    };
    Ok(Measured {
        i: field("input_i")?,
        tp: field("input_tp")?,
        lra: field("input_lra")?,
        thresh: field("input_thresh")?,
        offset: field("target_offset")?,
    })
}

/// `ffmpeg` at log level info: loudnorm prints its JSON there.
pub(super) fn ffmpeg_measuring(job: &Job) -> Result<Cmd, ExecError> {
    let path = tool(job, Tool::Ffmpeg)?;
    Ok(Cmd::new(path.as_str()).args(["-hide_banner", "-nostdin", "-nostats", "-y", "-filter_threads", "2"]))
}

/// A loudnorm measuring pass, after the limiter `pre` when there is one.
pub(super) async fn measure(
    job: &Job,
    raw: &Utf8Path,
    pre: Option<&str>,
    target: &Target,
    cancel: &CancellationToken,
) -> Result<Measured, ExecError> {
    let chain = match pre {
        Some(pre) => format!("{pre},{}", target.measure_filter()),
        None => target.measure_filter(),
    };
    let cmd = ffmpeg_measuring(job)?
        .arg("-i")
        .arg(raw.as_str())
        .args(["-af", &chain, "-f", "null", "-"]);
    let out = exec(job, &cmd, cancel).await?;
    parse_measured(&String::from_utf8_lossy(&out.stderr)).map_err(permanent)
}

/// How the applying pass runs: an optional limiter, then loudnorm with these
/// measurements (none for silence, which is left as it is).
pub(super) struct Plan {
    pub(super) pre: Option<String>,
    pub(super) measured: Option<Measured>,
}

/// What earlier encodes taught: dB of true peak to keep spare, and how far
/// loudnorm's integrated reading sits below the delivery meter's (ebur128;
/// they differ by up to a LU on short or uneven mixes).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Lessons {
    pub(super) headroom: f64,
    pub(super) correction: f64,
}

/// Measure; while linear mode (with the learnt headroom to spare) is out of
/// reach, put a limiter in front and measure again.
pub(super) async fn plan(
    job: &Job,
    raw: &Utf8Path,
    target: &Target,
    lessons: Lessons,
    cancel: &CancellationToken,
) -> Result<Plan, ExecError> {
    let measured = measure(job, raw, None, target, cancel).await?;
    if !measured.i.is_finite() || measured.i < SILENCE_LUFS {
        return Ok(Plan {
            pre: None,
            measured: None,
        });
    }
    let corrected = |m: Measured| Measured {
        i: m.i + lessons.correction,
        ..m
    };
    let mut m = corrected(measured);
    let spared = Target {
        i: target.i,
        tp: target.tp - lessons.headroom,
    };
    let mut pre = None;
    for extra in [0.0, 0.5, 1.0, 1.5] {
        if spared.linear_ok(&m) {
            break;
        }
        let limiter = spared.limiter(&m, 0.5 + extra);
        m = corrected(measure(job, raw, Some(&limiter), target, cancel).await?);
        pre = Some(limiter);
    }
    if !spared.linear_ok(&m) {
        return Err(permanent(format!(
            "loudnorm cannot stay linear: {:.2} LUFS with a true peak of {:.2} dBTP cannot reach {} LUFS under {:.2} dBTP even after limiting",
            m.i, m.tp, target.i, spared.tp
        )));
    }
    Ok(Plan { pre, measured: Some(m) })
}

/// The applying pass: limiter, linear loudnorm, back to 48 kHz, exactly
/// `samples` long, AAC 192k stereo.
pub(super) async fn encode(
    job: &Job,
    raw: &Utf8Path,
    samples: u64,
    target: &Target,
    plan: &Plan,
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let mut chain: Vec<String> = plan.pre.iter().cloned().collect();
    if let Some(m) = &plan.measured {
        chain.push(target.apply_filter(m));
    }
    chain.push(format!(
        "aresample={},apad=whole_len={samples},atrim=end_sample={samples}",
        timing::RATE
    ));
    let cmd = ffmpeg_measuring(job)?
        .arg("-i")
        .arg(raw.as_str())
        .arg("-af")
        .arg(chain.join(","))
        .args([
            "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2", "-threads", "2",
        ])
        .args(["-fflags", "+bitexact"])
        .arg(out.as_str());
    let done = exec(job, &cmd, cancel).await?;
    produced(out, "ffmpeg")?;
    if plan.measured.is_some() {
        check_linear(&String::from_utf8_lossy(&done.stderr)).map_err(permanent)?;
    }
    Ok(())
}

/// What the delivery meter (ebur128) reads: integrated LUFS, true peak dBTP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Meter {
    pub(super) i: f64,
    pub(super) peak: f64,
}

/// The summary ebur128 prints last: `I: … LUFS` and, under `True peak:`, `Peak: … dBFS`.
pub(super) fn parse_meter(stderr: &str) -> Option<Meter> {
    let summary = &stderr[stderr.rfind("Summary:")?..];
    let value = |key: &str| -> Option<f64> {
        let after = &summary[summary.find(key)? + key.len()..];
        after.split_whitespace().next()?.parse().ok()
    };
    Some(Meter {
        i: value("I:")?,
        peak: value("Peak:")?,
    })
}

pub(super) async fn meter(job: &Job, path: &Utf8Path, cancel: &CancellationToken) -> Result<Meter, ExecError> {
    let cmd = ffmpeg_measuring(job)?.arg("-i").arg(path.as_str()).args([
        "-af",
        "ebur128=peak=true:framelog=verbose",
        "-f",
        "null",
        "-",
    ]);
    let out = exec(job, &cmd, cancel).await?;
    parse_meter(&String::from_utf8_lossy(&out.stderr))
        .ok_or_else(|| permanent("ebur128 printed no summary for the episode audio"))
}

/// Normalize to the target loudness linearly and encode, then meter the
/// encoded audio as the delivery check does. AAC overshoots, loudnorm's peak
/// meter reads sharp clicks low and its integrated reading can sit a LU off
/// ebur128's: when the true peak is over `max_true_peak_dbtp` or the loudness
/// more than half a LU off, limit harder or correct the gain and redo.
pub(super) async fn normalize(
    job: &Job,
    raw: &Utf8Path,
    samples: u64,
    target: &Target,
    out: &Utf8Path,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let ceiling = param_f64(job, "max_true_peak_dbtp", -1.0);
    let mut lessons = Lessons::default();
    let mut last = None;
    for round in 0..3 {
        let plan = plan(job, raw, target, lessons, cancel).await?;
        encode(job, raw, samples, target, &plan, out, cancel).await?;
        if plan.measured.is_none() {
            return Ok(()); // silence
        }
        let got = meter(job, out, cancel).await?;
        let off = got.i - target.i;
        let peak_ok = got.peak <= ceiling;
        if peak_ok && (off.abs() <= 0.5 || (round == 2 && off.abs() <= 1.0)) {
            return Ok(());
        }
        if !peak_ok {
            lessons.headroom += got.peak - ceiling + 0.5;
        }
        if off.abs() > 0.5 {
            lessons.correction += off;
        }
        last = Some(got);
    }
    let got = last.unwrap_or(Meter {
        i: f64::NAN,
        peak: f64::NAN,
    });
    Err(permanent(format!(
        "the episode audio measures {:.1} LUFS with a true peak of {:.1} dBTP after three tries (target {} LUFS, peaks at most {ceiling} dBTP)",
        got.i, got.peak, target.i
    )))
}

/// The applying pass must report `"normalization_type" : "linear"`.
pub(super) fn check_linear(stderr: &str) -> Result<(), String> {
    let json = loudnorm_json(stderr)?;
    match json.get("normalization_type").and_then(Value::as_str) {
        Some("linear") => Ok(()),
        other => Err(format!(
            "loudnorm normalized in {} mode instead of linear",
            other.unwrap_or("an unknown")
        )),
    }
}
