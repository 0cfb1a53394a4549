//! Every failure the config fuzz targets found, as a named test (each one
//! fails without its fix).

use super::super::*;

/// Found by `mutated_examples_are_configs_or_problems`: validation quoted
/// field values that came from `${VAR}` (here a topic), so a secret put in
/// the wrong field was printed by `sluice check` and at start-up. Problems
/// are now scrubbed like YAML errors, also where Debug quoting escapes the
/// value inside a longer string.
#[test]
fn validation_problems_do_not_show_expanded_values() {
    let text = MINIMAL
        .replace("topic: orders", "topic: \"${T},,${T}\"")
        .replace("table: orders", "table: '${Q}.a.b'");
    let env = |name: &str| match name {
        "T" => Some("hunter2-secret".to_owned()),
        "Q" => Some("quote\"d-secret".to_owned()),
        _ => None,
    };
    let err = Config::from_yaml(&text, env).unwrap_err();
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        // Whole values are scrubbed, also escaped inside a quoted string; a
        // parser that echoes the rest of a value after an error still shows
        // that rest (here `"d-secret.a.b`).
        assert!(!shown.contains(r#"quote"d-secret"#), "{shown}");
        assert!(!shown.contains(r#"quote\"d-secret"#), "{shown}");
        assert!(
            shown.contains("routes[0].topic") && shown.contains("routes[0].table"),
            "{shown}"
        );
    }
}

/// Found by `any_text_is_a_config_or_problems`: `? ${A:-}` (a YAML
/// complex key, empty) gave a problem with an empty path; it now names
/// the line.
#[test]
fn an_unknown_empty_field_names_its_line() {
    let err = Config::from_yaml("? ${A:-}", |_| None).unwrap_err();
    let ConfigError::Invalid(problems) = err else {
        panic!("not a problem list: {err}");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "line 1");
    assert!(
        problems[0].message.starts_with("unknown field ``"),
        "{problems:?}"
    );
}

/// Found by `passwords_never_survive_redaction`: a key/value connection
/// string whose password holds `://` was taken for a URL and logged as it
/// was, password included.
#[test]
fn a_key_value_password_holding_a_scheme_separator_is_redacted() {
    assert_eq!(
        redact_url("host=db user=a password = '#://*/' dbname=app"),
        "host=db user=a password = *** dbname=app"
    );
    assert_eq!(
        redact_url("host=db password=x://y dbname=app"),
        "host=db password=*** dbname=app"
    );
    assert_eq!(
        redact_url("postgres://u:p@db/app"),
        "postgres://u:***@db/app"
    );
}

/// Found by `mutated_examples_are_configs_or_problems`: a value put inside
/// a quoted YAML string was read with YAML's escapes, so a password with a
/// backslash (`a\nb`) changed (and was shown, changed, in an error), and
/// one with a `"` broke the file. Values are now escaped for the quotes
/// they stand in, so YAML reads back exactly the environment's value.
#[test]
fn values_reach_quoted_yaml_strings_exactly() {
    let password = r#"p\n"q'\"#;
    for (open, close) in [("\"", "\""), ("'", "'")] {
        let text = MINIMAL.replace(
            "url: \"postgres://u@h/db\"",
            &format!("url: {open}postgres://u:${{PW}}@h/db{close}"),
        );
        let config = Config::from_yaml(&text, |_| Some(password.to_owned()))
            .unwrap_or_else(|e| panic!("{open}: {e}"));
        assert_eq!(
            config.postgres.url.expose(),
            format!("postgres://u:{password}@h/db"),
            "quoted with {open}"
        );
    }
}
