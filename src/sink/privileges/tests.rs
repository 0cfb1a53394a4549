//! What each route shape needs, derived as `TableWriter` writes it (the
//! integration test tests/it/privileges.rs proves the set against Postgres).

use super::state::state_needs;
use super::*;
use crate::config::Config;

fn route(extra: &str) -> RouteConfig {
    let yaml = format!(
        r#"
kafka: {{ brokers: "b:9092", group_id: g }}
postgres: {{ url: "postgres://u@h/db" }}
routes:
  - topic: t
    table: t
    columns: {{ id: $key/id, v: /v, amount: /amount }}
{extra}
"#
    );
    Config::from_yaml(&yaml, |_| None)
        .expect("valid config")
        .routes
        .remove(0)
}

const ALL: &[&str] = &["id", "v", "amount", "note"];

fn privileges(needs: &RouteNeeds) -> Vec<(&'static str, Vec<&str>)> {
    needs
        .table
        .iter()
        .map(|n| {
            (
                n.privilege.as_str(),
                n.columns.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

#[test]
fn a_plain_append_needs_insert_on_its_columns_only() {
    let needs = route_needs(&route(""), ALL);
    assert_eq!(privileges(&needs), [("INSERT", vec!["amount", "id", "v"])]);
    assert!(
        !needs.temporary,
        "a plain COPY goes straight into the table"
    );
    let needs = route_needs(&route("    write_method: insert"), ALL);
    assert!(!needs.temporary);
}

/// `ON CONFLICT DO NOTHING` names no arbiter: no SELECT; the stage of a
/// COPY needs TEMPORARY, INSERT ... VALUES does not.
#[test]
fn an_append_with_a_key_needs_no_select() {
    let needs = route_needs(&route("    key: [id]"), ALL);
    assert_eq!(privileges(&needs), [("INSERT", vec!["amount", "id", "v"])]);
    assert!(needs.temporary);
    let needs = route_needs(&route("    key: [id]\n    write_method: insert"), ALL);
    assert!(!needs.temporary);
}

#[test]
fn an_upsert_needs_select_update_and_delete_only_for_tombstones() {
    let upsert = "    mode: upsert\n    key: [id]\n    version: v";
    let needs = route_needs(&route(upsert), ALL);
    assert_eq!(
        privileges(&needs),
        [
            ("INSERT", vec!["amount", "id", "v"]),
            ("SELECT", vec!["amount", "id", "v"]),
            ("UPDATE", vec!["amount", "v"]),
        ]
    );
    assert!(needs.temporary);
    let needs = route_needs(
        &route(&format!("{upsert}\n    delete_on_tombstone: true")),
        ALL,
    );
    assert_eq!(
        needs.table.last().map(|n| n.privilege),
        Some(Privilege::Delete)
    );
    assert!(needs.table.last().is_some_and(|n| n.columns.is_empty()));
    let needs = route_needs(&route(&format!("{upsert}\n    write_method: insert")), ALL);
    assert!(!needs.temporary);
}

/// Every mapped column in the key: ON CONFLICT (key) DO NOTHING, which
/// updates nothing.
#[test]
fn an_upsert_of_key_columns_alone_needs_no_update() {
    let yaml = "    mode: upsert\n    key: [id, v, amount]";
    let needs = route_needs(&route(yaml), ALL);
    assert!(needs.table.iter().all(|n| n.privilege != Privilege::Update));
}

#[test]
fn columns_missing_from_the_table_are_left_to_plan_route() {
    let needs = route_needs(&route(""), &["id", "v"]);
    assert_eq!(privileges(&needs), [("INSERT", vec!["id", "v"])]);
}

#[test]
fn the_state_schema_needs_select_on_schema_migrations_only_with_auto_migrate() {
    let yaml = |auto: bool| {
        format!(
            "kafka: {{ brokers: \"b:9092\", group_id: g }}\n\
             postgres: {{ url: \"postgres://u@h/db\", auto_migrate: {auto} }}\n\
             routes: [{{ topic: t, table: t, columns: {{ a: /a }} }}]\n"
        )
    };
    let tables = |auto| {
        let config = Config::from_yaml(&yaml(auto), |_| None).expect("valid");
        state_needs(&config)
            .iter()
            .map(|(t, _, _)| *t)
            .collect::<Vec<_>>()
    };
    assert_eq!(tables(false), ["offsets", "halts", "dead_letters"]);
    assert_eq!(
        tables(true),
        ["offsets", "halts", "dead_letters", "schema_migrations"]
    );
}
