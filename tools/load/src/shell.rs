//! Splitting `--run-flags` into words as a POSIX shell would: blanks
//! separate words, single quotes keep everything, double quotes keep all but
//! `\$`, `` \` ``, `\"`, `\\` and backslash-newline, a backslash outside quotes
//! escapes the next character, and `#` at the start of a word begins a
//! comment. There is no expansion: `$VAR`, `*` and backquotes stay as written.

/// The words of `s`, or why it cannot be split.
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word has started (even if empty so far: `''` is an empty word).
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => match chars.next() {
                None => return Err("it ends with a lone backslash".to_string()),
                // Line continuation: nothing.
                Some('\n') => {}
                Some(next) => {
                    word.push(next);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("a single quote (') is not closed".to_string()),
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("a double quote (\") is not closed".to_string()),
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&c @ ('$' | '`' | '"' | '\\')) => {
                                word.push(c);
                                chars.next();
                            }
                            Some('\n') => {
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        Some(c) => word.push(c),
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn splits_like_sh() {
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("  \t\n "), Vec::<String>::new());
        assert_eq!(ok("--rm -p 8080:80"), ["--rm", "-p", "8080:80"]);
        assert_eq!(
            ok(r#"-e "GREETING=hello world" -e 'A=$HOME "x"'"#),
            ["-e", "GREETING=hello world", "-e", r#"A=$HOME "x""#]
        );
        assert_eq!(ok(r"a\ b c\\d \'e"), ["a b", r"c\d", "'e"]);
        assert_eq!(ok(r#""a\"b\\c\$d\e\`""#), [r#"a"b\c$d\e`"#]);
        assert_eq!(ok("x'' '' \"\""), ["x", "", ""]);
        assert_eq!(ok("a\"b c\"'d e'f"), ["ab cd ef"]);
        assert_eq!(ok("--rm \\\n -it"), ["--rm", "-it"]);
        assert_eq!(ok("\"a\\\nb\""), ["ab"]);
        assert_eq!(ok("--rm # a comment\n-it a#b"), ["--rm", "-it", "a#b"]);
        assert_eq!(ok("$HOME *"), ["$HOME", "*"]);
    }

    #[test]
    fn unbalanced_quotes_are_errors() {
        assert!(split("'abc").unwrap_err().contains("single quote"));
        assert!(split("\"abc").unwrap_err().contains("double quote"));
        assert!(split("abc\\").unwrap_err().contains("backslash"));
    }
}
