use super::ColType::*;
use super::*;

mod json;

/// 2024-01-01T00:00:00Z: Unix 1_704_067_200 s less the 946_684_800 s to 2000-01-01.
const NEW_YEAR_2024: i64 = 757_382_400_000_000;

/// Cells as short text: binary types in hex, other bytes as text with
/// control bytes escaped, errors after "! ".
fn render(t: ColType, r: Result<Cell, String>) -> String {
    let esc = |c: char| match c.is_control() {
        true => format!("\\x{:02x}", c as u32),
        false => c.to_string(),
    };
    match r {
        Ok(Cell::Bytes(b)) if matches!(t, Numeric | Uuid) => {
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
        Ok(Cell::Bytes(b)) => String::from_utf8(b).unwrap().chars().map(esc).collect(),
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("! {e}"),
    }
}

/// `input` is "tag:rest": j JSON, r raw JSON, b bytes, t text, i int,
/// ms Kafka timestamp, or "-" for missing. `want` is the rendered cell,
/// or "! " and the start of the error.
fn check(spec: &ColumnSpec, input: &str, want: &str) {
    let (tag, rest) = input.split_once(':').unwrap_or((input, ""));
    let json: Value;
    let src = match tag {
        "j" => {
            json = serde_json::from_str(rest).unwrap();
            Src::Json(&json)
        }
        "r" => Src::RawJson(rest.as_bytes()),
        "b" => Src::Bytes(rest.as_bytes()),
        "t" => Src::Text(rest),
        "i" => Src::Int(rest.parse().unwrap()),
        "ms" => Src::TimestampMs(rest.parse().unwrap()),
        _ => Src::Missing,
    };
    let got = render(spec.ctype, coerce(spec, src));
    let matched = if want.starts_with("! ") {
        got.starts_with(want)
    } else {
        got == want
    };
    assert!(matched, "{:?} {input}: got {got}, want {want}", spec.ctype);
}

fn check_all(cases: &[(ColType, &str, &str)]) {
    for (t, input, want) in cases {
        check(&ColumnSpec::of(*t), input, want);
    }
}

#[test]
fn catalog() {
    assert_eq!(ColType::from_oid(1043), Some(Text));
    assert_eq!(ColType::from_oid(19), Some(Text));
    assert_eq!(ColType::from_oid(600), None);
    assert_eq!(Timestamptz.pg_name(), "timestamp with time zone");
    let v = ColumnSpec::from_catalog(1043, 14, true).unwrap();
    assert_eq!((v.ctype, v.not_null, v.max_chars), (Text, true, Some(10)));
    assert_eq!(
        ColumnSpec::from_catalog(1042, -1, false).unwrap().max_chars,
        None
    );
    let n = |typmod| {
        ColumnSpec::from_catalog(1700, typmod, false)
            .unwrap()
            .numeric
    };
    assert_eq!(n((10 << 16 | 2) + 4), Some((10, 2)));
    assert_eq!(n(-1), None);
    assert_eq!(n((5 << 16 | 0x7fe) + 4), None, "negative scale (PG 15)");
    let jsonb = ColumnSpec::from_catalog(3802, -1, false);
    assert_eq!(jsonb, Some(ColumnSpec::of(Jsonb)));
    assert_eq!(ColumnSpec::from_catalog(1186, -1, false), None);
}

#[test]
fn nulls_and_not_null() {
    check_all(&[
        (Int4, "-", "Null"),
        (Jsonb, "j:null", "Null"),
        (Text, "r: null\n", "Null"),
    ]);
    let mut spec = ColumnSpec::of(Text);
    spec.not_null = true;
    for input in ["-", "j:null", "r:null"] {
        check(
            &spec,
            input,
            "! is NOT NULL but the value is null or missing",
        );
    }
    check(&spec, "t:", "");
    check(&spec, "b:null", "null");
}

#[test]
#[rustfmt::skip]
fn integers_and_floats() {
    check_all(&[
        (Int2, "j:-32768", "I16(-32768)"),
        (Int4, "j:2147483647", "I32(2147483647)"),
        (Int8, "j:-9223372036854775808", "I64(-9223372036854775808)"),
        (Int4, "j:\" +42 \"", "I32(42)"),
        (Int8, "i:7", "I64(7)"),
        (Int8, "ms:1700000000000", "I64(1700000000000)"),
        (Int2, "b:-5", "I16(-5)"),
        (Int4, "r:12", "I32(12)"),
        (Int2, "j:32768", "! out of range for smallint: \"32768\""),
        (Int4, "i:2147483648", "! out of range for integer: \"2147483648\""),
        (Int8, "j:9223372036854775808", "! out of range for bigint"),
        (Int8, "j:\"-123456789012345678901234567890\"", "! out of range for bigint"),
        (Int4, "j:12.0", "! not an integer: \"12.0\""),
        (Int4, "j:1.5", "! not an integer"),
        (Int4, "j:1e3", "! not an integer"),
        (Int4, "j:\"\"", "! not an integer"),
        (Int4, "b:x", "! not an integer"),
        (Int4, "j:true", "! cannot write a JSON boolean into a column of type integer"),
        (Int2, "j:{}", "! cannot write a JSON object into a column of type smallint"),
        (Int8, "r:[1]", "! cannot write a JSON array into a column of type bigint"),
        (Float8, "j:1.5", "F64(1.5)"),
        (Float4, "j:0.1", "F32(0.1)"),
        (Float4, "j:16777217", "F32(16777216.0)"),
        (Float8, "j:\"-Infinity\"", "F64(-inf)"),
        (Float4, "t:Infinity", "F32(inf)"),
        (Float8, "b:NaN", "F64(NaN)"),
        (Float8, "i:-3", "F64(-3.0)"),
        (Float8, "j:1e-400", "F64(0.0)"),
        (Float4, "j:1e39", "! out of range for real"),
        (Float8, "j:-1e400", "! out of range for double precision"),
        (Float8, "j:\"1,5\"", "! not a number"),
        (Float8, "j:[1]", "! cannot write a JSON array into a column of type double precision"),
    ]);
    assert_eq!(coerce(&ColumnSpec::of(Int4), Src::Bytes(&[0xff])), Err("not valid UTF-8".into()));
}

#[test]
#[rustfmt::skip]
fn numerics_and_booleans() {
    // Numeric bytes are what PostgreSQL 15's numeric_send gives.
    check_all(&[
        (Numeric, "j:1.5", "000200000000000100011388"),
        (Numeric, "j:\"1.5\"", "000200000000000100011388"),
        (Numeric, "b:15e-1", "000200000000000100011388"),
        (Numeric, "i:-1", "00010000400000000001"),
        (Numeric, "i:-9223372036854775808", "0005000440000000039a0d2c0170156516b0"),
        (Numeric, "j:123456789012345678901234567890.5", "0009000700000001000c0d801ed204d2162e23340d801ed21388"),
        (Numeric, "j:\"abc\"", "! not a valid number: \"abc\""),
        (Numeric, "j:false", "! cannot write a JSON boolean into a column of type numeric"),
        (Bool, "j:true", "Bool(true)"),
        (Bool, "j:\"T\"", "Bool(true)"),
        (Bool, "t:1", "Bool(true)"),
        (Bool, "j:\"FALSE\"", "Bool(false)"),
        (Bool, "b:f", "Bool(false)"),
        (Bool, "j:\" 0 \"", "Bool(false)"),
        (Bool, "j:\"yes\"", "! not a boolean: \"yes\""),
        (Bool, "j:1", "! cannot write a JSON number into a column of type boolean"),
    ]);
    let spec = ColumnSpec { numeric: Some((5, 2)), ..ColumnSpec::of(Numeric) };
    check(&spec, "j:-999.994", "000200004000000303e726d4");
    check(&spec, "j:999.995", "! out of range for numeric(5,2)");
    check(&spec, "t:1000", "! out of range for numeric(5,2)");
}

#[test]
#[rustfmt::skip]
fn text_and_json() {
    check_all(&[
        (Text, "j:\"héllo\"", "héllo"),
        (Text, "j:12.50", "12.50"),
        (Text, "j:false", "false"),
        (Text, r#"j:{"a": [1, 2]}"#, r#"{"a":[1,2]}"#),
        (Text, r#"r:{ "a" : 1 }"#, r#"{ "a" : 1 }"#),
        (Text, "i:-12", "-12"),
        (Text, "t:topic", "topic"),
        (Text, "ms:1704067200123", "2024-01-01T00:00:00.123Z"),
        (Text, r#"j:"\\u0000b""#, r"\u0000b"),
        (Text, r#"j:"a\u0000""#, "! contains a NUL character"),
        (Text, "t:a\0", "! contains a NUL character"),
        (Json, r#"j:"x""#, r#""x""#),
        (Json, r#"j:{"n": 1.10}"#, r#"{"n":1.10}"#),
        (Json, r#"j:"a\u0000""#, r#""a\u0000""#),
        (Json, "b: [1] ", " [1] "),
        (Json, r#"t:say "hi""#, r#""say \"hi\"""#),
        (Json, "b:{nope", "! not valid JSON"),
        (Json, "ms:0", "! cannot write a Kafka timestamp into a column of type json"),
        (Jsonb, "j:[1, true]", r"\x01[1,true]"),
        (Jsonb, r#"r:{"a":1}"#, r#"\x01{"a":1}"#),
        (Jsonb, "i:5", r"\x015"),
        (Jsonb, r#"r:["\\u0000"]"#, r#"\x01["\\u0000"]"#),
        (Jsonb, r#"j:{"k": "a\u0000"}"#, "! jsonb cannot store the escape \\u0000"),
        (Jsonb, r#"r:["\u0000"]"#, "! jsonb cannot store"),
        (Jsonb, "t:a\0", "! jsonb cannot store"),
    ]);
    assert_eq!(coerce(&ColumnSpec::of(Text), Src::Bytes(b"a\xffb")), Err("not valid UTF-8".into()));
    assert!(!has_nul_escape(b"\"\\u000") && !has_nul_escape(b"\\"));
    let varchar4 = ColumnSpec { max_chars: Some(4), ..ColumnSpec::of(Text) };
    check(&varchar4, "t:éééé", "éééé");
    check(&varchar4, "t:abcd   ", "abcd   ");
    check(&varchar4, "t:ééé é", "! is longer than 4 characters");
}

#[test]
#[rustfmt::skip]
fn timestamps() {
    let ny = |extra_micros: i64| format!("I64({})", NEW_YEAR_2024 + extra_micros);
    for t in [Timestamptz, Timestamp] {
        let spec = ColumnSpec::of(t);
        check(&spec, "j:\"2024-01-01T00:00:00Z\"", &ny(0));
        check(&spec, "j:\"2024-01-01T01:00:00+01:00\"", &ny(0));
        check(&spec, "j:\"2023-12-31 19:30:00-0430\"", &ny(0));
        check(&spec, "b:2023-12-31T23:59:60Z", &ny(0));
        check(&spec, "j:\"2024-01-01t00:00:00.1234565+00\"", &ny(123_456));
        check(&spec, "j:\"2024-01-01T00:00:00.12345651Z\"", &ny(123_457));
        check(&spec, "t:2024-01-01T00:00:00.1234575z", &ny(123_458));
        check(&spec, "j:1704067200000", &ny(0));
        check(&spec, "ms:1704067200001", &ny(1000));
        check(&spec, "r:\"2000-01-01T00:00:00Z\"", "I64(0)");
        check(&spec, "i:0", "I64(-946684800000000)");
        for bad in ["2024-13-01T00:00:00Z", "2024-01-01", "2024-01-01T25:00:00Z", "", "x"] {
            check(&spec, &format!("t:{bad}"), "! not a valid timestamp");
        }
        check(&spec, "t:2024-01-01T00:00:00+01:0", "! not a valid timestamp");
        check(&spec, "t:2024-01-01T00:00:00.Z", "! not a valid timestamp");
        check(&spec, "j:1.5", "! not a whole number of epoch milliseconds");
        check(&spec, "ms:9223372036854775807", "! timestamp out of range");
        check(&spec, "i:-9223372036854775808", "! timestamp out of range");
        check(&spec, "j:true", "! cannot write a JSON boolean into a column of type timestamp");
    }
    check(&ColumnSpec::of(Timestamp), "j:\"2024-01-01 00:00:00.5\"", &ny(500_000));
    check(&ColumnSpec::of(Timestamp), "j:\"2024-01-01T00:00:00\"", &ny(0));
    check(&ColumnSpec::of(Timestamptz), "t:2024-01-01T00:00:00", "! timestamp has no time zone");
}

#[test]
#[rustfmt::skip]
fn dates_uuids_bytea() {
    check_all(&[
        (Date, "j:\"2024-01-01\"", "I32(8766)"),
        (Date, "j:\"2000-01-01\"", "I32(0)"),
        (Date, "t:1999-12-31", "I32(-1)"),
        (Date, "b:2024-01-01T23:30:00-01:00", "I32(8767)"),
        (Date, "ms:1704067199999", "I32(8765)"),
        (Date, "ms:-1", "I32(-10958)"),
        (Date, "j:\"2023-02-29\"", "! not a valid date"),
        (Date, "j:\"01/02/2024\"", "! not a valid date"),
        (Date, "j:20240101", "! cannot write a JSON number into a column of type date"),
        (Date, "ms:-9223372036854775808", "! date out of range"),
        (Uuid, "j:\"00112233-4455-6677-8899-aabbccddeeff\"", "00112233445566778899aabbccddeeff"),
        (Uuid, "b:00112233445566778899AABBCCDDEEFF", "00112233445566778899aabbccddeeff"),
        (Uuid, "b:0123456789abcdef", "30313233343536373839616263646566"),
        (Uuid, "j:\"0011\"", "! not a valid UUID"),
        (Uuid, "i:1", "! cannot write an integer into a column of type uuid"),
        (Bytea, "b:hi", "hi"),
        (Bytea, "j:\"aGk=\"", "hi"),
        (Bytea, "r:{}", "{}"),
        (Bytea, "t:t", "t"),
        (Bytea, "j:\"a*b\"", "! not valid base64"),
        (Bytea, "j:[]", "! cannot write a JSON array into a column of type bytea"),
    ]);
    let raw = [0xffu8; 16];
    assert_eq!(coerce(&ColumnSpec::of(Uuid), Src::Bytes(&raw)), Ok(Cell::Bytes(raw.to_vec())));
    assert_eq!(coerce(&ColumnSpec::of(Uuid), Src::Bytes(&raw[1..])), Err("not valid UTF-8".into()));
    assert_eq!(coerce(&ColumnSpec::of(Bytea), Src::Bytes(&raw)), Ok(Cell::Bytes(raw.to_vec())));
}

#[test]
#[rustfmt::skip]
fn never_panics_on_odd_input() {
    let huge = format!("{}.{}e-99999999999999999999", "9".repeat(5000), "1".repeat(5000));
    let junk = [&[][..], b"\xff\xfe", b"\0", b"\xe2\x82", b"\"\\", huge.as_bytes()];
    let values: Vec<Value> = [&huge, "\"\"", "\"\u{10FFFF}\"", "-0", "1e999999999", "[[[]]]", "\"2024-01-01T00:00:00.\""]
        .iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    let types = [Int2, Int4, Int8, Numeric, Float4, Float8, Bool, Text, Json, Jsonb, Timestamptz, Timestamp, Date, Uuid, Bytea];
    for t in types {
        let spec = ColumnSpec { max_chars: Some(0), numeric: Some((1, 0)), ..ColumnSpec::of(t) };
        let mut results = vec![coerce(&spec, Src::Text("\u{10FFFF}"))];
        for b in junk {
            results.extend([coerce(&spec, Src::Bytes(b)), coerce(&spec, Src::RawJson(b))]);
        }
        results.extend(values.iter().map(|v| coerce(&spec, Src::Json(v))));
        for i in [i64::MIN, i64::MAX, 0] {
            results.extend([coerce(&spec, Src::Int(i)), coerce(&spec, Src::TimestampMs(i))]);
        }
        for e in results.into_iter().filter_map(Result::err) {
            assert!(e.chars().count() < 160, "message too long: {e}");
        }
    }
}

#[test]
fn show_truncates() {
    let long = "x".repeat(500);
    assert!(show(&long).chars().count() < 70);
    assert_eq!(show("é\""), "\"é\\\"\"");
}

/// The coercion table in docs/configuration.md ("Coercion: JSON values into
/// column types"): every row's value gives the outcome the row states.
#[test]
fn the_documented_coercion_table_holds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let docs = std::fs::read_to_string(path).unwrap();
    let section = docs
        .split("### Coercion: JSON values into column types")
        .nth(1)
        .and_then(|rest| rest.split("\n#").next())
        .expect("the coercion section");
    let types = [
        Int2,
        Int4,
        Int8,
        Numeric,
        Float4,
        Float8,
        Bool,
        Text,
        Json,
        Jsonb,
        Timestamptz,
        Timestamp,
        Date,
        Uuid,
        Bytea,
    ];
    let (mut rows, mut wrong) = (0, Vec::new());
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let [ty, value, outcome] = cells[..] else {
            panic!("not a table row: {line}")
        };
        let ty = ty.trim_matches('`');
        let (name, not_null) = match ty.strip_suffix(" NOT NULL") {
            Some(name) => (name, true),
            None => (ty, false),
        };
        let ctype = *types
            .iter()
            .find(|t| t.pg_name() == name)
            .unwrap_or_else(|| panic!("unknown type {name}"));
        let spec = ColumnSpec {
            not_null,
            ..ColumnSpec::of(ctype)
        };
        let value: Value = serde_json::from_str(value.trim_matches('`'))
            .unwrap_or_else(|e| panic!("{line}: the value is not JSON: {e}"));
        let got = coerce(&spec, Src::Json(&value));
        let holds = match (outcome.strip_prefix("refused: "), &got) {
            // The message is the first `quoted` part; a note may follow.
            (Some(message), Err(e)) => message
                .split('`')
                .nth(1)
                .is_some_and(|message| e.starts_with(message)),
            (None, Ok(_)) => outcome.starts_with("accepted"),
            _ => false,
        };
        if !holds {
            wrong.push(format!("{line}\n  got {got:?}"));
        }
        rows += 1;
    }
    assert!(
        wrong.is_empty(),
        "rows that do not hold:\n{}",
        wrong.join("\n")
    );
    assert!(rows >= 40, "only {rows} rows found");
}
