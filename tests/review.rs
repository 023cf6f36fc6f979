//! The vision reviewer against a fake server that speaks each protocol as
//! the real ones take it (tests/vision), approvals.yaml's checks and
//! comment-keeping edits, and the contact sheet drawn with real ffmpeg.
//! No request leaves 127.0.0.1.

mod common;
mod vision;

use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use studio::engines::ServiceKind;
use studio::exec::http::Service;
use studio::project::approvals::{self, Decision, Known};
use studio::project::model::Executor;
use studio::review::{Framing, Scores, Verdict};
use studio::stages::review::client::{self, ReviewError, Vision};
use studio::stages::review::sheet;
use vision::{Fake, png, scores_for};

const MODEL: &str = "qwen2.5vl:7b";

fn categories() -> Vec<String> {
    vec!["off_model".into(), "bad_hands".into(), "blurry".into()]
}

fn executor(kind: ServiceKind, url: &str, timeout: f64) -> Executor {
    Executor {
        id: "vision".into(),
        kind,
        group: kind.as_str().into(),
        line: 7,
        url: url.into(),
        remote_host: false,
        max_tokens: None,
        slots: 1,
        model: Some(MODEL.into()),
        token_env: None,
        api_key_env: None,
        timeout,
        connect_timeout: 1.0,
    }
}

fn vision_for(kind: ServiceKind, fake: &Fake) -> Vision {
    let e = executor(kind, &fake.url, 5.0);
    Vision::new(&e, Arc::new(Service::new(&e).unwrap())).unwrap()
}

async fn ask(v: &Vision, image: &[u8], retries: u32) -> Result<(Scores, u32), ReviewError> {
    let cats = categories();
    let names: Vec<&str> = cats.iter().map(String::as_str).collect();
    client::review(v, "Score this character.", &[image.to_vec()], &names, retries).await
}

const PROTOCOLS: [ServiceKind; 2] = [ServiceKind::Ollama, ServiceKind::OpenaiChat];

#[tokio::test]
async fn both_protocols_send_the_image_and_get_its_scores() {
    for kind in PROTOCOLS {
        let fake = Fake::start(MODEL);
        let v = vision_for(kind, &fake);
        for seed in [3u8, 101] {
            let image = png(32, 48, seed);
            let (scores, tries) = ask(&v, &image, 2).await.unwrap();
            assert_eq!(tries, 1);
            let want = scores_for(&image, &categories());
            // Through JSON text and back: equal to the last bits that survive it.
            let near = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() < 1e-9;
            assert!(near(scores.character_match, &want["character_match"]), "{kind:?}");
            assert!(near(scores.clarity, &want["clarity"]));
            assert!(near(scores.training_value, &want["training_value"]));
            assert_eq!(json!(scores.framing.as_str()), want["framing"]);
            assert_eq!(json!(scores.rejection_categories), want["rejection_categories"]);
        }
        let seen = fake.seen();
        assert_eq!(seen.len(), 2);
        let r = &seen[0];
        // The server decoded exactly the image sent, at its size.
        assert_eq!(r.images, vec![(32, 48)]);
        assert_eq!(r.image_bytes, vec![png(32, 48, 3)]);
        assert_eq!(r.texts, vec!["Score this character."]);
        match kind {
            ServiceKind::Ollama => {
                assert_eq!(r.path, "/api/chat");
                assert_eq!(
                    r.body["format"]["properties"]["rejection_categories"]["items"]["enum"],
                    json!(categories())
                );
                assert!(
                    r.body["messages"][0]["images"][0]
                        .as_str()
                        .unwrap()
                        .starts_with("iVBOR"),
                    "bare base64 PNG"
                );
                assert!(r.body["options"]["num_predict"].as_u64().is_some());
            }
            _ => {
                assert_eq!(r.path, "/v1/chat/completions");
                assert_eq!(r.body["response_format"]["type"], "json_schema");
                assert_eq!(r.body["response_format"]["json_schema"]["strict"], true);
                let url = r.body["messages"][0]["content"][1]["image_url"]["url"]
                    .as_str()
                    .unwrap();
                assert!(url.starts_with("data:image/png;base64,iVBOR"), "{}", &url[..40]);
                assert!(r.body["max_tokens"].as_u64().is_some());
            }
        }
    }
}

#[tokio::test]
async fn an_invalid_reply_is_sent_back_and_repaired() {
    for kind in PROTOCOLS {
        let fake = Fake::start(MODEL);
        fake.script(|s| s.invalid = 1);
        let v = vision_for(kind, &fake);
        let image = png(16, 16, 9);
        let (scores, tries) = ask(&v, &image, 2).await.unwrap();
        assert_eq!(tries, 2, "{kind:?}");
        assert_eq!(
            scores.clarity,
            scores_for(&image, &categories())["clarity"].as_f64().unwrap()
        );
        let seen = fake.seen();
        let repair = &seen[1];
        // The model sees its own reply and what was wrong with it, and the image again.
        assert_eq!(repair.texts.len(), 3);
        assert!(
            repair.texts[1].starts_with("{\"character_match\": 0.9"),
            "{:?}",
            repair.texts
        );
        assert!(repair.texts[2].contains("not valid JSON"), "{}", repair.texts[2]);
        assert_eq!(repair.images, vec![(16, 16)]);
    }
}

#[tokio::test]
async fn repairs_are_bounded() {
    let fake = Fake::start(MODEL);
    fake.script(|s| s.invalid = 10);
    let v = vision_for(ServiceKind::Ollama, &fake);
    let err = ask(&v, &png(8, 8, 1), 2).await.unwrap_err();
    assert!(matches!(err, ReviewError::Invalid { tries: 3, .. }), "{err}");
    assert!(!err.transient());
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn out_of_range_scores_are_rejected_then_repaired() {
    for kind in PROTOCOLS {
        let fake = Fake::start(MODEL);
        fake.script(|s| s.out_of_range = 5);
        let v = vision_for(kind, &fake);
        let err = ask(&v, &png(8, 8, 2), 1).await.unwrap_err();
        let ReviewError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        assert!(
            problems.iter().any(|p| p.contains("`character_match` is 1.7")),
            "{problems:?}"
        );
        assert!(fake.seen()[1].texts[2].contains("between 0 and 1"));
        // Once the model keeps to the range, the repair is taken.
        fake.script(|s| s.out_of_range = 1);
        assert_eq!(ask(&v, &png(8, 8, 2), 1).await.unwrap().1, 2);
    }
}

#[tokio::test]
async fn a_500_is_transient_and_a_slow_server_times_out() {
    for kind in PROTOCOLS {
        let fake = Fake::start(MODEL);
        fake.script(|s| s.fail_500 = 1);
        let v = vision_for(kind, &fake);
        let err = ask(&v, &png(8, 8, 4), 2).await.unwrap_err();
        assert!(err.transient(), "{err}");
        assert!(err.to_string().contains("HTTP 500"), "{err}");
        // The next try gets its scores.
        ask(&v, &png(8, 8, 4), 2).await.unwrap();
        fake.script(|s| s.delay = Some(std::time::Duration::from_millis(1500)));
        let e = executor(kind, &fake.url, 0.5);
        let slow = Vision::new(&e, Arc::new(Service::new(&e).unwrap())).unwrap();
        let err = ask(&slow, &png(8, 8, 4), 2).await.unwrap_err();
        assert!(err.transient(), "{err}");
        assert!(err.to_string().contains("did not answer within"), "{err}");
    }
}

#[tokio::test]
async fn a_forced_category_and_score_come_back_checked() {
    let fake = Fake::start(MODEL);
    fake.script(|s| {
        s.category = Some("bad_hands".into());
        s.score = Some(0.3);
    });
    let v = vision_for(ServiceKind::OpenaiChat, &fake);
    let (scores, _) = ask(&v, &png(8, 8, 5), 0).await.unwrap();
    assert_eq!(scores.rejection_categories, ["bad_hands"]);
    assert_eq!(scores.overall(), 0.3);
    // A category outside the rules' list is a problem, not a rejection term.
    fake.script(|s| s.disobey = true);
    let err = client::review(&v, "p", &[png(8, 8, 5)], &["off_model"], 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rejection_categories"), "{err}");
}

#[tokio::test]
async fn a_server_that_refuses_json_schema_gets_the_schema_as_json_object() {
    let fake = Fake::start(MODEL);
    fake.script(|s| s.llama_cpp_python = true);
    let v = vision_for(ServiceKind::OpenaiChat, &fake);
    let image = png(8, 8, 6);
    let (scores, _) = ask(&v, &image, 0).await.unwrap();
    assert_eq!(scores.framing.as_str(), scores_for(&image, &categories())["framing"]);
    ask(&v, &image, 0).await.unwrap();
    let seen = fake.seen();
    // Refused once (not recorded: the fake answers before reading images),
    // then `json_object` with the schema from then on.
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.body["response_format"]["type"], "json_object");
        assert_eq!(
            s.body["response_format"]["schema"]["properties"]["rejection_categories"]["items"]["enum"],
            json!(categories())
        );
    }
}

#[tokio::test]
async fn a_host_outside_the_rule_is_refused_before_any_request() {
    let mut e = executor(ServiceKind::Ollama, "http://10.9.8.7:11434", 5.0);
    assert!(Service::new(&e).is_err());
    e.kind = ServiceKind::Comfyui;
    e.url = "http://127.0.0.1:9".into();
    let err = Vision::new(&e, Arc::new(Service::new(&e).unwrap())).unwrap_err();
    assert!(err.to_string().contains("not a vision model"), "{err}");
}

// --- approvals.yaml -------------------------------------------------------

fn hash(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn known() -> Known {
    Known {
        characters: vec!["aiko".into(), "ken".into()],
        categories: categories(),
        candidates: Some([("aiko".to_string(), vec![hash('a'), hash('b')])].into()),
    }
}

fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    (dir, root)
}

/// The rendered diagnostic (what `studio` prints) of loading `text`.
fn diagnostic(text: &str) -> String {
    let (_d, root) = temp();
    std::fs::write(root.join("approvals.yaml"), text).unwrap();
    let d = approvals::load(&root, &known()).unwrap_err();
    let mut out = String::new();
    for e in d.errors {
        let r = miette::Report::new(e);
        out.push_str(&format!("{r:?}\n"));
    }
    // Loading changed nothing.
    assert_eq!(std::fs::read_to_string(root.join("approvals.yaml")).unwrap(), text);
    out
}

#[test]
fn approvals_mistakes_are_located_with_a_fix() {
    let d = diagnostic("aiko:\n  - {image: cccccccccccc, decision: approve}\n");
    assert!(
        d.contains("no candidate of `aiko`") && d.contains("approvals.yaml:2"),
        "{d}"
    );
    assert!(d.contains("studio review aiko"), "{d}");
    let d = diagnostic("aiko:\n  - image: aaaaaaaaaaaaaaaa\n    decision: reject\n    category: ugly\n");
    assert!(
        d.contains("`ugly` is not a rejection category") && d.contains("approvals.yaml:4"),
        "{d}"
    );
    assert!(
        categories().iter().all(|c| d.contains(c.as_str())),
        "the help lists the categories: {d}"
    );
    let d = diagnostic("# mine\nzed:\n  - {image: aaaaaaaaaaaa, decision: approve}\n");
    assert!(
        d.contains("`zed`") && d.contains("approvals.yaml:2") && d.contains("aiko, ken"),
        "{d}"
    );
    let d = diagnostic("aiko:\n  - {image: aaaaaaaaaaaa, decision: approve\nken: [\n");
    assert!(d.contains("approvals.yaml:"), "{d}");
    // No file: no decisions.
    let (_d, root) = temp();
    assert!(approvals::load(&root, &known()).unwrap().by_character.is_empty());
}

#[test]
fn recording_a_decision_keeps_the_users_comments() {
    let text = "# Decisions on the art, reviewed on Mondays.\n\naiko:  # the lead\n  # round 1\n  - {image: aaaaaaaaaaaa, decision: approve}  # best one so far\n\n# nobody else yet\n";
    let t = approvals::record(
        text,
        "aiko",
        &hash('b'),
        &Decision::Reject {
            category: "blurry".into(),
        },
    )
    .unwrap();
    let t = approvals::record(&t, "ken", &hash('c'), &Decision::Approve).unwrap();
    for comment in [
        "# Decisions on the art, reviewed on Mondays.",
        "# the lead",
        "# round 1",
        "# best one so far",
        "# nobody else yet",
    ] {
        assert!(t.contains(comment), "{comment} lost:\n{t}");
    }
    assert!(t.starts_with("# Decisions on the art, reviewed on Mondays.\n\naiko:  # the lead\n  # round 1\n  - {image: aaaaaaaaaaaa, decision: approve}  # best one so far\n"), "{t}");
    let mut k = known();
    k.candidates.as_mut().unwrap().insert("ken".into(), vec![hash('c')]);
    let (_d, root) = temp();
    std::fs::write(root.join("approvals.yaml"), &t).unwrap();
    let a = approvals::load(&root, &k).unwrap();
    assert_eq!(a.decision("aiko", &hash('a')), Some(&Decision::Approve));
    assert_eq!(
        a.decision("aiko", &hash('b')),
        Some(&Decision::Reject {
            category: "blurry".into()
        })
    );
    assert_eq!(a.decision("ken", &hash('c')), Some(&Decision::Approve));
    // Changing a decision replaces it where it is, comment and all.
    let t2 = approvals::record(
        &t,
        "aiko",
        &hash('a'),
        &Decision::Reject {
            category: "off_model".into(),
        },
    )
    .unwrap();
    assert!(
        t2.contains(&format!(
            "  - {{image: {}, decision: reject, category: off_model}}  # best one so far\n",
            hash('a')
        )),
        "{t2}"
    );
    assert_eq!(t2.lines().count(), t.lines().count());
}

// --- the contact sheet ----------------------------------------------------

#[tokio::test]
async fn the_contact_sheet_holds_one_labelled_tile_per_candidate() {
    let (_d, root) = temp();
    let mut index = studio::cache::index::SourceIndex::load(&root.join("index"));
    let tools = studio::exec::tools::Toolchain::discover(&root, &mut index);
    let (ffmpeg, font) = (
        tools.ffmpeg.clone().expect("ffmpeg"),
        tools.font.clone().expect("the CJK font"),
    );
    let mut tiles = Vec::new();
    for i in 0..5u8 {
        let path = root.join(format!("c{i}.png"));
        // Portrait and landscape images both fit their cells.
        let (w, h) = if i % 2 == 0 { (64, 96) } else { (96, 48) };
        std::fs::write(&path, png(w, h, i + 1)).unwrap();
        tiles.push(sheet::Tile {
            image: path,
            hash: format!("{:012x}{}", 0xa1b2_c3d4_e5f6u64 + u64::from(i) * 0x1111, "0".repeat(52)),
            scores: Some(Scores {
                character_match: 0.5 + f64::from(i) / 10.0,
                clarity: 0.8,
                training_value: 0.7,
                framing: Framing::UpperBody,
                rejection_categories: vec![],
                notes: String::new(),
            }),
            verdict: Verdict::Pending,
        });
    }
    let out = root.join("review/aiko.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    sheet::draw(&ffmpeg, &font, &tiles, &out, &cancel).await.unwrap();
    if let Ok(keep) = std::env::var("STUDIO_KEEP_SHEET") {
        std::fs::copy(&out, keep).unwrap();
    }
    let bytes = std::fs::read(&out).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    let (w, h) = sheet::size(5);
    assert_eq!((info.width, info.height), (w, h));
    assert_eq!((w, h), (4 * sheet::TILE_W, 2 * (sheet::TILE_H + sheet::LABEL_H)));
    // The label band of the first tile has text (light pixels) on the dark ground;
    // the empty cells of the second row stay dark.
    let px = |x: u32, y: u32| {
        let i = ((y * info.width + x) * 3) as usize;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    let band_light = (0..sheet::TILE_W)
        .flat_map(|x| (sheet::TILE_H..sheet::TILE_H + sheet::LABEL_H).map(move |y| (x, y)))
        .filter(|&(x, y)| px(x, y).0 > 150)
        .count();
    assert!(band_light > 50, "no label text: {band_light} light pixels");
    let (ex, ey) = (3 * sheet::TILE_W + 100, sheet::TILE_H + sheet::LABEL_H + 100);
    assert_eq!(px(ex, ey), (0x1e, 0x1e, 0x1e), "an empty cell is background");
}

// --- the vision_review engines' run function ------------------------------

mod engine {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};
    use studio::exec::runner::{self, Cmd};
    use studio::exec::{Job, JobInput, JobProgress};
    use studio::graph::key::{Backend, KeyMaterial};
    use studio::graph::{Node, Pool};
    use studio::kind::NodeKind;
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn job(kind: NodeKind, engine: &str, exec: &Executor, root: &Utf8Path, params: Value, input: JobInput) -> Job {
        let engine = studio::stages::registry::find(engine).unwrap();
        let params: BTreeMap<String, Value> = serde_json::from_value(params).unwrap();
        let scratch = root.join(format!("scratch-{}", kind.as_str()));
        std::fs::create_dir_all(&scratch).unwrap();
        let mut index = studio::cache::index::SourceIndex::load(&root.join("index"));
        let tools = studio::exec::tools::Toolchain::discover(root, &mut index);
        Job {
            node: Node {
                id: format!("{}:aiko/r1/0", kind.as_str()),
                kind,
                path: "aiko/r1/0".into(),
                engines: vec![engine],
                pool: 0,
                pools: vec![0],
                params: params.clone(),
                inputs: Vec::new(),
                seed: None,
                media_seconds: 0.0,
                retries: 0,
                out_stem: "characters/aiko/r1-0".into(),
            },
            engine,
            attempt: 0,
            inputs: vec![input],
            scratch,
            root: root.to_owned(),
            pool: Pool::local("vision", 1),
            host: Some(exec.clone()),
            service: Some(Arc::new(Service::new(exec).unwrap())),
            simulate: None,
            tools: Arc::new(tools),
            progress: JobProgress::none(),
            provisional: None,
            material: KeyMaterial {
                schema: 0,
                kind,
                engine: engine.name.into(),
                engine_version: engine.version,
                backend: Backend {
                    simulated: false,
                    service: None,
                    model: None,
                    tools: BTreeMap::new(),
                },
                params,
                inputs: Vec::new(),
                seed: None,
            },
        }
    }

    fn params() -> Value {
        json!({
            "character": "aiko", "name": "Aiko", "design_prompt": "short black hair, red scarf", "appearance": "",
            "categories": {"off_model": "wrong outfit", "bad_hands": "bad hands", "blurry": "blurry"},
            "approve_at": 0.92, "reject_below": 0.4, "gate_threshold": 0.5,
        })
    }

    fn input(role: &str, path: &Utf8Path, duration: Option<f64>) -> JobInput {
        JobInput {
            role: role.into(),
            files: vec![(path.extension().unwrap().into(), path.to_owned())],
            outputs: Vec::new(),
            duration,
            hash: String::new(),
        }
    }

    #[tokio::test]
    async fn a_review_node_writes_its_scores_verdict_and_image_hash() {
        for (kind, engine) in [
            (ServiceKind::Ollama, "vision_review"),
            (ServiceKind::OpenaiChat, "vision_review_openai"),
        ] {
            let fake = Fake::start(MODEL);
            let (_d, root) = temp();
            let image = root.join("candidate.png");
            let bytes = png(40, 60, 7);
            std::fs::write(&image, &bytes).unwrap();
            let exec = executor(kind, &fake.url, 5.0);
            let job = job(
                NodeKind::Review,
                engine,
                &exec,
                &root,
                params(),
                input("image", &image, None),
            );
            let made = studio::stages::review::run(&job, &CancellationToken::new())
                .await
                .unwrap();
            let review: Value = serde_json::from_slice(&std::fs::read(&made.files[0].1).unwrap()).unwrap();
            assert_eq!(made.files[0].0, "json");
            assert_eq!(review["image"], blake3::hash(&bytes).to_hex().as_str());
            let want = scores_for(&bytes, &categories());
            assert_eq!(review["framing"], want["framing"]);
            let overall = review["overall"].as_f64().unwrap();
            let verdict = if overall >= 0.92 {
                "approved"
            } else if overall < 0.4 {
                "rejected"
            } else {
                "pending"
            };
            assert_eq!(review["verdict"], verdict);
            assert_eq!(made.metadata["review"], review, "the manifest carries the same review");
            studio::cache::check_metadata(&made.metadata).unwrap();
            // The prompt was the shipped template, filled with the character's design.
            let prompt = &fake.seen()[0].texts[0];
            assert!(
                prompt.contains("Aiko (aiko)")
                    && prompt.contains("red scarf")
                    && prompt.contains("- bad_hands: bad hands"),
                "{prompt}"
            );
        }
    }

    #[tokio::test]
    async fn a_shot_review_scores_key_frames_and_the_weakest_decides() {
        let fake = Fake::start(MODEL);
        let (_d, root) = temp();
        let video = root.join("shot.mp4");
        let mut index = studio::cache::index::SourceIndex::load(&root.join("index"));
        let tools = studio::exec::tools::Toolchain::discover(&root, &mut index);
        let cmd = Cmd::new(tools.ffmpeg.as_ref().unwrap().as_str())
            .args(["-hide_banner", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i"])
            .args(["testsrc2=size=160x240:rate=30:duration=3", "-pix_fmt", "yuv420p"])
            .arg(video.as_str());
        runner::run(&cmd, &root, &CancellationToken::new()).await.unwrap();
        let exec = executor(ServiceKind::Ollama, &fake.url, 5.0);
        let job = job(
            NodeKind::ShotReview,
            "vision_review",
            &exec,
            &root,
            params(),
            input("video", &video, Some(3.0)),
        );
        let made = studio::stages::review::run(&job, &CancellationToken::new())
            .await
            .unwrap();
        let review: Value = serde_json::from_slice(&std::fs::read(&made.files[0].1).unwrap()).unwrap();
        let seen = fake.seen();
        assert_eq!(seen.len(), 3, "three key frames, one request each");
        assert!(
            seen.iter().all(|s| s.images == vec![(160, 240)]),
            "each frame decoded at the video's size"
        );
        assert!(seen[0].texts[0].contains("a frame of an animated shot"));
        // Each frame got the fake's scores of its own bytes; the weakest is kept.
        let overall = |b: &[u8]| {
            let s = scores_for(b, &categories());
            ["character_match", "clarity", "training_value"]
                .iter()
                .map(|k| s[*k].as_f64().unwrap())
                .fold(1.0, f64::min)
        };
        let weakest = seen.iter().map(|s| overall(&s.image_bytes[0])).fold(1.0, f64::min);
        assert!((review["overall"].as_f64().unwrap() - weakest).abs() < 1e-9, "{review}");
        assert_eq!(review["frames"].as_array().unwrap().len(), 3);
        assert_eq!(review["verdict"], if weakest >= 0.5 { "approved" } else { "rejected" });
        assert_eq!(made.metadata["review"]["overall"], review["overall"]);
        studio::cache::check_metadata(&made.metadata).unwrap();
        // A forced low score fails the gate.
        fake.script(|s| s.score = Some(0.2));
        let job = super::engine::job(
            NodeKind::ShotReview,
            "vision_review",
            &exec,
            &root,
            params(),
            input("video", &video, Some(3.0)),
        );
        let made = studio::stages::review::run(&job, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(made.metadata["review"]["verdict"], "rejected");
    }

    #[tokio::test]
    async fn a_failing_server_is_a_transient_job_failure() {
        let fake = Fake::start(MODEL);
        fake.script(|s| s.fail_500 = 1);
        let (_d, root) = temp();
        let image = root.join("candidate.png");
        std::fs::write(&image, png(8, 8, 1)).unwrap();
        let exec = executor(ServiceKind::Ollama, &fake.url, 5.0);
        let job = job(
            NodeKind::Review,
            "vision_review",
            &exec,
            &root,
            params(),
            input("image", &image, None),
        );
        let err = studio::stages::review::run(&job, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, studio::exec::ExecError::Transient(ref m) if m.contains("studio.yaml:7")),
            "{err}"
        );
        fake.script(|s| s.invalid = 9);
        let err = studio::stages::review::run(&job, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, studio::exec::ExecError::Permanent(ref m) if m.contains("not valid JSON")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_a_vision_service_a_person_and_the_structural_check_stand_in() {
        let (_d, root) = temp();
        let image = root.join("candidate.png");
        std::fs::write(&image, png(8, 8, 1)).unwrap();
        // No server at all: the stand-ins run here.
        let exec = executor(ServiceKind::Ollama, "http://127.0.0.1:9", 5.0);
        let mut candidate = input("image", &image, None);
        candidate.hash = "c0ffee".into();
        let mut person = job(NodeKind::Review, "person", &exec, &root, params(), candidate);
        person.provisional = Some(
            "fell back to person after: vision_review: executor `vision-a` (studio.yaml:7): cannot connect".into(),
        );
        let made = studio::stages::review::stand_in::person(&person, &CancellationToken::new())
            .await
            .unwrap();
        let review: Value = serde_json::from_slice(&std::fs::read(&made.files[0].1).unwrap()).unwrap();
        assert_eq!(made.metadata["review"], review);
        assert_eq!(review["verdict"], "pending");
        assert_eq!(review["image"], "c0ffee");
        assert_eq!(review["unscored"], "no vision service: `vision-a` unreachable");
        assert!(review.get("character_match").is_none(), "{review}");
        let file = studio::review::ReviewFile::parse(&review).unwrap();
        assert_eq!(file.scores, None);

        // The gate: the video reads and has the frames its length says.
        let video = root.join("shot.mp4");
        let ffmpeg = person.tools.ffmpeg.clone().unwrap();
        let cmd = Cmd::new(ffmpeg.as_str())
            .args(["-hide_banner", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i"])
            .args(["testsrc2=size=160x240:rate=30:duration=3", "-pix_fmt", "yuv420p"])
            .arg(video.as_str());
        runner::run(&cmd, &root, &CancellationToken::new()).await.unwrap();
        let mut gate = job(
            NodeKind::ShotReview,
            "structural",
            &exec,
            &root,
            params(),
            input("video", &video, Some(3.0)),
        );
        gate.provisional =
            Some("fell back to structural after: vision_review: executor `vision-a` (studio.yaml:7): x".into());
        let made = studio::stages::review::stand_in::structural(&gate, &CancellationToken::new())
            .await
            .unwrap();
        let review = &made.metadata["review"];
        assert_eq!(review["verdict"], "approved", "{review}");
        assert_eq!(review["structural"]["frames"], 90, "{review}");
        assert_eq!(review["unscored"], "no vision service: `vision-a` unreachable");
        assert!(review.get("character_match").is_none(), "{review}");
        // A shot shorter than its length says fails, by name.
        let short = job(
            NodeKind::ShotReview,
            "structural",
            &exec,
            &root,
            params(),
            input("video", &video, Some(4.0)),
        );
        let err = studio::stages::review::stand_in::structural(&short, &CancellationToken::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shot aiko/r1/0 is broken: 90 frames, expected 120"),
            "{err}"
        );
    }
}

// --- `studio review` on the sample project (sim profile) -----------------

/// (character, short hash) of each pending line `studio review` printed.
fn pending_lines(stdout: &str) -> Vec<(String, String)> {
    let mut who = String::new();
    let mut out = Vec::new();
    for line in stdout.lines() {
        if let Some((c, _)) = line.split_once(": ")
            && !line.starts_with(' ')
        {
            who = c.to_string();
        } else if let Some(h) = line.strip_prefix("  ").and_then(|l| l.split_whitespace().next())
            && h.len() == sheet::SHORT_HASH
            && h.bytes().all(|b| b.is_ascii_hexdigit())
        {
            out.push((who.clone(), h.to_string()));
        }
    }
    out
}

#[test]
fn studio_review_lists_draws_and_records_decisions() {
    let p = common::TestProject::sample();
    p.build(&["ep01"]).ok();
    let listing = p.run(&["review", "--profile", "sim"]);
    listing.success();
    let pending = pending_lines(&listing.stdout);
    assert!(
        pending.len() >= 2,
        "the sample has candidates in the band:\n{}",
        listing.stdout
    );
    // One contact sheet per character with pending candidates, one tile each.
    let mut per: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (c, _) in &pending {
        *per.entry(c.as_str()).or_default() += 1;
    }
    for (c, n) in &per {
        let bytes = std::fs::read(p.path(&format!("out/review/{c}.png"))).unwrap();
        let info = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap()
            .info()
            .clone();
        assert_eq!((info.width, info.height), sheet::size(*n), "{c}");
    }
    // Decisions: comments kept, full hashes written.
    p.write("approvals.yaml", "# People decide the band here.\n");
    let (c0, h0) = &pending[0];
    let (c1, h1) = &pending[1];
    p.run(&["review", "--profile", "sim", "approve", h0]).success();
    p.run(&["review", "--profile", "sim", "reject", h1, "--category", "blurry"])
        .success();
    let text = p.read("approvals.yaml");
    assert!(text.starts_with("# People decide the band here.\n"), "{text}");
    assert!(
        text.contains(&format!("{c0}:\n")) && text.contains(&format!("{c1}:\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{{image: {h0}")) && text.contains("decision: approve}"),
        "{text}"
    );
    assert!(text.contains("decision: reject, category: blurry}"), "{text}");
    let line = text.lines().find(|l| l.contains(h0.as_str())).unwrap();
    let image = line.split("image: ").nth(1).unwrap().split(',').next().unwrap();
    assert!(
        image.len() == 64 && image.starts_with(h0.as_str()),
        "the full hash is written: {line}"
    );
    // Wrong input changes nothing and exits 2.
    for args in [
        vec!["review", "--profile", "sim", "approve", "0123456789abcdef"],
        vec!["review", "--profile", "sim", "reject", h0, "--category", "ugly"],
        vec!["review", "--profile", "sim", "approve", "12ab"],
    ] {
        let r = p.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(p.read("approvals.yaml"), text, "{args:?} changed the file");
    }
    // The decided candidates are no longer pending, and the build reads the file.
    let again = p.run(&["review", "--profile", "sim"]);
    again.success();
    let now = pending_lines(&again.stdout);
    assert!(!now.iter().any(|(_, h)| h == h0 || h == h1), "{}", again.stdout);
    p.build(&["ep01"]).ok();
    // A broken approvals.yaml is a located diagnostic at build time, and nothing is built.
    p.write("approvals.yaml", &text.replace("category: blurry", "category: ugly"));
    let r = p.run(&["build", "--profile", "sim", "ep01"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a rejection category") && r.stderr.contains("approvals.yaml:"),
        "{}",
        r.stderr
    );
}
