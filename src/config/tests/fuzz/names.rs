//! What config values are parsed into: table names, column sources, sizes
//! and durations never panic and print back to themselves; a password in a
//! connection string never survives `redact_url`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::super::*;
use super::config;

fn pieces(of: &'static [&'static str]) -> impl Strategy<Value = String> {
    vec(
        prop_oneof![3 => select(of).prop_map(str::to_owned), 1 => "\\PC{0,3}"],
        0..8,
    )
    .prop_map(|p| p.concat())
}

const NAME_PIECES: &[&str] = &[
    "\"", "\"\"", ".", " ", "a", "B", "é", "$", "_", "1", "order", "select", "My Table", "\u{0}",
    "\t", "x\"y",
];

const SOURCE_PIECES: &[&str] = &[
    "/",
    "$",
    "key",
    "$key",
    "$key/",
    "$headers.",
    "$topic",
    "$offset",
    "~",
    "~0",
    "~1",
    "~2",
    "a",
    "é",
    " ",
];

/// A password: URL-encoded, or raw with the characters people put in
/// them (an unencoded `?` starts the query, so it cannot be told apart).
fn password() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9]{6,12}",
        "[A-Za-z0-9@/:#%!$&*+= ]{6,16}",
        "[a-z0-9]{3}(%40|%3F|%2F)[a-z0-9]{3}",
    ]
    .prop_filter("distinctive", |p| p.trim().len() >= 6)
}

proptest! {
    #![proptest_config(config(80_000))]

    #[test]
    fn table_names_print_back_to_themselves(text in pieces(NAME_PIECES)) {
        if let Ok(table) = TableName::parse(&text) {
            prop_assert!(!table.name.is_empty() && !table.schema.is_empty());
            prop_assert!(table.name.len() <= 63 && table.schema.len() <= 63);
            prop_assert_eq!(TableName::parse(&table.to_string()), Ok(table.clone()));
            prop_assert_eq!(TableName::parse(&table.quoted()), Ok(table.clone()));
        }
    }
}

proptest! {
    #![proptest_config(config(80_000))]

    #[test]
    fn column_sources_print_back_to_themselves(text in pieces(SOURCE_PIECES)) {
        if let Ok(source) = text.parse::<ColumnSource>() {
            prop_assert_eq!(source.to_string().parse::<ColumnSource>(), Ok(source));
        }
    }
}

proptest! {
    #![proptest_config(config(80_000))]

    #[test]
    fn sizes_and_durations_parse_any_text(text in "\\PC{0,12}", bytes in any::<u64>()) {
        let _ = text.parse::<ByteSize>();
        let _ = parse_duration(&text);
        prop_assert_eq!(ByteSize(bytes).to_string().parse::<ByteSize>(), Ok(ByteSize(bytes)));
    }
}

proptest! {
    #![proptest_config(config(80_000))]

    #[test]
    fn passwords_never_survive_redaction(
        user in "[a-z]{1,8}",
        secret in password(),
        host in select(&["db", "127.0.0.1:5432", "[::1]:5432", "a.example.com,b.example.com"][..]),
        query in select(&["", "?sslmode=require", "?application_name=x&sslmode=verify-full"][..]),
        key in select(&["password", "sslpassword", "PASSWORD"][..]),
        form in 0u8..4,
    ) {
        let url = match form {
            0 => format!("postgres://{user}:{secret}@{host}/app{query}"),
            1 => format!("postgresql://{user}@{host}/app?sslmode=require&{key}={}", secret.replace(['&', ' ', '#'], "")),
            2 => format!("host={host} user={user} {key} = '{}' dbname=app", secret.replace('\'', "\\'")),
            _ => format!("host={host} {key}={} dbname=app", secret.replace(' ', "")),
        };
        let shown = redact_url(&url);
        let hidden = match form {
            1 => secret.replace(['&', ' ', '#'], ""),
            3 => secret.replace(' ', ""),
            _ => secret.clone(),
        };
        prop_assert!(hidden.len() < 6 || !shown.contains(&hidden), "{url} -> {shown}");
        prop_assert_eq!(format!("{:?}", Secret::new(url.clone())), "***");
        prop_assert_eq!(Secret::new(url).to_string(), "***");
    }
}
