//! The JSON and JSONB cells: the scans that guard them and the text a
//! jsonb column takes.

use super::*;

/// The shortcuts in front of the byte walks (a count of opening brackets,
/// a search for the first backslash) answer as the walks alone do.
#[test]
fn the_json_scans_shortcuts_agree_with_the_walks() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    assert!(!nested_deeper_than(deep(3).as_bytes(), 3));
    assert!(nested_deeper_than(deep(4).as_bytes(), 3));
    // Four brackets, three of them in a string: more than the limit by
    // count, not by nesting.
    assert!(!nested_deeper_than(br#"{"a": "[[{"}"#, 3));
    assert!(nested_deeper_than(br#"{"a": "[", "b": [[{"c": 1}]]}"#, 3));
    // Siblings: many brackets, little depth.
    assert!(!nested_deeper_than(br#"[[1], [2], {"a": 3}, [4]]"#, 2));

    assert!(!has_nul_escape(br#"{"a": "x"}"#));
    assert!(has_nul_escape(br#"{"a": "\n", "b": "\u0000"}"#));
    assert!(!has_nul_escape(br#"{"a": "\\u0000"}"#));
    assert!(has_nul_escape(br#"{"a": "\\\u0000"}"#));
    assert!(!has_nul_escape(br#"{"a": "\"", "b": "\\\\u0000"}"#));
}

/// An array or object taken from a document goes into jsonb as it came
/// (Postgres parses it; a tree would only serialise it again), and is
/// refused as the tree path refuses it; json keeps the tree's compact form.
#[test]
fn jsonb_takes_an_extracted_array_or_object_as_it_came() {
    let text = r#"{ "b": [1, 2.50, "x\"y"], "a": {"c": null} }"#;
    let as_it_came = [b"\x01", text.as_bytes()].concat();
    assert_eq!(
        coerce(&ColumnSpec::of(Jsonb), Src::JsonText(text)),
        Ok(Cell::Bytes(as_it_came))
    );
    let tree: Value = serde_json::from_str(text).unwrap();
    let compact = serde_json::to_string(&tree).unwrap().into_bytes();
    assert_ne!(compact, text.as_bytes());
    assert_eq!(
        coerce(&ColumnSpec::of(Json), Src::JsonText(text)),
        Ok(Cell::Bytes(compact))
    );
    // Scalars still take the scalar path: a string is escaped again.
    assert_eq!(
        coerce(&ColumnSpec::of(Jsonb), Src::JsonText(r#""\u00e9""#)),
        Ok(Cell::Bytes("\x01\"é\"".into()))
    );
    for refused in [r#"["\u0000"]"#, r#"{"a": "b\u0000"}"#] {
        let got = coerce(&ColumnSpec::of(Jsonb), Src::JsonText(refused));
        assert_eq!(
            got,
            Err("jsonb cannot store the escape \\u0000".into()),
            "{refused}"
        );
    }
    let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
    assert!(coerce(&ColumnSpec::of(Jsonb), Src::JsonText(&deep)).is_err());
    let spec = ColumnSpec {
        not_null: true,
        ..ColumnSpec::of(Jsonb)
    };
    assert_eq!(
        coerce(&spec, Src::JsonText("[]")),
        Ok(Cell::Bytes(b"\x01[]".to_vec()))
    );
}
