//! `$VAR` / `${VAR}` expansion in `env` values, as Dockerfile `ENV` does it:
//! against the environment so far (the base's, then the entries before).
//!
//! Supported: `$NAME` (letters, digits, `_`; a leading digit run is a
//! positional parameter, always empty), `${NAME}`, `${NAME:-default}`
//! (default when unset or empty) and `${NAME:+alternative}` (alternative when
//! set and non-empty), the words themselves expanded. Unknown variables
//! expand to "". `\$` is a literal `$`; no other backslash is special (the
//! values are not Dockerfile text, so `C:\dir` stays as written). A `$` not
//! followed by `{` or a name character is literal (there is no `$$` escape,
//! and `$$` stays `$$`).

/// The value of `name` in a `K=V` list: the first entry with that name
/// (an entry without `=` has an empty value); "" when there is none.
pub fn lookup<'a>(env: &'a [String], name: &str) -> &'a str {
    for e in env {
        match e.split_once('=') {
            Some((k, v)) if k == name => return v,
            None if e == name => return "",
            _ => {}
        }
    }
    ""
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

struct Expander<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [String],
    input: &'a str,
}

impl Expander<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            while let Some(c) = self.peek(0).filter(char::is_ascii_digit) {
                name.push(c);
                self.pos += 1;
            }
            return name;
        }
        while let Some(c) = self.peek(0).filter(|c| is_name_char(*c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn value_of(&self, name: &str) -> String {
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return String::new(); // positional parameters do not exist here
        }
        lookup(self.env, name).to_string()
    }

    /// Expands up to the end, or up to and including the `}` closing a
    /// `${…:-word}` when `in_braces`.
    fn expand(&mut self, in_braces: bool) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                if in_braces {
                    return Err(format!("missing '}}' in {:?}", self.input));
                }
                return Ok(out);
            };
            match c {
                '}' if in_braces => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' if self.peek(1) == Some('$') => {
                    out.push('$');
                    self.pos += 2;
                }
                '$' if self.peek(1) == Some('{') => {
                    self.pos += 2;
                    out.push_str(&self.braced()?);
                }
                '$' if self.peek(1).is_some_and(is_name_char) => {
                    self.pos += 1;
                    let name = self.name();
                    out.push_str(&self.value_of(&name));
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// After `${`: `NAME}`, `NAME:-word}` or `NAME:+word}`.
    fn braced(&mut self) -> Result<String, String> {
        let start = self.pos;
        let name = self.name();
        let bad = |this: &Self| {
            let shown: String = this.chars[start..].iter().take(40).collect();
            format!(
                "bad substitution ${{{shown} in {:?}: only ${{NAME}}, ${{NAME:-default}} and ${{NAME:+alternative}} are supported",
                this.input
            )
        };
        if name.is_empty() {
            return Err(bad(self));
        }
        match (self.peek(0), self.peek(1)) {
            (Some('}'), _) => {
                self.pos += 1;
                Ok(self.value_of(&name))
            }
            (Some(':'), Some(op @ ('-' | '+'))) => {
                self.pos += 2;
                let word = self.expand(true)?;
                let value = self.value_of(&name);
                Ok(match (op, value.is_empty()) {
                    ('-', true) => word,
                    ('-', false) => value,
                    (_, true) => String::new(),
                    (_, false) => word,
                })
            }
            (None, _) => Err(format!("missing '}}' in {:?}", self.input)),
            _ => Err(bad(self)),
        }
    }
}

/// Expands `value` against `env` (a `K=V` list).
pub fn expand(value: &str, env: &[String]) -> Result<String, String> {
    Expander {
        chars: value.chars().collect(),
        pos: 0,
        env,
        input: value,
    }
    .expand(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<String> {
        [
            "PATH=/usr/bin:/bin",
            "EMPTY=",
            "BARE",
            "X=1=2",
            "PATH=shadowed",
        ]
        .map(String::from)
        .to_vec()
    }

    fn ex(s: &str) -> String {
        expand(s, &env()).unwrap()
    }

    #[test]
    fn variables() {
        assert_eq!(ex("$PATH:/app"), "/usr/bin:/bin:/app");
        assert_eq!(ex("${PATH}x"), "/usr/bin:/bin".to_string() + "x");
        assert_eq!(ex("a${X}b"), "a1=2b");
        assert_eq!(ex("$NOPE|${NOPE}|$EMPTY|$BARE"), "|||");
        assert_eq!(ex("$PATHx"), ""); // the name is PATHx
        assert_eq!(ex("$1x"), "x");
        assert_eq!(ex("${ÉTÉ}é"), "é");
    }

    #[test]
    fn literal_dollars_and_escapes() {
        assert_eq!(ex("\\$PATH"), "$PATH");
        assert_eq!(ex("\\${PATH}"), "${PATH}");
        assert_eq!(ex("cost: 5$ $$ $-x $"), "cost: 5$ $$ $-x $");
        assert_eq!(ex("C:\\dir\\n"), "C:\\dir\\n");
        assert_eq!(ex("\\\\$X"), "\\$X"); // only `\$` is an escape
    }

    #[test]
    fn modifiers() {
        assert_eq!(ex("${NOPE:-def}"), "def");
        assert_eq!(ex("${EMPTY:-def}"), "def");
        assert_eq!(ex("${X:-def}"), "1=2");
        assert_eq!(ex("${X:+alt}"), "alt");
        assert_eq!(ex("${NOPE:+alt}"), "");
        assert_eq!(ex("${NOPE:-$PATH/x}"), "/usr/bin:/bin/x");
        assert_eq!(ex("${NOPE:-${X:+in}}!"), "in!");
    }

    #[test]
    fn errors() {
        for bad in [
            "${PATH",
            "${}",
            "${PATH:-x",
            "${!x}",
            "${X#y}",
            "${X-y}",
            "${",
        ] {
            let err = expand(bad, &env()).unwrap_err();
            assert!(
                err.contains("missing '}'") || err.contains("bad substitution"),
                "{bad}: {err}"
            );
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
