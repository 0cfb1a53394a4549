//! Turning a serde_yaml error on the expanded text into a problem about the
//! file the user wrote: the field path, source line numbers, and no values
//! that came from the environment.

use super::expand::Expanded;
use super::Problem;

impl Expanded {
    /// Turns a serde_yaml error on the expanded text into one problem: the
    /// dotted field path, serde's message and the location in the source
    /// file. Values from the environment are replaced by ***, and the
    /// expanded line itself is never echoed.
    pub(crate) fn yaml_problem(&self, error: &serde_yaml::Error) -> Problem {
        let text = self.scrub(&error.to_string());
        let (path, message) = split_path(&text);
        let mut path = path.map(str::to_owned);
        for prefix in ["missing field `", "unknown field `"] {
            if let Some(field) = message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .filter(|field| !field.is_empty())
            {
                path = Some(match path {
                    Some(parent) => format!("{parent}.{field}"),
                    None => field.to_owned(),
                });
            }
        }
        let message = self.remap_locations(message);
        let path = path.unwrap_or_else(|| match error.location() {
            Some(location) => format!("line {}", self.source_line(location.line())),
            None => "(top level)".to_owned(),
        });
        Problem::new(path, message)
    }

    /// The 1-based source line of a 1-based line of the expanded text.
    fn source_line(&self, line: usize) -> usize {
        line.checked_sub(1)
            .and_then(|i| self.source_lines.get(i))
            .copied()
            .unwrap_or(line)
    }

    /// Replaces every "line L column C" (serde_yaml's and libyaml's location
    /// format) with the line in the source file; the column is dropped where
    /// expansion shifted it.
    fn remap_locations(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(at) = rest.find("line ") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 5..];
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let Ok(line) = after[..digits].parse::<usize>() else {
                out.push_str("line ");
                rest = after;
                continue;
            };
            let source = self.source_line(line);
            out.push_str(&format!("line {source}"));
            rest = &after[digits..];
            if let Some(column) = rest.strip_prefix(" column ") {
                let digits = column
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(column.len());
                if !self.changed_lines.contains(&source) {
                    out.push_str(&rest[..8 + digits]);
                }
                rest = &column[digits..];
            }
        }
        out.push_str(rest);
        out
    }

    /// A validation problem with the values that came from the environment
    /// replaced by ***: problems quote field values.
    pub(crate) fn scrub_problem(&self, problem: Problem) -> Problem {
        Problem::new(self.scrub(&problem.path), self.scrub(&problem.message))
    }

    /// Replaces values that came from the environment with ***.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            let quoted = format!("{secret:?}");
            text = text
                .replace(&quoted, "\"***\"")
                .replace(&format!("`{secret}`"), "`***`");
            if secret.len() >= 6 {
                // As it is, and escaped inside a longer quoted value.
                text = text
                    .replace(secret.as_str(), "***")
                    .replace(&quoted[1..quoted.len() - 1], "***");
            }
        }
        text
    }
}

/// Splits serde_yaml's "path: message" display. Root-level errors carry no
/// path; libyaml syntax errors never contain ": ".
fn split_path(text: &str) -> (Option<&str>, &str) {
    let root = ["invalid type: ", "invalid value: ", "invalid length "];
    if root.iter().any(|prefix| text.starts_with(prefix)) {
        return (None, text);
    }
    match text.split_once(": ") {
        Some((path, message)) if !path.is_empty() => (Some(path), message),
        _ => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::super::expand::expand;
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "MULTI").then(|| "a\nb".to_owned())
    }

    #[test]
    fn line_numbers_survive_multiline_values() {
        let e = expand("a: \"${MULTI}\"\nb: [\n", &env).unwrap();
        assert_eq!(e.source_line(3), 2);
        assert_eq!(
            e.remap_locations("x at line 3 column 4"),
            "x at line 2 column 4"
        );
        assert_eq!(e.remap_locations("x at line 1 column 4"), "x at line 1");
    }

    #[test]
    fn split_serde_paths() {
        assert_eq!(
            split_path("kafka.linger: bad"),
            (Some("kafka.linger"), "bad")
        );
        assert_eq!(
            split_path("invalid type: unit"),
            (None, "invalid type: unit")
        );
        assert_eq!(
            split_path("missing field `kafka`"),
            (None, "missing field `kafka`")
        );
    }
}
