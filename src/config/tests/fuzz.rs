//! Property tests ("fuzzing" with proptest) of the configuration text:
//! `${VAR}` expansion, YAML parsing and validation on arbitrary text and on
//! mutations of the shipped examples, and the redaction of secrets. Never a
//! panic; a config or a list of problems; and no value taken from the
//! environment, nor a password in a URL, in any message or Debug output.
//! docs/testing.md ("Fuzzing") says how to run a longer campaign.

mod mutations;
mod names;
mod regressions;

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;

use super::super::expand::expand;
use super::*;
use mutations::{apply, examples, mutation};

/// `cases` per target in CI; `PROPTEST_CASES` raises every target to at
/// least that many for a longer campaign. Failures become named tests
/// (`regressions`), not regression files.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(cases, |n: u32| n.max(cases));
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of configuration text that matter to expansion and to YAML.
const FRAGMENTS: &[&str] = &[
    "${",
    "}",
    "$${",
    "${A}",
    "${B:-x}",
    "${ B }",
    "${A:-}",
    "${9}",
    "${UNSET}",
    "${EMPTY:-d}",
    "${MULTI}",
    "#",
    " #",
    "'",
    "\"",
    "\\",
    "\n",
    "\r\n",
    ": ",
    "- ",
    "  ",
    "é",
    "\t",
    "{",
    "[",
    "&a ",
    "*a",
    "!!str ",
    "? ",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "\u{0}",
    "\u{feff}",
];

/// Values the environment holds; those starting with `SECRET` must never
/// be shown (they are long enough that a message cannot hold them by chance).
fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a\nb".to_owned()),
        "SECRET-[a-z0-9]{6}",
        "SECRET-[a-z0-9]{3}(\"|'|\\\\|: |#| |\n|,|\\{|\\]|@|/)[a-z0-9]{3}",
        "\\PC{0,8}",
    ]
}

fn env_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(
        select(
            &[
                "A",
                "B",
                "EMPTY",
                "MULTI",
                "PG_PASSWORD",
                "KAFKA_API_SECRET",
                "KAFKA_API_KEY",
                "KAFKA_BROKERS",
                "X_1",
            ][..],
        )
        .prop_map(str::to_owned),
        env_value(),
        0..9,
    )
}

fn text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![3 => select(FRAGMENTS).prop_map(str::to_owned), 2 => "\\PC{0,10}", 1 => any::<String>()],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// The ways a secret could be shown: as it is, or escaped inside a quoted
/// (Debug) string.
fn shows(shown: &str, secret: &str) -> bool {
    let escaped = format!("{secret:?}");
    shown.contains(secret) || shown.contains(&escaped[1..escaped.len() - 1])
}

/// Values of `env` that must not be shown because `source` does not hold
/// them itself.
fn secrets<'a>(env: &'a BTreeMap<String, String>, source: &str) -> Vec<&'a str> {
    env.values()
        .filter(|v| v.starts_with("SECRET") && !source.contains(v.as_str()))
        .map(String::as_str)
        .collect()
}

/// Parses `text`; checks the outcome is a valid config or a list of
/// problems, and that nothing shown holds a secret.
fn check_parse(text: &str, env: &BTreeMap<String, String>) -> Result<(), TestCaseError> {
    let hidden = secrets(env, text);
    match Config::from_yaml(text, |name| env.get(name).cloned()) {
        Ok(config) => {
            prop_assert!(config.validate().is_empty());
            let debug = format!("{config:?}");
            let url = config.postgres.url.expose();
            prop_assert!(
                url.len() < 8 || !debug.contains(url),
                "Debug shows the URL: {debug}"
            );
        }
        Err(ConfigError::Invalid(problems)) => {
            prop_assert!(!problems.is_empty());
            for p in &problems {
                prop_assert!(!p.path.is_empty() && !p.message.is_empty(), "{p:?}");
            }
            let err = ConfigError::Invalid(problems);
            for shown in [err.to_string(), format!("{err:?}")] {
                for secret in &hidden {
                    prop_assert!(!shows(&shown, secret), "{secret:?} shown in:\n{shown}");
                }
            }
        }
        Err(other) => prop_assert!(false, "from_yaml read a file: {other}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(30_000))]

    #[test]
    fn expansion_takes_any_text_and_shows_no_value(text in text(), env in env_map()) {
        let lines = text.split_inclusive('\n').count();
        match expand(&text, &|name| env.get(name).cloned()) {
            Ok(expanded) => {
                if !text.contains('$') {
                    prop_assert_eq!(&expanded.text, &text);
                    prop_assert!(expanded.secrets.is_empty());
                }
                for value in &expanded.secrets {
                    prop_assert!(env.values().any(|v| v == value));
                }
                prop_assert!(expanded.source_lines.windows(2).all(|w| w[0] <= w[1]));
                prop_assert!(expanded.source_lines.iter().all(|&l| (1..=lines).contains(&l)));
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                let hidden = secrets(&env, &text);
                for p in &problems {
                    let line: usize = p.path.strip_prefix("line ").and_then(|n| n.parse().ok()).unwrap_or(0);
                    prop_assert!((1..=lines).contains(&line), "{p:?}");
                    for secret in &hidden {
                        prop_assert!(!shows(&p.message, secret), "{secret:?} in {p:?}");
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(35_000))]

    #[test]
    fn any_text_is_a_config_or_problems(text in text(), env in env_map()) {
        check_parse(&text, &env)?;
    }
}

proptest! {
    #![proptest_config(config(60_000))]

    /// The shipped examples, mutated line by line and byte by byte, with
    /// every variable set (often to a secret with YAML's special characters).
    #[test]
    fn mutated_examples_are_configs_or_problems(
        example in any::<prop::sample::Index>(),
        mutations in vec(mutation(), 1..5),
        env in env_map(),
        fallback in "SECRET-[a-z0-9]{6}",
    ) {
        let examples = examples();
        prop_assume!(!examples.is_empty());
        let text = apply(&examples[example.index(examples.len())], &mutations);
        // Every variable a config names is set: the examples all reference some.
        let mut env = env;
        for name in ["PG_PASSWORD", "KAFKA_API_KEY", "KAFKA_API_SECRET", "A", "B"] {
            env.entry(name.to_owned()).or_insert_with(|| format!("{fallback}{name}"));
        }
        check_parse(&text, &env)?;
    }
}

proptest! {
    #![proptest_config(config(30_000))]

    /// A value inside a quoted YAML string is read back exactly, whatever
    /// it holds (a password may hold `\\`, `"` or `'`).
    #[test]
    fn quoted_values_read_back_exactly(value in "\\PC{0,16}", double in any::<bool>()) {
        let q = if double { '"' } else { '\'' };
        let text = format!("k: {q}<${{V}}>{q}\n");
        let expanded = expand(&text, &|_| Some(value.clone())).map_err(|p| TestCaseError::fail(format!("{p:?}")))?;
        let read: BTreeMap<String, String> = serde_yaml::from_str(&expanded.text)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", expanded.text)))?;
        prop_assert_eq!(&read["k"], &format!("<{value}>"));
    }
}

#[test]
fn the_examples_are_found() {
    assert!(examples().len() >= 4, "the config/*.yaml examples");
}
