//! Text normalization shared across layers: dialogue as the graph keys it,
//! the sim executor times it and captions set it.

/// Text as spoken and subtitled: trimmed, inner whitespace collapsed to
/// single spaces.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn whitespace_is_trimmed_and_collapsed() {
        assert_eq!(super::normalize("  a\n\tb   c "), "a b c");
        assert_eq!(super::normalize(" \n "), "");
    }
}
