//! The page's HTML, rendered from the project as it is on disk: every text
//! from the project is escaped, every colour checked before it reaches CSS.

use std::collections::HashMap;
use std::fmt::Write;

use crate::exec::runner::{Cmd, run_sync};
use crate::graph::explain::Reason;
use crate::kind::NodeKind;
use crate::project::model::{Episode, Project};
use crate::review::Verdict;
use crate::session::Session;
use crate::stages::publish::Layout;
use camino::Utf8Path;

/// `s` safe inside HTML text and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A colour CSS may get: `#rgb`/`#rrggbb` or a plain name, else none.
fn css_colour(s: &str) -> Option<&str> {
    let s = s.trim();
    let hex = s
        .strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.chars().all(|c| c.is_ascii_hexdigit()));
    let name = !s.is_empty() && s.len() <= 30 && s.chars().all(|c| c.is_ascii_alphabetic());
    (hex || name).then_some(s)
}

fn swatch(colour: &str) -> String {
    match css_colour(colour) {
        Some(c) => format!("<span class=\"swatch\" style=\"background:{c}\"></span>"),
        None => String::new(),
    }
}

const TABS: [(&str, &str); 6] = [
    ("story", "Story"),
    ("cast", "Cast"),
    ("script", "Script"),
    ("produce", "Produce"),
    ("review", "Review"),
    ("publish", "Publish"),
];

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · studio</title><link rel=\"stylesheet\" href=\"/app.css\"></head><body>\n",
        esc(title)
    )
}

/// The page when the project has mistakes: the diagnostic, and the live feed.
pub fn broken(diagnostic: &str) -> String {
    let mut h = head("studio");
    let _ = writeln!(
        h,
        "<header><h1>studio</h1></header><main><section class=\"tab active\">\
         <h2>The project has mistakes</h2><p>Fix them and save; this page shows the project again on reload.</p>\
         <pre class=\"diag\">{}</pre></section></main></body></html>",
        esc(diagnostic)
    );
    h
}

/// Whether the library holds this build of the episode: its MP4 where the
/// publish node's layout puts it, with the size of the built one.
fn in_library(session: &Session, ep: &Episode, library: Option<&Utf8Path>) -> Option<bool> {
    let library = library?;
    let state = &session.state;
    let layout = state
        .node(&format!("publish:{}", ep.id))?
        .outputs
        .iter()
        .find(|o| o.suffix == "json")?;
    let mp4 = state
        .node(&format!("episode:{}", ep.id))?
        .outputs
        .iter()
        .find(|o| o.suffix == "mp4")?;
    let layout: Layout = serde_json::from_slice(&std::fs::read(session.cache.object_path(&layout.hash)).ok()?).ok()?;
    let placed = std::fs::metadata(library.join(layout.episode_file(".mp4"))).ok()?;
    Some(placed.len() == mp4.size)
}

/// What an episode is now: not written, written, stale, built, or
/// published (this build is in the library the studio publishes to).
fn episode_state(
    session: &Session,
    plan: &HashMap<usize, Reason>,
    ep: &Episode,
    library: Option<&Utf8Path>,
) -> &'static str {
    if ep.screenplay.is_none() {
        return "not written";
    }
    let fresh = |id: &str| {
        let n = session.graph.nodes.iter().position(|n| n.id == id);
        n.and_then(|n| plan.get(&n)).map(|r| *r == Reason::Fresh)
    };
    let on_record = session.state.node(&format!("episode:{}", ep.id)).is_some();
    match fresh(&format!("episode:{}", ep.id)) {
        Some(true) if in_library(session, ep, library) == Some(true) => "published",
        Some(true) => "built",
        _ if on_record => "stale",
        _ => "written",
    }
}

/// An output of a node on record: its `/object/…` URL.
fn output_url(session: &Session, node: &str, suffix: &str) -> Option<String> {
    let s = session.state.node(node)?;
    let o = s.outputs.iter().find(|o| o.suffix == suffix)?;
    Some(format!("/object/{}/{}", o.hash, o.suffix))
}

/// The whole page; `ep` picks the episode of Script and Publish.
pub fn page(session: &Session, ep: Option<&str>, publish_to: Option<&Utf8Path>) -> String {
    let p = &session.project;
    let roots: Vec<usize> = session
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.kind, NodeKind::Episode | NodeKind::Publish))
        .map(|(i, _)| i)
        .collect();
    let plan: HashMap<usize, Reason> = session.plan(&session.graph.closure(&roots)).into_iter().collect();
    let chosen = ep
        .and_then(|id| p.episode(id))
        .or_else(|| p.episodes.iter().find(|e| e.screenplay.is_some()));
    let mut h = head(&p.meta.name);
    let _ = write!(
        h,
        "<header><h1>{}</h1><span class=\"profile\">profile {}</span><nav>",
        esc(&p.meta.name),
        esc(&p.profile.name)
    );
    for (id, name) in TABS {
        let _ = write!(h, "<a href=\"#{id}\" data-tab=\"{id}\">{name}</a>");
    }
    h.push_str("</nav><span id=\"build-state\"></span></header>\n<main>\n");
    story(&mut h, session, &plan, publish_to);
    cast(&mut h, session);
    script(&mut h, p, chosen);
    produce(&mut h);
    review(&mut h, session);
    publish(&mut h, session, &plan, chosen, publish_to);
    h.push_str("</main>\n<script src=\"/app.js\"></script>\n</body></html>\n");
    h
}

fn story(h: &mut String, session: &Session, plan: &HashMap<usize, Reason>, library: Option<&Utf8Path>) {
    let p = &session.project;
    let _ = write!(
        h,
        "<section id=\"story\" class=\"tab\"><h2>Story</h2>\
         <p class=\"premise\">{}</p><dl><dt>Genre</dt><dd>{}</dd>",
        esc(&p.meta.premise),
        esc(&p.meta.genre)
    );
    let s = &p.storyline;
    for (label, value) in [("Storyline", &s.summary), ("Tone", &s.tone)] {
        if !value.is_empty() {
            let _ = write!(h, "<dt>{label}</dt><dd>{}</dd>", esc(value));
        }
    }
    if !s.themes.is_empty() {
        let _ = write!(h, "<dt>Themes</dt><dd>{}</dd>", esc(&s.themes.join(", ")));
    }
    h.push_str("</dl>");
    if !s.arcs.is_empty() {
        h.push_str("<h3>Arcs</h3><dl>");
        for (name, text) in &s.arcs {
            let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(text));
        }
        h.push_str("</dl>");
    }
    let w = &p.world;
    let world = [&w.art_style, &w.location, &w.cinematography]
        .iter()
        .any(|v| !v.is_empty());
    if world || !w.color_palette.is_empty() {
        h.push_str("<h3>World</h3>");
    }
    h.push_str("<dl>");
    for (label, value) in [
        ("Art style", &w.art_style),
        ("Location", &w.location),
        ("Cinematography", &w.cinematography),
    ] {
        if !value.is_empty() {
            let _ = write!(h, "<dt>{label}</dt><dd>{}</dd>", esc(value));
        }
    }
    if !w.color_palette.is_empty() {
        h.push_str("<dt>Palette</dt><dd class=\"palette\">");
        for c in &w.color_palette {
            let _ = write!(h, "<span class=\"colour\">{}{}</span>", swatch(c), esc(c));
        }
        h.push_str("</dd>");
    }
    h.push_str("</dl><h3>Episodes</h3><table class=\"episodes\"><tr><th>#</th><th>Episode</th><th>Synopsis</th><th>State</th><th></th></tr>");
    for e in &p.episodes {
        let state = episode_state(session, plan, e, library);
        let action = if e.screenplay.is_none() {
            format!(
                "<button class=\"write\" data-post=\"/api/write/{0}\">Write</button> <span class=\"result\"></span>",
                esc(&e.id)
            )
        } else {
            format!("<a href=\"?ep={0}#script\">script</a>", esc(&e.id))
        };
        let _ = write!(
            h,
            "<tr data-episode=\"{id}\"><td>{}</td><td><b>{}</b> <span class=\"id\">{id}</span></td><td>{}</td>\
             <td><span class=\"state {cls}\">{state}</span></td><td>{action}</td></tr>",
            e.number,
            esc(&e.title),
            esc(&e.synopsis),
            id = esc(&e.id),
            cls = state.replace(' ', "-"),
        );
    }
    h.push_str("</table><p><button class=\"build\" data-post=\"/api/build\">Build</button> <span class=\"result\"></span></p></section>\n");
}

fn cast(h: &mut String, session: &Session) {
    h.push_str("<section id=\"cast\" class=\"tab\"><h2>Cast</h2><div class=\"cards\">");
    for c in &session.project.characters {
        let _ = write!(
            h,
            "<article class=\"character\" data-character=\"{id}\"><h3>{sw}<span class=\"name\">{}</span> <span class=\"id\">{id}</span></h3>",
            esc(&c.name),
            id = esc(&c.id),
            sw = swatch(&c.color),
        );
        // The animatic's character card (`png`), or the review loop's
        // approved pool (`<hash12>.png`, one per approved image).
        let images: Vec<String> = (session.state.node(&format!("character_refs:{}", c.id)))
            .map(|s| {
                (s.outputs.iter())
                    .filter(|o| o.suffix.as_str() == "png" || o.suffix.as_str().ends_with(".png"))
                    .map(|o| format!("/object/{}/png", o.hash))
                    .collect()
            })
            .unwrap_or_default();
        match images.as_slice() {
            [] => h.push_str("<p class=\"muted\">No character art built yet.</p>"),
            [one] => {
                let _ = write!(h, "<img class=\"card\" src=\"{one}\" alt=\"{}\">", esc(&c.name));
            }
            many => {
                let _ = write!(
                    h,
                    "<p class=\"muted\">The approved pool: {} images</p><div class=\"pool-images\">",
                    many.len()
                );
                for url in many {
                    let _ = write!(
                        h,
                        "<img class=\"approved\" src=\"{url}\" alt=\"{}\" loading=\"lazy\">",
                        esc(&c.name)
                    );
                }
                h.push_str("</div>");
            }
        }
        let _ = write!(
            h,
            "<dl><dt>Design prompt</dt><dd>{}</dd><dt>Colour</dt><dd>{}</dd>",
            esc(&c.design_prompt),
            esc(&c.color)
        );
        for (k, v) in &c.appearance {
            let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
        }
        if let Some(engines) = &c.voice.engines {
            let names: Vec<&str> = engines.iter().map(|e| e.value.as_str()).collect();
            let _ = write!(h, "<dt>Voices</dt><dd>{}</dd>", esc(&names.join(" → ")));
        }
        if let Some(v) = &c.voice.espeak {
            let _ = write!(h, "<dt>Voice (espeak)</dt><dd>{}</dd>", esc(&v.value));
        }
        h.push_str("</dl>");
        // The voice sample node (`voice_line:cast/<id>`), as it was last built.
        let sample = format!("voice_line:cast/{}", c.id);
        match output_url(session, &sample, "wav") {
            Some(url) => {
                let _ = write!(
                    h,
                    "<figure class=\"voice-sample\"><audio controls preload=\"none\" src=\"{url}\"></audio>\
                     <figcaption>“{}”{}</figcaption></figure>",
                    esc(&crate::graph::build::sample_text(&c.name)),
                    match session.state.node(&sample).and_then(|s| s.provisional.as_ref()) {
                        Some(why) => format!(
                            " <span class=\"muted\" title=\"{}\">(a fallback voice)</span>",
                            esc(why)
                        ),
                        None => String::new(),
                    }
                );
            }
            None => h.push_str("<p class=\"muted\">No voice sample built yet.</p>"),
        }
        h.push_str("</article>");
    }
    h.push_str("</div></section>\n");
}

fn script(h: &mut String, p: &Project, ep: Option<&Episode>) {
    h.push_str("<section id=\"script\" class=\"tab\"><h2>Script</h2>");
    let writer = p.profile.writer.is_some() || p.writing.executor.is_some();
    let Some(ep) = ep.filter(|e| e.screenplay.is_some()) else {
        h.push_str(
            "<p>No episode has a screenplay yet: write one with <code>studio write EPISODE</code>.</p></section>\n",
        );
        return;
    };
    let sp = ep.screenplay.as_ref().expect("filtered");
    h.push_str("<p class=\"episodes-nav\">");
    for e in p.episodes.iter().filter(|e| e.screenplay.is_some()) {
        let cls = if e.id == ep.id { " class=\"current\"" } else { "" };
        let _ = write!(h, "<a{cls} href=\"?ep={0}#script\">{0}</a> ", esc(&e.id));
    }
    let _ = write!(
        h,
        "· <a class=\"export\" href=\"/export/{0}.fountain\">Export Fountain</a></p>\
         <pre class=\"diag\" hidden></pre>\
         <div class=\"screenplay\" data-episode=\"{0}\"><h3 class=\"title\">{1}</h3>",
        esc(&ep.id),
        esc(&ep.title)
    );
    for s in &sp.scenes {
        let _ = write!(
            h,
            "<div class=\"scene\" data-scene=\"{id}\"><h4 class=\"slug\">{id} · {} — {}<span class=\"mood\">{}</span>{}</h4>",
            esc(&s.location.to_uppercase()),
            esc(&s.time_of_day.as_str().replace('_', " ").to_uppercase()),
            esc(s.mood.as_str()),
            rewrite_button(writer, "Rewrite the scene's dialogue"),
            id = esc(&s.id),
        );
        if !s.title.is_empty() {
            let _ = write!(h, "<p class=\"scene-title\">{}</p>", esc(&s.title));
        }
        for sh in &s.shots {
            let who: Vec<String> = sh
                .characters
                .iter()
                .map(|c| format!("{} ({})", esc(&c.id), esc(c.position.as_str())))
                .collect();
            let _ = write!(
                h,
                "<div class=\"shot\" data-scene=\"{sc}\" data-shot=\"{id}\"><p class=\"shot-head\">{id} · {} · {} angle · {} s{}{}</p>\
                 <p class=\"action\" contenteditable=\"true\" data-field=\"action\">{}</p>",
                esc(&sh.shot_type.as_str().replace('_', " ").to_uppercase()),
                esc(&sh.angle.as_str().replace('_', " ")),
                sh.duration,
                if who.is_empty() {
                    String::new()
                } else {
                    format!(" · {}", who.join(", "))
                },
                if sh.motion.is_empty() {
                    String::new()
                } else {
                    format!(" · <i>{}</i>", esc(&sh.motion))
                },
                esc(&sh.action),
                sc = esc(&s.id),
                id = esc(&sh.id),
            );
            for (i, l) in sh.dialogue.iter().enumerate() {
                let c = &p.characters[l.speaker];
                let colour = css_colour(&c.color)
                    .map(|c| format!(" style=\"color:{c}\""))
                    .unwrap_or_default();
                let _ = write!(
                    h,
                    "<div class=\"line\"><p class=\"speaker\"{colour}>{}</p>\
                     <p class=\"text\" contenteditable=\"true\" data-field=\"line\" data-index=\"{i}\">{}</p></div>",
                    esc(&c.name.to_uppercase()),
                    esc(&l.text)
                );
            }
            if !sh.dialogue.is_empty() {
                h.push_str(&rewrite_button(writer, "Rewrite this dialogue"));
            }
            h.push_str("</div>");
        }
        h.push_str("</div>");
    }
    let how = if writer {
        " A Rewrite button asks the LLM for new dialogue (<code>studio write --dialogue</code>): the rest of the file stays as it is."
    } else {
        " Rewriting dialogue with the LLM needs an LLM executor in studio.yaml (<code>writing: {executor: ...}</code>)."
    };
    let _ = writeln!(
        h,
        "</div><p class=\"muted\">Click a line or an action to edit it; Enter saves, Esc undoes.{how}</p></section>"
    );
}

/// The Script tab's button that rewrites the dialogue of its shot or scene
/// with the LLM; none when the project has no LLM to write with.
fn rewrite_button(writer: bool, label: &str) -> String {
    if writer {
        format!(
            "<span class=\"rewrite\"><button class=\"rewrite\">{label}</button> <span class=\"result\"></span></span>"
        )
    } else {
        String::new()
    }
}

fn produce(h: &mut String) {
    h.push_str(
        "<section id=\"produce\" class=\"tab\"><h2>Produce</h2>\
         <p><button class=\"build\" data-post=\"/api/build\">Start build</button> \
         <button class=\"cancel\" data-post=\"/api/cancel\">Cancel build</button> <span class=\"result\"></span></p>\
         <p id=\"produce-summary\" class=\"muted\">Waiting for the build's events…</p>\
         <div id=\"pools\"></div><div class=\"produce-grid\"><div id=\"nodes\"></div>\
         <aside id=\"why\" hidden><h3></h3><pre></pre><div class=\"outputs\"></div></aside></div></section>\n",
    );
}

fn review(h: &mut String, session: &Session) {
    h.push_str("<section id=\"review\" class=\"tab\"><h2>Review</h2>");
    let rules = match crate::graph::review::LoopRules::of(&session.project) {
        Ok(Some(r)) => r,
        Ok(None) => {
            h.push_str(
                "<p class=\"empty\">This profile has no review loop (no <code>candidate</code> and \
                 <code>review</code> rules): its character cards need no review. The <code>full</code> \
                 profile (or <code>sim</code>) generates candidates, scores them with a vision model and \
                 brings the undecided ones here.</p></section>\n",
            );
            return;
        }
        Err(d) => {
            let _ = write!(h, "<pre class=\"diag\">{}</pre></section>", esc(&super::plain_all(d)));
            return;
        }
    };
    let cands = session.candidates(None);
    let t = rules.thresholds;
    let _ = write!(
        h,
        "<p class=\"muted\">A vision model scores each candidate; the weakest of its three scores decides: \
         {:.2} or more approves, under {:.2} rejects, and you decide the band between. A decision is written \
         to <code>approvals.yaml</code> (as <code>studio review approve|reject</code> does) and the build \
         that follows shows in Produce; a rejection's category adds its negative terms to the next round.</p>\
         <pre class=\"diag\" hidden></pre>",
        t.approve_at, t.reject_below
    );
    for c in &session.project.characters {
        let mine: Vec<_> = cands.iter().filter(|k| k.character == c.id).collect();
        let count = |v: Verdict| mine.iter().filter(|k| k.verdict == Some(v)).count();
        let _ = write!(
            h,
            "<div class=\"review-character\" data-character=\"{id}\"><h3>{sw}{} <span class=\"id\">{id}</span></h3>\
             <p class=\"counts\">{} approved of {} wanted · {} pending · {} rejected · {} candidates</p><div class=\"candidates\">",
            esc(&c.name),
            count(Verdict::Approved),
            rules.pool_target,
            count(Verdict::Pending),
            count(Verdict::Rejected),
            mine.len(),
            id = esc(&c.id),
            sw = swatch(&c.color),
        );
        let pending: Vec<_> = mine.iter().filter(|k| k.verdict == Some(Verdict::Pending)).collect();
        if pending.is_empty() {
            h.push_str("<p class=\"muted\">Nothing waits for you here.</p>");
        }
        for k in pending {
            candidate(h, k, &rules);
        }
        h.push_str("</div></div>");
    }
    h.push_str("</section>\n");
}

/// One candidate waiting for a person: the image, its scores, and the
/// buttons that approve it or reject it for a category.
fn candidate(h: &mut String, k: &crate::session::Candidate, rules: &crate::graph::review::LoopRules) {
    let short = &k.image[..k.image.len().min(12)];
    let _ = write!(
        h,
        "<article class=\"candidate\" data-hash=\"{hash}\"><img src=\"/object/{hash}/png\" alt=\"candidate {short}\" loading=\"lazy\">\
         <p class=\"hash\"><code>{short}</code> · round {} #{}</p>",
        k.round,
        k.index + 1,
        hash = esc(&k.image),
    );
    if let Some(r) = &k.review
        && r.scores.is_none()
    {
        let why = r.unscored.as_deref().unwrap_or_default();
        let _ = write!(h, "<p class=\"scores\">no score · {}</p>", esc(why));
    }
    if let Some(s) = k.review.as_ref().and_then(|r| r.scores.as_ref()) {
        let _ = write!(
            h,
            "<p class=\"scores\">match {:.2} · clarity {:.2} · training {:.2} · {}</p>",
            s.character_match,
            s.clarity,
            s.training_value,
            s.framing.as_str().replace('_', " ")
        );
        if !s.rejection_categories.is_empty() {
            let _ = write!(
                h,
                "<p class=\"categories\">{}</p>",
                esc(&s.rejection_categories.join(", "))
            );
        }
        if !s.notes.is_empty() {
            let _ = write!(h, "<p class=\"notes\">{}</p>", esc(&s.notes));
        }
    }
    h.push_str("<p class=\"decide\"><button class=\"review-approve\">Approve</button> <select class=\"category\">");
    for name in rules.categories.keys() {
        let _ = write!(h, "<option value=\"{0}\">{0}</option>", esc(name));
    }
    h.push_str(
        "</select> <button class=\"review-reject cancel\">Reject</button> <span class=\"result\"></span></p></article>",
    );
}

/// Chapters of an MP4 (`ffprobe`): start seconds and titles.
fn chapters(path: &Utf8Path) -> Vec<(f64, String)> {
    let cmd = Cmd::new("ffprobe")
        .args(["-v", "error", "-show_chapters", "-of", "json"])
        .arg(path.as_str());
    let Some(text) = run_sync(&cmd) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["chapters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let start = c["start_time"]
                        .as_str()?
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite())?;
                    let title = c["tags"]["title"].as_str().unwrap_or("").chars().take(200).collect();
                    Some((start, title))
                })
                .take(500)
                .collect()
        })
        .unwrap_or_default()
}

/// A subtitle track's label: the language's English name from its code.
fn language_name(code: &str) -> String {
    isolang::Language::from_639_1(code).map_or_else(|| code.to_string(), |l| l.to_name().to_string())
}

fn publish(
    h: &mut String,
    session: &Session,
    plan: &HashMap<usize, Reason>,
    chosen: Option<&Episode>,
    publish_to: Option<&Utf8Path>,
) {
    let p = &session.project;
    h.push_str("<section id=\"publish\" class=\"tab\"><h2>Publish</h2>");
    let mut any = false;
    for e in &p.episodes {
        let node = format!("episode:{}", e.id);
        let Some(st) = session.state.node(&node) else {
            continue;
        };
        let Some(mp4) = st.outputs.iter().find(|o| o.suffix == "mp4") else {
            continue;
        };
        any = true;
        let open = if chosen.is_some_and(|c| c.id == e.id) {
            " open"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<details class=\"episode\" data-episode=\"{id}\"{open}><summary>{id} · {} <span class=\"state\">{}</span></summary>\
             <video controls preload=\"metadata\" src=\"/object/{hash}/mp4\" data-hash=\"{hash}\"{poster}>",
            esc(&e.title),
            episode_state(session, plan, e, publish_to),
            id = esc(&e.id),
            hash = mp4.hash,
            poster = st
                .outputs
                .iter()
                .find(|o| o.suffix == "jpg")
                .map(|o| format!(" poster=\"/object/{}/jpg\"", o.hash))
                .unwrap_or_default(),
        );
        // One track per language: the default's `srt`, a dub's `ja.srt`.
        for o in st.outputs.iter().filter(|o| o.suffix.as_str().ends_with("srt")) {
            let (file, label, default) = match o.suffix.as_str().strip_suffix(".srt") {
                Some(code) => (format!("{}.{code}", e.id), language_name(code), ""),
                None => match p.languages.first() {
                    Some(l) => (e.id.clone(), language_name(&l.code), " default"),
                    None => (e.id.clone(), "Subtitles".to_string(), " default"),
                },
            };
            let _ = write!(
                h,
                "<track kind=\"subtitles\" label=\"{}\" src=\"/subtitles/{}.vtt\"{default}>",
                esc(&label),
                esc(&file)
            );
        }
        h.push_str("</video>");
        let cs = chapters(&session.cache.object_path(&mp4.hash));
        if !cs.is_empty() {
            h.push_str("<ol class=\"chapters\">");
            for (start, title) in cs {
                let _ = write!(
                    h,
                    "<li><a href=\"#publish\" data-seek=\"{start}\">{}:{:04.1}</a> {}</li>",
                    (start / 60.0).floor() as u64,
                    start % 60.0,
                    esc(&title)
                );
            }
            h.push_str("</ol>");
        }
        if publish_to.is_some() {
            let _ = write!(
                h,
                "<p><button class=\"publish\" data-post=\"/api/publish/{}\">Publish</button> <span class=\"result\"></span></p>",
                esc(&e.id)
            );
        }
        h.push_str("</details>");
    }
    if !any {
        h.push_str("<p class=\"muted\">No episode is built yet.</p>");
    }
    h.push_str("<h3>Jellyfin</h3>");
    match publish_to {
        Some(dir) => {
            let _ = write!(h, "<p>Library folder: <code>{}</code></p>", esc(dir.as_str()));
        }
        None => h.push_str(
            "<p class=\"muted\">To publish from here, name Jellyfin's TV library folder in studio.yaml (<code>publish: {library: DIR}</code>) or start the studio with <code>--publish-to DIR</code>.</p>",
        ),
    }
    let jf: Vec<_> = p
        .executors
        .iter()
        .filter(|x| x.kind == crate::engines::ServiceKind::Jellyfin)
        .collect();
    if jf.is_empty() {
        h.push_str("<p class=\"muted\">No Jellyfin executor in studio.yaml: <code>studio publish EP</code> lays the episode out in the library folder.</p>");
    }
    for x in jf {
        let _ = write!(
            h,
            "<p>Executor <b>{}</b> at <code>{}</code></p>",
            esc(&x.id),
            esc(&x.url)
        );
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real MP4 with two chapters (made by ffmpeg), read back.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test makes its input with ffmpeg
    fn chapters_of_an_mp4() {
        let dir = tempfile::tempdir().unwrap();
        let d = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(
            d.join("meta.txt"),
            ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=Rain\n\
             [CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=雨 <b>\n",
        )
        .unwrap();
        let ok = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x64:d=2", "-i"])
            .arg(d.join("meta.txt"))
            .args(["-map_metadata", "1", "-map_chapters", "1", "-c:v", "mpeg4"])
            .arg(d.join("ep.mp4"))
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(
            chapters(&d.join("ep.mp4")),
            vec![(0.0, "Rain".to_string()), (1.0, "雨 <b>".to_string())]
        );
        std::fs::write(d.join("x.mp4"), "studio-sim stand-in").unwrap();
        assert!(chapters(&d.join("x.mp4")).is_empty(), "not a video: no chapters");
    }

    #[test]
    fn escapes_and_colours() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(css_colour("#e0b020"), Some("#e0b020"));
        assert_eq!(css_colour("teal"), Some("teal"));
        assert_eq!(css_colour("red;background:url(x)"), None);
        assert_eq!(css_colour("#12345"), None);
    }
}
