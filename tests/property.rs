//! Property: any sequence of edits, each followed by an incremental build,
//! ends in the same outputs as a clean build of the final project.

mod common;

use common::TestProject;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Shot {
    chars: Vec<usize>,
    duration: u32,
    take: u32,
    lines: Vec<(usize, String)>,
}

#[derive(Debug, Clone)]
struct Project {
    designs: Vec<String>,
    moods: Vec<&'static str>,
    scenes: Vec<Vec<Shot>>,
    duck_ratio: u32,
}

const MOODS: [&str; 4] = ["calm", "tense", "joyful", "eerie"];
const WORDS: [&str; 8] = ["rain", "lantern", "train", "bell", "snow", "letter", "road", "dawn"];

fn initial() -> Project {
    let shot = |chars: Vec<usize>, n: usize| Shot {
        lines: chars
            .iter()
            .take(n)
            .map(|&c| (c, format!("{} waits", WORDS[c])))
            .collect(),
        chars,
        duration: 3,
        take: 1,
    };
    Project {
        designs: vec![
            "girl, red coat".into(),
            "boy, green cap".into(),
            "old woman, shawl".into(),
        ],
        moods: vec!["calm", "tense", "joyful"],
        scenes: vec![
            vec![shot(vec![0], 1), shot(vec![0, 1], 2), shot(vec![], 0)],
            vec![shot(vec![1], 1), shot(vec![2, 0], 1)],
            vec![shot(vec![2], 1), shot(vec![1, 2], 2)],
        ],
        duck_ratio: 6,
    }
}

/// One edit, with indices taken modulo what exists.
#[derive(Debug, Clone)]
enum Edit {
    LineText(usize, usize, usize),
    AddLine(usize, usize, usize, usize),
    RemoveLine(usize, usize),
    Duration(usize, usize, u32),
    Take(usize, usize),
    Design(usize, usize),
    Duck(u32),
    Mood(usize, usize),
    RemoveShot(usize, usize),
    AddShot(usize, usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let i = || 0usize..16;
    prop_oneof![
        (i(), i(), i()).prop_map(|(a, b, c)| Edit::LineText(a, b, c)),
        (i(), i(), i(), i()).prop_map(|(a, b, c, d)| Edit::AddLine(a, b, c, d)),
        (i(), i()).prop_map(|(a, b)| Edit::RemoveLine(a, b)),
        (i(), i(), 2u32..7).prop_map(|(a, b, d)| Edit::Duration(a, b, d)),
        (i(), i()).prop_map(|(a, b)| Edit::Take(a, b)),
        (i(), i()).prop_map(|(a, b)| Edit::Design(a, b)),
        (3u32..9).prop_map(Edit::Duck),
        (i(), i()).prop_map(|(a, b)| Edit::Mood(a, b)),
        (i(), i()).prop_map(|(a, b)| Edit::RemoveShot(a, b)),
        (i(), i()).prop_map(|(a, b)| Edit::AddShot(a, b)),
    ]
}

impl Project {
    fn shot(&mut self, s: usize, sh: usize) -> &mut Shot {
        let k = s % self.scenes.len();
        let scene = &mut self.scenes[k];
        let n = scene.len();
        &mut scene[sh % n]
    }

    fn apply(&mut self, e: &Edit) {
        match *e {
            Edit::LineText(s, sh, w) => {
                let shot = self.shot(s, sh);
                if let Some(line) = shot.lines.first_mut() {
                    line.1 = format!("{} {}", line.1, WORDS[w % WORDS.len()]);
                }
            }
            Edit::AddLine(s, sh, c, w) => {
                let shot = self.shot(s, sh);
                if !shot.chars.is_empty() {
                    let speaker = shot.chars[c % shot.chars.len()];
                    shot.lines.push((speaker, format!("the {}", WORDS[w % WORDS.len()])));
                }
            }
            Edit::RemoveLine(s, sh) => {
                self.shot(s, sh).lines.pop();
            }
            Edit::Duration(s, sh, d) => self.shot(s, sh).duration = d,
            Edit::Take(s, sh) => self.shot(s, sh).take += 1,
            Edit::Design(c, w) => {
                let n = self.designs.len();
                self.designs[c % n].push_str(&format!(", {}", WORDS[w % WORDS.len()]));
            }
            Edit::Duck(r) => self.duck_ratio = r,
            Edit::Mood(s, m) => {
                let n = self.moods.len();
                self.moods[s % n] = MOODS[m % MOODS.len()];
            }
            Edit::RemoveShot(s, sh) => {
                let n = self.scenes.len();
                let scene = &mut self.scenes[s % n];
                if scene.len() > 1 {
                    let k = sh % scene.len();
                    scene.remove(k);
                }
            }
            Edit::AddShot(s, c) => {
                let n = self.scenes.len();
                self.scenes[s % n].push(Shot {
                    chars: vec![c % 3],
                    duration: 2,
                    take: 1,
                    lines: vec![(c % 3, "new shot".into())],
                });
            }
        }
    }

    fn write(&self, p: &TestProject) {
        let mut studio = String::from("project: {name: Generated}\ncharacters:\n");
        for (i, d) in self.designs.iter().enumerate() {
            studio.push_str(&format!(
                "  - {{id: c{i}, name: C{i}, design_prompt: \"{d}\", color: \"#{:02x}4080\"}}\n",
                40 * i + 20
            ));
        }
        studio.push_str("episodes:\n  - {id: ep01, title: One}\n");
        studio.push_str("executors:\n  - {id: comfy, kind: comfyui, url: \"http://127.0.0.1:8188\"}\n  - {id: tts, kind: openai_speech, url: \"http://127.0.0.1:5002\", slots: 2}\n  - {id: xtts, kind: xtts, url: \"http://127.0.0.1:8020\"}\n  - {id: rvc, kind: rvc, url: \"http://127.0.0.1:5050\"}\n  - {id: ace, kind: ace_step, url: \"http://127.0.0.1:8440\"}\n  - {id: vision, kind: ollama, url: \"http://127.0.0.1:11434\", model: vision}\n");
        studio.push_str("profiles:\n  default: sim\n  full: {}\n  animatic: {}\n  sim: {rules_from: full, simulate: {time_scale: 0}}\n");
        p.write("studio.yaml", &studio);
        let mut ep = String::from("episode: ep01\nscenes:\n");
        for (si, shots) in self.scenes.iter().enumerate() {
            ep.push_str(&format!(
                "  - id: s{si}\n    title: Scene {si}\n    mood: {}\n    shots:\n",
                self.moods[si]
            ));
            for (hi, shot) in shots.iter().enumerate() {
                ep.push_str(&format!(
                    "      - id: sh{hi}\n        duration: {}\n        take: {}\n        characters: [",
                    shot.duration, shot.take
                ));
                let chars: Vec<String> = shot.chars.iter().map(|c| format!("{{id: c{c}}}")).collect();
                ep.push_str(&chars.join(", "));
                ep.push_str("]\n        dialogue:\n");
                for (speaker, text) in &shot.lines {
                    ep.push_str(&format!("          - {{speaker: c{speaker}, text: \"{text}\"}}\n"));
                }
                if shot.lines.is_empty() {
                    ep.truncate(ep.len() - "        dialogue:\n".len());
                }
            }
        }
        p.write("episodes/ep01.yaml", &ep);
        let audio = p.read("rules/audio.yaml");
        let start = audio.find("duck_ratio: ").unwrap() + "duck_ratio: ".len();
        let end = start + audio[start..].find('\n').unwrap();
        p.write(
            "rules/audio.yaml",
            &format!("{}{}{}", &audio[..start], self.duck_ratio, &audio[end..]),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_clean(edits in prop::collection::vec(edit_strategy(), 1..6)) {
        let mut model = initial();
        let inc = TestProject::empty();
        model.write(&inc);
        inc.build(&[]).ok();
        for e in &edits {
            model.apply(e);
            model.write(&inc);
            inc.build(&[]).ok();
        }
        let last = inc.build(&[]).ok();
        prop_assert_eq!(last.total("built"), 0, "a build after the last edit is a no-op");

        let clean = TestProject::empty();
        model.write(&clean);
        let reference = clean.build(&[]).ok();
        prop_assert_eq!(last.hashes(), reference.hashes());
        prop_assert_eq!(
            std::fs::read(inc.path("out/ep01/ep01.mp4")).unwrap(),
            std::fs::read(clean.path("out/ep01/ep01.mp4")).unwrap()
        );
    }
}
