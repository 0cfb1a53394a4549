use serde_json::Value;

use super::*;

/// What the extractor gives for `pointers` in `doc`: each pointer's text,
/// or the error.
fn extract(doc: &str, pointers: &[&str]) -> Result<Vec<Option<String>>, String> {
    let (paths, slots) = Paths::compile(pointers.iter().copied());
    let mut out = vec![None; paths.slots()];
    paths
        .extract(doc.as_bytes(), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(slots
        .iter()
        .map(|s| s.and_then(|s| out[s]).map(str::to_owned))
        .collect())
}

/// The same through the tree: each pointer's value, as JSON.
fn oracle(doc: &str, pointers: &[&str]) -> Result<Vec<Option<Value>>, String> {
    let tree: Value = serde_json::from_str(doc).map_err(|e| e.to_string())?;
    Ok(pointers.iter().map(|p| tree.pointer(p).cloned()).collect())
}

/// The extractor agrees with the tree: same refusal, and each taken text
/// parses to the value the tree holds there.
fn agrees(doc: &str, pointers: &[&str]) {
    let got = extract(doc, pointers);
    let want = oracle(doc, pointers);
    match (&got, &want) {
        (Ok(got), Ok(want)) => {
            let parsed: Vec<Option<Value>> = got
                .iter()
                .map(|t| {
                    t.as_deref()
                        .map(|t| serde_json::from_str(t).expect("taken text parses"))
                })
                .collect();
            assert_eq!(&parsed, want, "{doc} {pointers:?}");
        }
        (Err(_), Err(_)) => {}
        _ => panic!("{doc} {pointers:?}: extractor {got:?}, tree {want:?}"),
    }
}

#[test]
fn takes_the_text_of_each_pointed_value() {
    let doc =
        r#"{"id": 7, "customer": {"id": "c-1", "tags": ["a", {"x": 1.50}]}, "n": -0, "s": "h\"i"}"#;
    let got = extract(
        doc,
        &[
            "/id",
            "/customer/id",
            "/customer/tags/1/x",
            "/customer/tags/0",
            "/n",
            "/s",
            "/nope",
            "/id/x",
        ],
    )
    .unwrap();
    let want = [
        Some("7"),
        Some("\"c-1\""),
        Some("1.50"),
        Some("\"a\""),
        Some("-0"),
        Some(r#""h\"i""#),
        None,
        None,
    ];
    assert_eq!(got, want.map(|w| w.map(str::to_owned)));
}

#[test]
fn pointer_escapes_and_array_indexes() {
    let doc = r#"{"a/b": 1, "m~n": 2, "~1": 3, "arr": [10, 11, 12], "obj": {"0": "zero", "01": "x"}, "": {"": 4}}"#;
    for pointers in [
        &[
            "/a~1b", "/m~0n", "/~01", "/arr/2", "/arr/3", "/arr/01", "/arr/+1", "/arr/-",
        ][..],
        &["/obj/0", "/obj/01", "/", "//", "", "id", "/arr/0/x"],
    ] {
        agrees(doc, pointers);
    }
    let got = extract(
        doc,
        &["/a~1b", "/~01", "/arr/2", "/arr/01", "/obj/01", "//", "x"],
    )
    .unwrap();
    let want = [
        Some("1"),
        Some("3"),
        Some("12"),
        None,
        Some("\"x\""),
        Some("4"),
        None,
    ];
    assert_eq!(got, want.map(|w| w.map(str::to_owned)));
}

#[test]
fn a_pointer_and_one_below_it() {
    let doc = r#"{"a": {"b": [1, {"c": true}]}, "z": null}"#;
    agrees(doc, &["", "/a", "/a/b/1/c", "/a/b", "/z"]);
    let got = extract(doc, &["/a", "/a/b/1/c"]).unwrap();
    assert_eq!(got[0].as_deref(), Some(r#"{"b": [1, {"c": true}]}"#));
    assert_eq!(got[1].as_deref(), Some("true"));
    assert_eq!(extract(" [1] ", &[""]).unwrap()[0].as_deref(), Some("[1]"));
}

#[test]
fn the_last_of_repeated_keys_counts() {
    for doc in [
        r#"{"a": 1, "a": 2}"#,
        r#"{"a": {"b": 1}, "a": {"c": 2}}"#,
        r#"{"a": {"c": 2}, "a": {"b": 1}}"#,
        r#"{"a": {"b": 1, "b": {"x": 0}}}"#,
        r#"{"a": [1], "a": 5}"#,
    ] {
        agrees(doc, &["/a", "/a/b", "/a/c", "/a/0", "/a/b/x"]);
        agrees(doc, &["/a/b", "/a/c"]);
    }
    assert_eq!(
        extract(r#"{"a": {"b": 1}, "a": {"c": 2}}"#, &["/a/b"]).unwrap(),
        [None]
    );
}

#[test]
fn invalid_json_anywhere_is_refused() {
    for doc in [
        "",
        "{",
        r#"{"a": 1} x"#,
        r#"{"a": 1, "skip": [1, 2,]}"#,
        r#"{"skip": tru, "a": 1}"#,
        r#"{"skip": "\ud800", "a": 1}"#,
        r#"{"skip": "\udc00x", "a": 1}"#,
        r#"{"skip": "\q", "a": 1}"#,
        "{\"skip\": \"\u{1}\", \"a\": 1}",
        r#"{"a": 1, "skip": 01}"#,
    ] {
        assert!(extract(doc, &["/a"]).is_err(), "{doc}");
        agrees(doc, &["/a"]);
    }
    let not_utf8 = b"{\"skip\": \"\xff\", \"a\": 1}";
    let (paths, _) = Paths::compile(["/a"]);
    assert!(paths.extract(not_utf8, &mut [None]).is_err());
    // Valid escapes, surrogate pairs included, are fine.
    agrees(
        r#"{"skip": "\ud83d\ude00 \u00e9 \\ud800", "a": "\u0041"}"#,
        &["/a"],
    );
}

#[test]
fn nesting_past_the_tree_limit_is_refused_not_a_stack_overflow() {
    let nested = |depth: usize, key: &str| {
        format!(
            "{{\"a\": 1, \"{key}\": {}1{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    for depth in [125, 126, 127, 128, 100_000] {
        for key in ["skip", "a", "deep"] {
            let doc = nested(depth, key);
            agrees(&doc, &["/a", "/deep/0/0"]);
        }
    }
    assert!(extract(&nested(100_000, "skip"), &["/a"])
        .unwrap_err()
        .contains("recursion limit"));
    let deep_pointer = "/0".repeat(100_000);
    let doc = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    assert!(extract(&doc, &[&deep_pointer]).is_err());
}

#[test]
fn numbers_keep_their_text() {
    // The tree spells exponents `e` and a sign; coercion does the same
    // (coerce::source::number), the extractor gives the text as it is.
    for (n, tree_text) in [
        ("0", "0"),
        ("-0", "-0"),
        ("1.10", "1.10"),
        ("1E+2", "1e+2"),
        ("1e2", "1e+2"),
        ("2.5E-3", "2.5e-3"),
        (
            "123456789012345678901234567890.5",
            "123456789012345678901234567890.5",
        ),
        ("1e-999999", "1e-999999"),
        ("-9223372036854775809", "-9223372036854775809"),
    ] {
        let doc = format!(r#"{{"n": {n}}}"#);
        assert_eq!(extract(&doc, &["/n"]).unwrap()[0].as_deref(), Some(n));
        let tree: Value = serde_json::from_str(&doc).unwrap();
        let Some(Value::Number(num)) = tree.pointer("/n") else {
            panic!("{n}")
        };
        assert_eq!(num.as_str(), tree_text);
    }
}

#[test]
fn many_keys_at_one_level() {
    // More children than the linear scan takes: found by binary search.
    let keys: Vec<String> = (0..20).map(|i| format!("k{}", 19 - i)).collect();
    let doc = format!(
        "{{{}}}",
        keys.iter()
            .map(|k| format!("\"{k}\": \"{k}\", \"x{k}\": 0"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pointers: Vec<String> = keys.iter().map(|k| format!("/{k}")).collect();
    let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
    agrees(&doc, &pointers);
    let got = extract(&doc, &pointers).unwrap();
    assert!(got
        .iter()
        .zip(&keys)
        .all(|(g, k)| g.as_deref() == Some(&*format!("\"{k}\""))));
}
