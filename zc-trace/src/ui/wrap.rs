//! Prose wrapped to a width, through textwrap: one home for the options every command uses
//! (greedy first fit, as textwrap is built here without its optimal-fit feature).

/// `text` filled to `width` columns, each line after the first indented by `indent`. A word
/// longer than the width stays whole (a path or a command must stay copyable).
pub fn fill(text: &str, width: usize, indent: &str) -> String {
    textwrap::fill(
        text,
        textwrap::Options::new(width)
            .subsequent_indent(indent)
            .break_words(false),
    )
}

/// `text` as lines of at most `width` columns, for fixed-width columns (doctor's); a word
/// longer than the width is cut. An empty text is one empty line.
pub fn lines(text: &str, width: usize) -> Vec<String> {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = textwrap::wrap(&words, textwrap::Options::new(width.max(1)))
        .into_iter()
        .map(|l| l.into_owned())
        .collect();
    if lines.is_empty() {
        vec![String::new()]
    } else {
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_every_word_within_the_width_and_cut_only_longer_words() {
        let text = "a few words and averyveryverylongwordthatcannotfit in the width";
        let l = lines(text, 12);
        assert!(l.iter().all(|l| l.chars().count() <= 12), "{l:?}");
        assert_eq!(l.concat().replace(' ', ""), text.replace(' ', ""));
        assert_eq!(l[0], "a few words");
        assert_eq!(lines("", 10), [""]);
        assert_eq!(lines("tab\tand\nnewline", 80), ["tab and newline"]);
    }

    #[test]
    fn fill_indents_continuations_and_keeps_long_words_whole() {
        let f = fill("one two three /a/very/long/path/name", 10, "  ");
        assert_eq!(f, "one two\n  three\n  /a/very/long/path/name");
    }
}
