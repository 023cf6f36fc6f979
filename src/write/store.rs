//! What `studio write` keeps in `cache/`: each LLM call's validated reply,
//! and the hash of every file studio wrote (so it can tell a writer's edit).
//!
//! ```text
//! cache/llm/ab/abcdef….json   call key → the reply that passed validation
//! cache/written.json          path → blake3 of the bytes studio last wrote
//! ```
//!
//! `studio gc` only sweeps `cache/ac` and `cache/objects`, so replies survive
//! it; deleting `cache/` costs requests, and makes studio treat every
//! screenplay as the writer's (it never overwrites one it cannot vouch for).

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{GenOptions, Message, Protocol};
use crate::cache::atomic::{load_json, save_json, write_atomic_via};

/// The cache key of one logical call.
///
/// In: protocol, model, the first request's messages (system and prompt),
/// the schema and the generation options, seed included. Not in: the URL,
/// the executor's id, timeouts, or the repair turns (a call's key names the
/// reply that finally passed, however many turns it took). Nor `max_tokens`:
/// it says where generation stops, not what is sampled, and a cut-off reply
/// is an error that is never kept, so a kept reply is the one any bound at
/// least its length gives; raising the bound after a cut-off asks again
/// only for the call that was cut. Nor the `json_schema`/`json_object`
/// form of the schema: the same schema either way.
pub fn key(protocol: Protocol, model: &str, messages: &[Message], schema: &Value, options: &GenOptions) -> String {
    #[derive(Serialize)]
    struct Material<'a> {
        version: u32,
        protocol: Protocol,
        model: &'a str,
        messages: &'a [Message],
        schema: &'a Value,
        options: &'a GenOptions,
    }
    let material = Material {
        version: 1,
        protocol,
        model,
        messages,
        schema,
        options,
    };
    blake3::hash(&serde_json::to_vec(&material).expect("key material serializes"))
        .to_hex()
        .to_string()
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    model: String,
    content: String,
}

/// `cache/llm/`.
#[derive(Debug, Clone)]
pub struct Replies {
    cache: Utf8PathBuf,
}

impl Replies {
    pub fn new(cache: &Utf8Path) -> Replies {
        Replies {
            cache: cache.to_owned(),
        }
    }

    fn path(&self, key: &str) -> Utf8PathBuf {
        self.cache.join("llm").join(&key[..2]).join(format!("{key}.json"))
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice::<Entry>(&bytes).ok().map(|e| e.content)
    }

    pub fn put(&self, key: &str, model: &str, content: &str) -> std::io::Result<()> {
        let entry = Entry {
            model: model.to_string(),
            content: content.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(&entry).expect("entry serializes");
        write_atomic_via(&self.cache.join("tmp"), &self.path(key), &bytes)
    }
}

/// `cache/written.json`: what studio last wrote to each source file.
#[derive(Debug)]
pub struct Written {
    path: Utf8PathBuf,
    files: BTreeMap<String, String>,
}

/// Who a file on disk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// There is no file.
    Missing,
    /// The bytes are what studio last wrote there.
    Studio,
    /// Someone changed it, or studio has no record of writing it.
    Writer,
}

impl Written {
    pub fn load(cache: &Utf8Path) -> Written {
        let path = cache.join("written.json");
        Written {
            files: load_json(&path),
            path,
        }
    }

    pub fn owner(&self, root: &Utf8Path, rel: &str) -> Owner {
        match std::fs::read(root.join(rel)) {
            Err(_) => Owner::Missing,
            Ok(bytes) if self.files.get(rel) == Some(&blake3::hash(&bytes).to_hex().to_string()) => Owner::Studio,
            Ok(_) => Owner::Writer,
        }
    }

    pub fn record(&mut self, rel: &str, bytes: &[u8]) {
        self.files
            .insert(rel.to_string(), blake3::hash(bytes).to_hex().to_string());
    }

    pub fn save(&self) -> std::io::Result<()> {
        save_json(&self.path, &self.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_holds_what_changes_the_reply() {
        let msgs = vec![Message::new("system", "s"), Message::new("user", "u")];
        let schema = serde_json::json!({"type": "object"});
        let o = GenOptions {
            seed: 1,
            temperature: 0.7,
            num_ctx: 8192,
        };
        let base = key(Protocol::Ollama, "m", &msgs, &schema, &o);
        assert_eq!(base, key(Protocol::Ollama, "m", &msgs.clone(), &schema, &o), "stable");
        let other_msgs = vec![Message::new("system", "s"), Message::new("user", "u2")];
        for (what, k) in [
            ("protocol", key(Protocol::OpenaiChat, "m", &msgs, &schema, &o)),
            ("model", key(Protocol::Ollama, "m2", &msgs, &schema, &o)),
            ("messages", key(Protocol::Ollama, "m", &other_msgs, &schema, &o)),
            ("schema", key(Protocol::Ollama, "m", &msgs, &serde_json::json!({}), &o)),
            (
                "seed",
                key(Protocol::Ollama, "m", &msgs, &schema, &GenOptions { seed: 2, ..o }),
            ),
            (
                "temperature",
                key(
                    Protocol::Ollama,
                    "m",
                    &msgs,
                    &schema,
                    &GenOptions { temperature: 0.1, ..o },
                ),
            ),
        ] {
            assert_ne!(k, base, "{what} is in the key");
        }
    }

    #[test]
    fn ownership_follows_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        let mut w = Written::load(&root.join("cache"));
        assert_eq!(w.owner(root, "a.yaml"), Owner::Missing);
        std::fs::write(root.join("a.yaml"), "x: 1\n").unwrap();
        assert_eq!(w.owner(root, "a.yaml"), Owner::Writer, "no record: the writer's");
        w.record("a.yaml", b"x: 1\n");
        w.save().unwrap();
        let w = Written::load(&root.join("cache"));
        assert_eq!(w.owner(root, "a.yaml"), Owner::Studio);
        std::fs::write(root.join("a.yaml"), "x: 1 # mine\n").unwrap();
        assert_eq!(w.owner(root, "a.yaml"), Owner::Writer);
    }
}
