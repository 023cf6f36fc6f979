//! Comment-preserving edits: replace one key's block (a scene's `shots:`, a
//! shot's `dialogue:`) by byte range, so every other byte of the writer's
//! screenplay — comments, blank lines, quoting, key order — stays as it was.
//!
//! The item is found by the span serde-saphyr gives its `id` value; the key
//! and its block by indentation (block-style YAML, as studio writes it and as
//! the format's documentation shows). What is replaced is the key itself
//! through the last non-comment line of its value; comments inside that
//! range go with it, comments after it stay. A missing key is added as the
//! item's last key. A flow-style item (`- {id: sh01, …}`) is refused.

use std::fmt::Write;

struct Line {
    start: usize,
    /// Just past the line's `\n` (or the end of the text).
    end: usize,
    indent: usize,
    /// Column where a key on this line starts, after any `- `.
    key_col: usize,
    item: bool,
    content: bool,
}

fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for raw in text.split_inclusive('\n') {
        let l = raw.trim_end_matches(['\n', '\r']);
        let rest = l.trim_start_matches(' ');
        let indent = l.len() - rest.len();
        let mut key = rest;
        while let Some(r) = key.strip_prefix("- ") {
            key = r.trim_start_matches(' ');
        }
        out.push(Line {
            start,
            end: start + raw.len(),
            indent,
            key_col: l.len() - key.len(),
            item: rest.starts_with("- "),
            content: !rest.is_empty() && !rest.starts_with('#'),
        });
        start += raw.len();
    }
    out
}

/// A block mapping in a list: its `- ` line, its last content line and the
/// column of its keys.
struct Item {
    first: usize,
    last: usize,
    col: usize,
}

fn item(text: &str, ls: &[Line], id_at: usize, anchor: &str) -> Result<Item, String> {
    let li = ls
        .iter()
        .position(|l| l.start <= id_at && id_at < l.end)
        .ok_or("the id is outside the file")?;
    let prefix = &text[ls[li].start..id_at];
    if prefix.contains('{') {
        return Err("it is written in flow style (`{…}`); write it in block style to regenerate part of it".into());
    }
    let before = prefix
        .trim_end_matches(['"', '\''])
        .trim_end()
        .strip_suffix(&format!("{anchor}:"))
        .ok_or_else(|| format!("its `{anchor}:` is not where its span says"))?;
    if !before.bytes().all(|b| b == b' ' || b == b'-') {
        return Err("its `id:` is not a key of a block mapping".into());
    }
    let col = before.len();
    let first = if ls[li].item && ls[li].key_col == col {
        li
    } else {
        (0..li)
            .rev()
            .find(|&j| ls[j].content && ls[j].indent < col)
            .filter(|&j| ls[j].item && ls[j].key_col == col)
            .ok_or("cannot find the `- ` that opens it")?
    };
    let mut last = li;
    for (j, l) in ls.iter().enumerate().skip(li + 1) {
        if !l.content {
            continue;
        }
        if l.indent < col {
            break;
        }
        last = j;
    }
    Ok(Item { first, last, col })
}

/// Byte range of `key:` and its value inside `it`, if the key is there.
fn key_block(text: &str, ls: &[Line], it: &Item, key: &str) -> Option<(usize, usize)> {
    let c = it.col;
    let at = (it.first..=it.last).find(|&j| {
        let l = &ls[j];
        let is_key_line = l.content && l.key_col == c && (j == it.first || (!l.item && l.indent == c));
        is_key_line && {
            let rest = &text[l.start + c..l.end];
            rest.strip_prefix(key)
                .is_some_and(|r| r.starts_with(':') && r[1..].chars().next().is_none_or(char::is_whitespace))
        }
    })?;
    let mut last = at;
    for (j, l) in ls.iter().enumerate().take(it.last + 1).skip(at + 1) {
        if !l.content {
            continue;
        }
        if l.indent > c || (l.indent == c && l.item) {
            last = j;
        } else {
            break;
        }
    }
    Some((ls[at].start + c, ls[last].end))
}

/// Replace (or add) `key` in the block mapping whose `id` value starts at
/// byte `id_at`. `render(col)` gives the new `key: …` text for keys at
/// column `col`: its first line unindented, every line ending in `\n`.
pub fn set_key(text: &str, id_at: usize, key: &str, render: impl Fn(usize) -> String) -> Result<String, String> {
    set_key_by(text, id_at, "id", key, render)
}

/// [`set_key`] in a block mapping found by the value of its key `anchor`
/// (a dialogue line by its `speaker:`).
pub fn set_key_by(
    text: &str,
    at: usize,
    anchor: &str,
    key: &str,
    render: impl Fn(usize) -> String,
) -> Result<String, String> {
    let ls = lines(text);
    let it = item(text, &ls, at, anchor)?;
    let block = render(it.col);
    let mut out = String::with_capacity(text.len() + block.len());
    match key_block(text, &ls, &it, key) {
        Some((start, end)) => {
            out.push_str(&text[..start]);
            out.push_str(&block);
            // A last line without `\n` stays without one.
            if end == text.len() && !text.ends_with('\n') {
                out.pop();
            }
            out.push_str(&text[end..]);
        }
        None => {
            let at = ls[it.last].end;
            out.push_str(&text[..at]);
            if !text[..at].ends_with('\n') {
                out.push('\n');
            }
            let _ = write!(out, "{}{block}", " ".repeat(it.col));
            out.push_str(&text[at..]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
scenes:
  - id: s01   # the first
    title: A
    shots:
      - id: sh01
        duration: 2
        # the old lines
        dialogue:
          - speaker: kai
            # keep? no: inside the block
            text: \"Hi\"
        # after the dialogue
      - type: wide
        id: sh02
        duration: 3
  - id: s02
    shots:
    - id: sh01
      duration: 1
";

    fn at(text: &str, needle: &str) -> usize {
        text.find(needle).unwrap() + needle.len()
    }

    fn new_block(col: usize) -> String {
        format!(
            "dialogue:\n{}- speaker: mio\n{}text: Yo\n",
            " ".repeat(col + 2),
            " ".repeat(col + 4)
        )
    }

    #[test]
    fn replaces_only_the_block() {
        let out = set_key(DOC, at(DOC, "      - id: "), "dialogue", new_block).unwrap();
        let want = DOC.replace(
            "        dialogue:\n          - speaker: kai\n            # keep? no: inside the block\n            text: \"Hi\"\n",
            "        dialogue:\n          - speaker: mio\n            text: Yo\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn adds_a_missing_key_after_the_last_line() {
        let out = set_key(DOC, at(DOC, "        id: "), "dialogue", new_block).unwrap();
        let want = DOC.replace(
            "        duration: 3\n",
            "        duration: 3\n        dialogue:\n          - speaker: mio\n            text: Yo\n",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn compact_sequences_and_last_lines() {
        let out = set_key(
            DOC,
            at(DOC, "  - id: s02\n    shots:\n    - id: "),
            "dialogue",
            new_block,
        )
        .unwrap();
        assert!(
            out.ends_with("      duration: 1\n      dialogue:\n        - speaker: mio\n          text: Yo\n"),
            "{out}"
        );
        let shots = |col: usize| format!("shots:\n{}- id: sh09\n", " ".repeat(col + 2));
        let out = set_key(DOC, at(DOC, "  - id: "), "shots", shots).unwrap();
        assert!(
            out.starts_with(
                "scenes:\n  - id: s01   # the first\n    title: A\n    shots:\n      - id: sh09\n  - id: s02\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn flow_style_is_refused() {
        let doc = "shots:\n  - {id: sh01, duration: 2}\n";
        let e = set_key(doc, at(doc, "{id: "), "dialogue", new_block).unwrap_err();
        assert!(e.contains("flow style"), "{e}");
    }
}
