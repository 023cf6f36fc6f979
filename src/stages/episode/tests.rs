//! Tests of the episode stage: pure pieces, then real ffmpeg end to end.
use super::*;

#[test]
fn transitions_map_to_xfade() {
    assert_eq!(xfade_name("dissolve"), Some("fade"));
    assert_eq!(xfade_name("fade"), Some("fadegrays"));
    assert_eq!(xfade_name("fadeblack"), Some("fadeblack"));
    assert_eq!(xfade_name("wipeleft"), Some("wipeleft"));
    assert_eq!(xfade_name("swirl"), None);
}

#[test]
fn segments_cut_their_frames_and_transitions_blend_from_their_start() {
    assert_eq!(
        segments::body_filter(12, 78),
        "trim=start_frame=12:end_frame=78,settb=1/30,setpts=N,format=yuv420p,setsar=1"
    );
    assert_eq!(
        segments::transition_graph("fade", 1, 1, 12),
        "[0:v]trim=end_frame=12,settb=1/30,setpts=N,format=yuv420p,setsar=1[a];\
         [1:v]trim=end_frame=12,settb=1/30,setpts=N,format=yuv420p,setsar=1[b];\
         [a][b]xfade=transition=fade:duration=0.400000:offset=0,settb=1/30,setpts=N,format=yuv420p,setsar=1[v]"
    );
    // An overlap over several shots: each side's shots joined in order first.
    let grid = "settb=1/30,setpts=N,format=yuv420p,setsar=1";
    assert_eq!(
        segments::transition_graph("fade", 2, 1, 12),
        format!(
            "[0:v]{grid}[a0];[1:v]{grid}[a1];[a0][a1]concat=n=2:v=1:a=0,trim=end_frame=12,{grid}[a];\
             [2:v]trim=end_frame=12,{grid}[b];\
             [a][b]xfade=transition=fade:duration=0.400000:offset=0,{grid}[v]"
        )
    );
    // Half a frame before frame 63: Matroska's rounded milliseconds land on it.
    assert_eq!(segments::seek_to(63).as_deref(), Some("2.083333"));
    assert_eq!(segments::seek_to(0), None);
}

#[test]
fn scenes_must_outlast_their_transitions() {
    let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    assert!(check_lengths(&names, &[12, 24, 12], 12, "frames").is_ok());
    let err = check_lengths(&names, &[12, 23, 12], 12, "frames").unwrap_err();
    assert!(err.contains("scene b is 23 frames"), "{err}");
    assert!(check_lengths(&names[..1], &[0], 12, "frames").is_err());
}

fn tl() -> Timeline {
    // Two scenes (s1: 60 + 90 frames, s2: 120), a 12-frame transition.
    Timeline::new(vec!["s1".into(), "s2".into()], vec![150, 120], &[12])
}

fn shot(scene: &str, shot: &str, frames: u64) -> ShotTiming {
    ShotTiming {
        scene: scene.into(),
        shot: shot.into(),
        frames,
    }
}

fn voice(scene: &str, shot: &str, n: usize, seconds: f64) -> VoiceTiming {
    VoiceTiming {
        scene: scene.into(),
        shot: shot.into(),
        n,
        seconds,
    }
}

fn line(l: &str, text: &str) -> CueSpec {
    let (scene, shot, n) = line_ref(l).unwrap();
    CueSpec {
        scene,
        shot,
        n,
        text: text.into(),
    }
}

#[test]
fn cues_sit_where_the_mix_put_the_voices() {
    let shots = [shot("s1", "a", 60), shot("s1", "b", 90), shot("s2", "a", 120)];
    let voices = [
        voice("s1", "a", 1, 0.5),
        voice("s1", "b", 1, 1.01),
        voice("s1", "b", 2, 2.0),
        voice("s2", "a", 1, 1.5),
    ];
    let lines = [
        line("s1/a/1", "one"),
        line("s1/b/1", "two"),
        line("s1/b/2", "three"),
        line("s2/a/1", "four"),
    ];
    let cues = place_cues(&tl(), &shots, &voices, &lines).unwrap();
    let times: Vec<(u64, u64)> = cues.iter().map(|c| (c.start, c.end)).collect();
    // s1/a/1: frame 15 → 500 ms, shown 1 s (voice shorter than a second).
    // s1/b/1: 60 + 15 = 75 → 2500 ms, 1010 ms. s1/b/2: 60 + 15 + 31 + 9 = 115 → 3833 ms.
    // s2/a/1: scene 2 starts at 150 - 12 = 138; + 15 = 153 → 5100 ms, 1.5 s.
    assert_eq!(times, vec![(500, 1500), (2500, 3510), (3833, 5100), (5100, 6600)]);
    assert_eq!(cues[2].end, 5100, "cut at the next cue instead of 5833");
}

#[test]
fn cues_never_run_past_the_episode() {
    let shots = [shot("s1", "a", 150), shot("s2", "a", 120)];
    let voices = [voice("s2", "a", 1, 9.0)];
    let cues = place_cues(&tl(), &shots, &voices, &[line("s2/a/1", "long")]).unwrap();
    assert_eq!((cues[0].start, cues[0].end), (5100, 8600));
}

#[test]
fn cue_placement_reports_what_is_missing() {
    let shots = [shot("s1", "a", 150), shot("s2", "a", 120)];
    let err = place_cues(&tl(), &shots, &[], &[line("s1/a/1", "x")]).unwrap_err();
    assert_eq!(err, "line s1/a/1 has no voice input");
    let err = place_cues(&tl(), &shots, &[], &[line("s1/zz/1", "x")]).unwrap_err();
    assert!(err.contains("no timing input"), "{err}");
    let err = place_cues(&tl(), &[shot("s1", "a", 149), shot("s2", "a", 120)], &[], &[]).unwrap_err();
    assert!(err.contains("add up to 149 frames"), "{err}");
}

#[test]
fn srt_is_numbered_timed_and_escaped() {
    let cues = [
        Cue {
            start: 500,
            end: 1500,
            text: "He said: <b>\"100%\"</b>".into(),
        },
        Cue {
            start: 3_723_004,
            end: 3_724_004,
            text: "  ".into(),
        },
        Cue {
            start: 3_725_000,
            end: 3_726_000,
            text: "「夜」 --> {\\an8}".into(),
        },
    ];
    let text = srt(&cues);
    assert_eq!(
        text,
        format!(
            "1\n00:00:00,500 --> 00:00:01,500\n{}\n\n2\n01:02:05,000 --> 01:02:06,000\n{}\n\n",
            escape::srt_text("He said: <b>\"100%\"</b>"),
            escape::srt_text("「夜」 --> {\\an8}")
        )
    );
    assert_eq!(srt(&[]), "");
}

#[test]
fn chapters_start_with_their_transitions() {
    let titles = HashMap::from([("s1".to_string(), "Rain; #1 = \"wet\"\nagain".to_string())]);
    let ch = chapters(&tl(), &titles);
    assert_eq!(
        ch,
        vec![
            Chapter {
                start: 0,
                end: 4600,
                title: "Rain; #1 = \"wet\"\nagain".into()
            },
            Chapter {
                start: 4600,
                end: 8600,
                title: "Scene s2".into()
            },
        ]
    );
    let meta = ffmetadata(&[("title", "Ep 1: a=b".into()), ("episode_sort", "1".into())], &ch);
    assert_eq!(
        meta,
        ";FFMETADATA1\ntitle=Ep 1: a\\=b\nepisode_sort=1\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=4600\ntitle=Rain\\; \\#1 \\= \"wet\" again\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=4600\nEND=8600\ntitle=Scene s2\n"
    );
}

#[test]
fn quality_gate_names_what_is_broken() {
    let v = serde_json::json!({"codec_name": "h264", "nb_read_packets": "258"});
    assert!(video_problems(&v, 258).is_empty());
    let v = serde_json::json!({"codec_name": "ffv1", "nb_read_packets": "257"});
    assert_eq!(
        video_problems(&v, 258),
        vec!["the video is ffv1, not h264", "the video has 257 frames, expected 258"]
    );
    let a = serde_json::json!({"codec_name": "aac", "sample_rate": "48000", "channels": 2, "duration": "8.600000"});
    assert!(audio_problems(&a, 258).is_empty());
    let a = serde_json::json!({"codec_name": "aac", "sample_rate": "44100", "channels": 1, "duration": "8.650000"});
    let p = audio_problems(&a, 258);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[2].contains("8.650 s"), "{p:?}");
}

#[test]
fn line_refs_and_milliseconds() {
    assert_eq!(line_ref("s01/sh02/3"), Some(("s01".into(), "sh02".into(), 3)));
    assert_eq!(line_ref("s01/3"), None);
    assert_eq!(line_ref("s01/sh02/0"), None);
    assert_eq!((ms(1), ms(2), ms(30), ms(230)), (33, 67, 1000, 7667));
    assert_eq!(scene_name("length:scene:s02"), "s02");
    assert_eq!(scene_name("scene:s01"), "s01");
}

/// End to end with the real ffmpeg on small synthetic scenes: two FFV1
/// scene videos (60 and 45 frames, 96×144) and two f32 scene mixes with
/// hot clicks (so loudnorm needs the limiter), one 0.4-s dissolve. Set
/// `EPISODE_TEST_OUT=dir` to keep the episode for `media-report`.
mod media {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::super::*;
    use crate::cache::index::SourceIndex;
    use crate::exec::runner;
    use crate::exec::tools::Toolchain;
    use crate::graph::{Node, Pool};
    use crate::kind::NodeKind;

    struct Bench {
        dir: tempfile::TempDir,
        tools: Arc<Toolchain>,
    }

    impl Bench {
        fn path(&self, name: &str) -> Utf8PathBuf {
            Utf8Path::from_path(self.dir.path()).expect("utf-8 temp dir").join(name)
        }

        async fn ffmpeg(&self, args: &[&str]) {
            let ffmpeg = self.tools.ffmpeg.as_ref().expect("ffmpeg");
            let cmd = Cmd::new(ffmpeg.as_str())
                .args(["-hide_banner", "-nostdin", "-y", "-v", "error"])
                .args(args);
            runner::run(&cmd, &self.path(""), &CancellationToken::new())
                .await
                .expect("ffmpeg makes a test input");
        }

        fn job(&self, kind: NodeKind, name: &str, params: Value, inputs: Vec<JobInput>) -> Job {
            let scratch = self.path(name);
            std::fs::create_dir_all(&scratch).expect("scratch dir");
            let engine = crate::stages::registry::find("ffmpeg").expect("ffmpeg engine");
            let params: BTreeMap<String, Value> = serde_json::from_value(params).expect("params");
            let material_params = params.clone();
            Job {
                node: Node {
                    id: format!("{}:ep01", kind.as_str()),
                    kind,
                    path: "ep01".into(),
                    engines: vec![engine],
                    pool: 0,
                    pools: vec![0],
                    params,
                    inputs: Vec::new(),
                    seed: None,
                    media_seconds: 0.0,
                    retries: 0,
                    out_stem: "ep01/ep01".into(),
                },
                engine,
                attempt: 0,
                inputs,
                scratch,
                root: self.path(""),
                pool: Pool::local("cpu", 1),
                host: None,
                service: None,
                simulate: None,
                tools: self.tools.clone(),
                progress: crate::exec::JobProgress::none(),
                provisional: None,
                material: crate::graph::key::KeyMaterial {
                    schema: 0,
                    kind,
                    engine: engine.name.into(),
                    engine_version: engine.version,
                    backend: crate::graph::key::Backend {
                        simulated: false,
                        service: None,
                        model: None,
                        tools: BTreeMap::new(),
                    },
                    params: material_params,
                    inputs: Vec::new(),
                    seed: None,
                },
            }
        }
    }

    fn input(role: &str, suffix: &str, path: Option<Utf8PathBuf>, duration: f64) -> JobInput {
        JobInput {
            role: role.into(),
            files: path.map(|p| vec![(suffix.to_string(), p)]).unwrap_or_default(),
            outputs: Vec::new(),
            duration: Some(duration),
            hash: String::new(),
        }
    }

    /// A scene's video and audio of `frames` frames; its picture changes
    /// every frame, from `hue` on.
    async fn scene(bench: &Bench, name: &str, frames: u64, hue: u32) -> (Utf8PathBuf, Utf8PathBuf) {
        let video = clip(bench, name, frames, hue).await;
        let audio = bench.path(&format!("{name}.wav"));
        let samples = frames * timing::SAMPLES_PER_FRAME;
        let tone =
            "aevalsrc=0.05*sin(2*PI*330*t)+if(lt(mod(t\\,0.5)\\,0.002)\\,0.9\\,0)|0.05*sin(2*PI*440*t):s=48000:d=5";
        let trim = format!("atrim=end_sample={samples}");
        bench
            .ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                tone,
                "-af",
                &trim,
                "-c:a",
                "pcm_f32le",
                audio.as_str(),
            ])
            .await;
        (video, audio)
    }

    /// The video of [`scene`] alone. From `hue + 37 × f` its frames are the
    /// scene's from frame `f` on: a shot of it.
    async fn clip(bench: &Bench, name: &str, frames: u64, hue: u32) -> Utf8PathBuf {
        let video = bench.path(&format!("{name}.mkv"));
        let src = format!("nullsrc=s=96x144:r=30,geq=lum='16+mod(N*37+{hue}\\,220)':cb=128:cr=128");
        let count = frames.to_string();
        bench
            .ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                &src,
                "-frames:v",
                &count,
                "-c:v",
                "ffv1",
                "-level",
                "3",
                "-g",
                "1",
                "-pix_fmt",
                "yuv420p",
                video.as_str(),
            ])
            .await;
        video
    }

    #[tokio::test]
    async fn scenes_become_an_episode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Utf8Path::from_path(dir.path()).expect("utf-8").to_owned();
        let tools = Toolchain::discover(&cache, &mut SourceIndex::load(&cache.join("index.json")));
        if tools.ffmpeg.is_none() || tools.ffprobe.is_none() {
            eprintln!("ffmpeg is not installed; skipping");
            return;
        }
        let bench = Bench {
            dir,
            tools: Arc::new(tools),
        };
        let cancel = CancellationToken::new();
        let (v1, a1) = scene(&bench, "s1", 60, 0).await;
        let (v2, a2) = scene(&bench, "s2", 45, 120).await;
        let joins = json!({"transitions": ["dissolve"], "transition_seconds": 0.4});

        let scenes = |v1: &Utf8PathBuf, v2: &Utf8PathBuf, suffix: &str| {
            vec![
                input("scene:s1", suffix, Some(v1.clone()), 2.0),
                input("scene:s2", suffix, Some(v2.clone()), 1.5),
            ]
        };
        // The picture in shot segments. s1 is two shots, 50 + 10 frames; s2
        // two, 5 + 40. The 12-frame transition takes all of s1/b and 2
        // frames of s1/a, all of s2/a and 7 frames of s2/b: s1/a keeps 48,
        // s1/b and s2/a nothing (empty segments), s2/b 33.
        let s1a = clip(&bench, "s1a", 50, 0).await;
        let s1b = clip(&bench, "s1b", 10, 50 * 37).await;
        let s2a = clip(&bench, "s2a", 5, 120).await;
        let s2b = clip(&bench, "s2b", 40, 120 + 5 * 37).await;
        let shot = |path: &Utf8PathBuf, frames: u64| input("shot", "mkv", Some(path.clone()), timing::seconds(frames));
        let timing_of = |role: &str, frames: u64| input(role, "mkv", None, timing::seconds(frames));
        let segment = |name: &str, inputs: Vec<JobInput>, overlap_in: u64, overlap_out: u64| {
            bench.job(
                NodeKind::ShotSegment,
                name,
                json!({"overlap_in": overlap_in, "overlap_out": overlap_out}),
                inputs,
            )
        };
        let seg1a = || segment("seg1a", vec![shot(&s1a, 50), timing_of("after:b", 10)], 0, 12);
        let mut job = seg1a();
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = reports.clone();
        job.progress = crate::exec::JobProgress::new(move |f, s| r.lock().unwrap().push((f, s.to_string())));
        let seg1 = shot_segment(&job, &cancel).await.expect("shot segment");
        assert_eq!(seg1.duration, Some(timing::seconds(48)));
        // The encode told how far it got, from ffmpeg's own frame count.
        let reports = reports.lock().unwrap().clone();
        let (fraction, status) = reports.last().expect("the encode reports progress");
        assert!(fraction.is_some_and(|f| f > 0.0 && f <= 1.0), "{reports:?}");
        assert!(
            status.starts_with("encoding frame ") && status.ends_with(" of 48"),
            "{reports:?}"
        );
        let seg1b = shot_segment(&segment("seg1b", vec![shot(&s1b, 10)], 0, 12), &cancel)
            .await
            .expect("shot segment");
        let seg2a = shot_segment(&segment("seg2a", vec![shot(&s2a, 5)], 12, 0), &cancel)
            .await
            .expect("shot segment");
        for empty in [&seg1b, &seg2a] {
            assert_eq!(empty.duration, Some(0.0));
            assert_eq!(std::fs::metadata(&empty.files[0].1).expect("segment").len(), 0);
        }
        let seg2 = shot_segment(
            &segment("seg2b", vec![timing_of("before:a", 5), shot(&s2b, 40)], 12, 0),
            &cancel,
        )
        .await
        .expect("shot segment");
        assert_eq!(seg2.duration, Some(timing::seconds(33)));
        // A shot not the length it was recorded at fails, naming the node.
        let err = shot_segment(&segment("bad", vec![shot(&s2b, 41)], 12, 0), &cancel)
            .await
            .expect_err("a shot of the wrong length");
        assert!(err.to_string().contains("40 frames, expected 41"), "{err}");
        // The transition blends the shots the overlap reaches. The graph may
        // give it more (it decides on the shots' least lengths): here a shot
        // ahead of s1/a, which the overlap does not reach and is left out.
        let early = clip(&bench, "s1-early", 30, 9).await;
        let fade = |name: &str| {
            bench.job(
                NodeKind::Transition,
                name,
                json!({"transition": "dissolve", "frames": 12}),
                vec![
                    input("from:z", "mkv", Some(early.clone()), 1.0),
                    input("from:a", "mkv", Some(s1a.clone()), timing::seconds(50)),
                    input("from:b", "mkv", Some(s1b.clone()), timing::seconds(10)),
                    input("to:a", "mkv", Some(s2a.clone()), timing::seconds(5)),
                    input("to:b", "mkv", Some(s2b.clone()), timing::seconds(40)),
                ],
            )
        };
        let t2 = transition(&fade("t2"), &cancel).await.expect("transition");
        assert_eq!(t2.duration, Some(timing::seconds(12)));

        // The same key gives the same bytes: encoded again elsewhere, each
        // segment is identical (one filter thread, x264 on sliced threads).
        let again = shot_segment(&seg1a(), &cancel).await.expect("again");
        let t2_again = transition(&fade("t2-again"), &cancel).await.expect("again");
        for (a, b) in [(&seg1, &again), (&t2, &t2_again)] {
            let bytes = |p: &Produced| std::fs::read(&p.files[0].1).expect("segment");
            assert!(bytes(a) == bytes(b), "{} and {} differ", a.files[0].1, b.files[0].1);
        }

        let part = |role: &str, p: &Produced| input(role, "mp4", Some(p.files[0].1.clone()), p.duration.unwrap());
        let parts = vec![
            part("segment:s1/a", &seg1),
            part("segment:s1/b", &seg1b),
            part("transition:s2", &t2),
            part("segment:s2/a", &seg2a),
            part("segment:s2/b", &seg2),
        ];
        let job = bench.job(NodeKind::EpisodeVideo, "video", joins.clone(), parts);
        let video = episode_video(&job, &cancel).await.expect("episode video");
        assert_eq!(video.duration, Some(timing::seconds(93)));

        // Every frame is where the one-pass xfade chain puts it: compared
        // with that chain rendered losslessly, every frame matches closely
        // (a frame out of place, another grey, scores far under 30 dB).
        let stats = bench.path("psnr.txt");
        bench
            .ffmpeg(&[
                "-i",
                video.files[0].1.as_str(),
                "-i",
                v1.as_str(),
                "-i",
                v2.as_str(),
                "-filter_complex",
                &format!(
                    "[1:v]settb=AVTB,fps=30,format=yuv420p[a];[2:v]settb=AVTB,fps=30,format=yuv420p[b];\
                     [a][b]xfade=transition=fade:duration=0.4:offset=1.6,settb=1/30,setpts=N[r];\
                     [0:v]settb=1/30,setpts=N[x];[x][r]psnr=stats_file={stats}:shortest=1"
                ),
                "-f",
                "null",
                "-",
            ])
            .await;
        let psnr: Vec<f64> = std::fs::read_to_string(&stats)
            .expect("psnr stats")
            .lines()
            .filter_map(|l| l.split("psnr_avg:").nth(1)?.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(psnr.len(), 93, "every frame compared");
        assert!(psnr.iter().all(|p| *p > 30.0), "{psnr:?}");

        let mut params = joins.clone();
        params["loudness_lufs"] = json!(-16);
        params["true_peak_dbtp"] = json!(-1.5);
        let job = bench.job(NodeKind::EpisodeAudio, "audio", params, scenes(&a1, &a2, "wav"));
        let audio = episode_audio(&job, &cancel).await.expect("episode audio");
        assert_eq!(audio.duration, Some(93.0 * 1600.0 / 48000.0));

        let mut params = joins.clone();
        params["show"] = json!("Test Show");
        params["episode"] = json!("ep01");
        params["number"] = json!(1);
        params["title"] = json!("Episode 1: \"Sunset\"; #1 = ok");
        params["cues"] = json!([
            {"line": "s1/a/1", "speaker": "Kai", "text": "He said: <b>\"100%\"</b> {\\an8} C:\\New"},
            {"line": "s2/a/1", "speaker": "Mio", "text": "「夜」だね"},
        ]);
        params["chapters"] = json!([{"scene": "s1", "title": "Rain; #1"}, {"scene": "s2", "title": "Night = 夜"}]);
        let inputs = vec![
            input("video", "mkv", Some(video.files[0].1.clone()), 3.1),
            input("audio", "m4a", Some(audio.files[0].1.clone()), 3.1),
            input("length:scene:s1", "wav", None, 2.0),
            input("length:scene:s2", "wav", None, 1.5),
            input("timing:ep01/s1/a", "mkv", None, 1.0),
            input("timing:ep01/s1/b", "mkv", None, 1.0),
            input("timing:ep01/s2/a", "mkv", None, 1.5),
            input("voice:s1/a/1", "wav", None, 0.4),
            input("voice:s2/a/1", "wav", None, 0.6),
        ];
        let job = bench.job(NodeKind::Episode, "episode", params, inputs.clone());
        let episode = assemble(&job, &cancel).await.expect("episode");
        let suffixes: Vec<&str> = episode.files.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(suffixes, ["mp4", "srt", "jpg"]);
        let srt = std::fs::read_to_string(&episode.files[1].1).expect("srt");
        assert!(srt.starts_with("1\n00:00:00,500 --> 00:00:01,500\n"), "{srt}");
        assert!(srt.contains("2\n00:00:02,100 --> 00:00:03,100\n「夜」だね\n"), "{srt}");

        let mp4 = &episode.files[0].1;
        let v = probe_stream(&job, mp4, "v:0", &cancel).await.expect("video stream");
        assert!(video_problems(&v, 93).is_empty(), "{v}");
        let a = probe_stream(&job, mp4, "a:0", &cancel).await.expect("audio stream");
        assert!(audio_problems(&a, 93).is_empty(), "{a}");
        let s = probe_stream(&job, mp4, "s:0", &cancel).await.expect("subtitle stream");
        assert_eq!(s["codec_name"], "mov_text");

        // The gate refuses an audio track that does not match the video.
        let mut short = inputs;
        short[3].duration = Some(1.0);
        let job = bench.job(
            NodeKind::Episode,
            "refused",
            job.node
                .params
                .clone()
                .into_iter()
                .collect::<serde_json::Map<_, _>>()
                .into(),
            short,
        );
        let err = assemble(&job, &cancel).await.expect_err("gate").to_string();
        assert!(err.contains("the video has 93 frames, expected 78"), "{err}");

        if let Ok(keep) = std::env::var("EPISODE_TEST_OUT") {
            for (suffix, path) in &episode.files {
                let _ = std::fs::copy(path, format!("{keep}/episode.{suffix}"));
            }
        }
    }

    /// A dubbed episode: one audio and one subtitle track per language,
    /// tagged (ISO 639-2), the default language first and the default audio;
    /// each language's cues at its own voices.
    #[tokio::test]
    async fn a_dub_is_a_tagged_second_track() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Utf8Path::from_path(dir.path()).expect("utf-8").to_owned();
        let tools = Toolchain::discover(&cache, &mut SourceIndex::load(&cache.join("index.json")));
        if tools.ffmpeg.is_none() || tools.ffprobe.is_none() {
            eprintln!("ffmpeg is not installed; skipping");
            return;
        }
        let bench = Bench {
            dir,
            tools: Arc::new(tools),
        };
        let cancel = CancellationToken::new();
        let video = bench.path("v.mp4");
        bench
            .ffmpeg(&[
                "-f",
                "lavfi",
                "-i",
                "testsrc=s=64x64:r=30",
                "-frames:v",
                "60",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                video.as_str(),
            ])
            .await;
        let mut audio = Vec::new();
        for (name, hz) in [("en.m4a", 330), ("ja.m4a", 550)] {
            let path = bench.path(name);
            let tone = format!("sine=f={hz}:sample_rate=48000:d=2");
            bench
                .ffmpeg(&["-f", "lavfi", "-i", &tone, "-ac", "2", "-c:a", "aac", path.as_str()])
                .await;
            audio.push(path);
        }
        let cue = |text: &str| json!([{"line": "s1/a/1", "speaker": "Kai", "text": text}]);
        let params = json!({
            "transitions": [], "transition_seconds": 0.4, "episode": "ep01",
            "cues": cue("Hello there."),
            "language": {"code": "en", "tag": "eng", "name": "English"},
            "dubs": [{"code": "ja", "tag": "jpn", "name": "Japanese", "cues": cue("こんにちは。")}],
        });
        let inputs = vec![
            input("video", "mp4", Some(video), 2.0),
            input("audio", "m4a", Some(audio[0].clone()), 2.0),
            input("ja:audio", "m4a", Some(audio[1].clone()), 2.0),
            input("length:scene:s1", "wav", None, 2.0),
            input("timing:ep01/s1/a", "mkv", None, 2.0),
            input("voice:s1/a/1", "wav", None, 0.4),
            input("ja:voice:s1/a/1", "wav", None, 1.2),
        ];
        let job = bench.job(NodeKind::Episode, "dub", params, inputs);
        let episode = assemble(&job, &cancel).await.expect("episode");
        let suffixes: Vec<&str> = episode.files.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(suffixes, ["mp4", "srt", "ja.srt", "jpg"]);
        let en = std::fs::read_to_string(&episode.files[1].1).expect("srt");
        let ja = std::fs::read_to_string(&episode.files[2].1).expect("ja srt");
        // Both start at the lead-in; each lasts its own voice (at least 1 s).
        assert_eq!(en, "1\n00:00:00,500 --> 00:00:01,500\nHello there.\n\n");
        assert_eq!(ja, "1\n00:00:00,500 --> 00:00:01,700\nこんにちは。\n\n");

        let ffprobe = job.tools.ffprobe.clone().expect("ffprobe");
        let cmd = Cmd::new(ffprobe.as_str())
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type,codec_name:stream_tags=language,handler_name",
            ])
            .args(["-show_entries", "stream_disposition=default", "-of", "json"])
            .arg(episode.files[0].1.as_str());
        let out = runner::run(&cmd, &bench.path(""), &cancel).await.expect("ffprobe");
        let streams: Value = serde_json::from_slice(&out.stdout).expect("json");
        let got: Vec<(String, String, String, i64)> = streams["streams"]
            .as_array()
            .expect("streams")
            .iter()
            .map(|s| {
                (
                    s["codec_type"].as_str().unwrap_or("").to_string(),
                    s["tags"]["language"].as_str().unwrap_or("").to_string(),
                    s["tags"]["handler_name"].as_str().unwrap_or("").to_string(),
                    s["disposition"]["default"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        let want = |t: &str, l: &str, n: &str, d: i64| (t.to_string(), l.to_string(), n.to_string(), d);
        assert_eq!(
            got[1..3],
            [want("audio", "eng", "English", 1), want("audio", "jpn", "Japanese", 0)]
        );
        assert_eq!(
            got[3..]
                .iter()
                .filter(|s| s.0 == "subtitle")
                .map(|s| (s.0.as_str(), s.1.as_str()))
                .collect::<Vec<_>>(),
            [("subtitle", "eng"), ("subtitle", "jpn")]
        );

        // The gate checks the dub's audio too.
        let mut job = job;
        job.inputs[2] = input("ja:audio", "m4a", Some(bench.path("v.mp4")), 2.0);
        let err = assemble(&job, &cancel).await.expect_err("gate").to_string();
        assert!(
            err.contains("the audio is h264, not aac") || err.contains("has no `a:0` stream"),
            "{err}"
        );
    }
}
