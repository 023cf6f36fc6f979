//! Escaping user text wherever it enters a format with syntax of its own.
//!
//! User text never enters a shell (processes start from argv vectors); these
//! cover ffmpeg filtergraph values, ffmetadata files, concat lists and SRT.

/// A value inside an ffmpeg filtergraph option (`textfile=…`, `fontfile=…`):
/// first the option level (`\ ' :`), then the graph level (`\ ' [ ] , ;`).
pub fn filter_value(s: &str) -> String {
    let mut level1 = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '\\' | '\'' | ':') {
            level1.push('\\');
        }
        level1.push(c);
    }
    let mut level2 = String::with_capacity(level1.len() + 8);
    for c in level1.chars() {
        if matches!(c, '\\' | '\'' | '[' | ']' | ',' | ';') {
            level2.push('\\');
        }
        level2.push(c);
    }
    level2
}

/// A key or value in an `;FFMETADATA1` file (chapter titles): `= ; # \` and
/// newlines are backslash-escaped.
pub fn ffmetadata(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '=' | ';' | '#' | '\\' | '\n') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A path in an ffconcat list: single-quoted, `'` as `'\''`.
pub fn concat_path(path: &str) -> String {
    format!("'{}'", path.replace('\'', r"'\''"))
}

/// Cue text in an SRT file that ffmpeg turns into mov_text. Its decoder reads
/// HTML-like tags, `{\…}` overrides and `\N`; an invisible word joiner
/// (U+2060) after `\`, `{` and `<` keeps them literal. Blank lines would end
/// the cue, so they go.
pub fn srt_text(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    let s = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    s.replace('\\', "\\\u{2060}")
        .replace('{', "{\u{2060}")
        .replace('<', "<\u{2060}")
        .replace("-->", "--\u{2060}>")
}

/// Remove the word joiners [`srt_text`] added, to compare with the source.
pub fn srt_unescape(s: &str) -> String {
    s.replace('\u{2060}', "")
}

/// A name safe as a file name component: letters, digits, `-`, `_`, `.`,
/// spaces; everything else becomes `_`. Used for titles in library paths.
pub fn file_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ' | '\'' | '!' | ',' | '(' | ')' | '&') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c == ' ');
    if trimmed.is_empty() {
        "_".into()
    } else {
        trimmed.chars().take(120).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_escape_both_levels() {
        assert_eq!(filter_value("/tmp/a b/c.txt"), "/tmp/a b/c.txt");
        assert_eq!(filter_value("we'ird:dir,[x];y"), r"we\\\'ird\\:dir\,\[x\]\;y");
        assert_eq!(filter_value(r"C:\p"), r"C\\:\\\\p");
    }

    #[test]
    fn ffmetadata_escapes_specials() {
        assert_eq!(ffmetadata("a=b; #3 \\ x\ny 「夜」"), "a\\=b\\; \\#3 \\\\ x\\\ny 「夜」");
    }

    #[test]
    fn srt_text_keeps_markup_literal() {
        let raw = "He said: <b>\"100%\"</b> {\\an8} C:\\New --> 「夜」";
        let esc = srt_text(raw);
        assert!(!esc.contains("<b") && !esc.contains("{\\") && !esc.contains("\\N") && !esc.contains("-->"));
        assert_eq!(srt_unescape(&esc), raw);
        assert_eq!(srt_text("a\r\n\r\nb"), "a\nb");
    }

    #[test]
    fn file_names_are_tame() {
        assert_eq!(file_name("The Letter: Part 1/2"), "The Letter_ Part 1_2");
        assert_eq!(file_name("../.."), "_");
        assert_eq!(file_name("手紙 (Letter)"), "手紙 (Letter)");
    }
}
