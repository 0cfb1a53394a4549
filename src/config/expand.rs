//! `${VAR}` expansion on the raw configuration text, and turning YAML errors
//! on the expanded text back into problems about the file the user wrote
//! (source line numbers, no expanded values).

use super::Problem;

/// The configuration text after `${VAR}` expansion.
#[derive(Debug)]
pub(crate) struct Expanded {
    /// The expanded text, ready for the YAML parser.
    pub text: String,
    /// For each line of `text` (index 0 = line 1), its 1-based source line.
    pub source_lines: Vec<usize>,
    /// 1-based source lines whose text a substitution changed (columns on
    /// them no longer match the file).
    pub changed_lines: Vec<usize>,
    /// Values taken from the environment; they may be secrets and must never
    /// appear in an error message.
    pub secrets: Vec<String>,
}

/// Expands `${VAR}`, `${VAR:-default}` (default used when VAR is unset or
/// empty) and `$${` (a literal `${`) everywhere except in YAML comments.
/// Every missing variable and malformed reference is reported at once.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<Problem>> {
    let mut out = Expanded {
        text: String::with_capacity(text.len()),
        source_lines: Vec::new(),
        changed_lines: Vec::new(),
        secrets: Vec::new(),
    };
    let mut problems = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let before = out.text.len();
        let changed = expand_line(line, number, env, &mut out, &mut problems);
        if changed {
            out.changed_lines.push(number);
        }
        let produced = out.text[before..]
            .trim_end_matches('\n')
            .matches('\n')
            .count();
        out.source_lines
            .extend(std::iter::repeat_n(number, produced + 1));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Expands one line into `out.text`; returns whether a substitution happened.
fn expand_line(
    line: &str,
    number: usize,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Expanded,
    problems: &mut Vec<Problem>,
) -> bool {
    let path = format!("line {number}");
    let mut changed = false;
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        if quote.is_none() && rest.starts_with('#') && prev.is_none_or(char::is_whitespace) {
            out.text.push_str(rest); // a comment: left as written
            break;
        }
        if rest.starts_with("$${") {
            out.text.push_str("${");
            changed = true;
            i += 3;
            prev = Some('{');
            continue;
        }
        if let Some(body) = rest.strip_prefix("${") {
            let Some(close) = body.find('}') else {
                problems.push(Problem::new(
                    &path,
                    "`${` is not closed; write ${NAME}, or $${ for a literal ${",
                ));
                out.text.push_str(rest);
                break;
            };
            let reference = &body[..close];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if !is_variable_name(name) {
                problems.push(Problem::new(
                    &path,
                    format!(
                        "`${{{name}}}` is not a valid variable reference; names use letters, digits and _ (write ${{NAME}}, ${{NAME:-default}}, or $${{ for a literal ${{)"
                    ),
                ));
            } else {
                match (env(name), default) {
                    (Some(value), None) => {
                        out.text.push_str(&quoted_for(quote, &value));
                        out.secrets.push(value);
                    }
                    (Some(value), Some(_)) if !value.is_empty() => {
                        out.text.push_str(&quoted_for(quote, &value));
                        out.secrets.push(value);
                    }
                    (_, Some(default)) => out.text.push_str(default),
                    (None, None) => {
                        let message = format!(
                            "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
                        );
                        if !problems
                            .iter()
                            .any(|p| p.path == path && p.message == message)
                        {
                            problems.push(Problem::new(&path, message));
                        }
                    }
                }
            }
            changed = true;
            i += 2 + close + 1;
            prev = Some('}');
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        out.text.push(c);
        i += c.len_utf8();
        match quote {
            Some('"') if c == '\\' => {
                // An escape inside a double-quoted scalar: copy the next char too.
                if let Some(next) = line[i..].chars().next() {
                    out.text.push(next);
                    i += next.len_utf8();
                }
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && opens_quote(&line[..i - 1]) => quote = Some(c),
            None => {}
        }
        prev = Some(c);
    }
    changed
}

/// `value` as it must be written inside the YAML scalar it stands in, so
/// that YAML reads back exactly the value (a password may hold `\`, `"` or
/// `'`): escaped inside double quotes, `'` doubled inside single quotes.
/// Line breaks are left as they are (YAML folds them in quoted scalars).
fn quoted_for(quote: Option<char>, value: &str) -> std::borrow::Cow<'_, str> {
    match quote {
        Some('"') if value.contains(['\\', '"']) => {
            value.replace('\\', "\\\\").replace('"', "\\\"").into()
        }
        Some('\'') if value.contains('\'') => value.replace('\'', "''").into(),
        _ => value.into(),
    }
}

/// Whether a quote after `before` starts a quoted YAML scalar (rather than
/// being part of a plain scalar like `don't`).
fn opens_quote(before: &str) -> bool {
    matches!(
        before.trim_end().chars().last(),
        None | Some(':' | '-' | '[' | '{' | ',' | '?')
    )
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PG_PASSWORD" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, Vec<Problem>> {
        expand(text, &env).map(|e| e.text)
    }

    #[test]
    fn set_default_and_escape() {
        assert_eq!(
            run("url: x:${PG_PASSWORD}@h\n").unwrap(),
            "url: x:s3cret@h\n"
        );
        assert_eq!(run("a: ${NOPE:-dflt}\n").unwrap(), "a: dflt\n");
        assert_eq!(run("a: ${NOPE:-}\n").unwrap(), "a: \n");
        assert_eq!(run("a: ${EMPTY:-dflt}\n").unwrap(), "a: dflt\n");
        assert_eq!(run("a: '${EMPTY}'\n").unwrap(), "a: ''\n");
        assert_eq!(
            run("a: $${NOPE} $x $$ ${PG_PASSWORD:-d}").unwrap(),
            "a: ${NOPE} $x $$ s3cret"
        );
    }

    #[test]
    fn comments_are_not_expanded() {
        assert_eq!(run("a: 1 # ${NOPE}\n").unwrap(), "a: 1 # ${NOPE}\n");
        assert_eq!(run("# ${NOPE}\n").unwrap(), "# ${NOPE}\n");
        assert_eq!(run("a: \"#${PG_PASSWORD}\"\n").unwrap(), "a: \"#s3cret\"\n");
        assert_eq!(run("a: b#${PG_PASSWORD}\n").unwrap(), "a: b#s3cret\n");
    }

    #[test]
    fn every_missing_variable_is_reported() {
        let problems = run("a: ${ONE}\nb: ok\nc: ${TWO} ${TWO}\n").unwrap_err();
        assert_eq!(
            problems,
            vec![
                Problem::new(
                    "line 1",
                    "environment variable ONE is not set (set it, or write ${ONE:-default})"
                ),
                Problem::new(
                    "line 3",
                    "environment variable TWO is not set (set it, or write ${TWO:-default})"
                ),
            ]
        );
    }

    #[test]
    fn malformed_references() {
        let problems = run("a: ${}\nb: ${A B}\nc: ${OPEN\n").unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["line 1", "line 2", "line 3"]);
        assert!(problems[2].message.contains("not closed"), "{problems:?}");
    }
}
