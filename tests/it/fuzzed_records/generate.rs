//! The generated records: typed JSON with values that fit and values of
//! the wrong type or past a column's limits, near-misses, random bytes,
//! deep and odd whole documents, non-UTF-8 keys and header names, and
//! Kafka timestamps Postgres cannot store.

/// xorshift64*: the same records for the same seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Per field: values that land, and values of the wrong type or past the
/// column's limits (JSON text).
const FIELDS: &[(&str, &[&str], &[&str])] = &[
    (
        "i2",
        &["1", "-32768", "32767", "\"12\"", "null"],
        &["32768", "1.5", "\"x\"", "true"],
    ),
    (
        "i4",
        &["7", "2147483647", "\" 42 \""],
        &["2147483648", "[]", "1e3"],
    ),
    (
        "i8",
        &["-9223372036854775808", "0"],
        &["9223372036854775808", "{}"],
    ),
    (
        "num",
        &["123456789.123", "-0.0005", "\"NaN\"", "1e-5"],
        &["1e9", "\"1,5\"", "\"Infinity\""],
    ),
    (
        "f4",
        &["3.4e38", "-0.0", "\"NaN\"", "1e-46"],
        &["1e39", "\"abc\""],
    ),
    (
        "f8",
        &["1.7976931348623157e308", "5e-324", "\"-Infinity\""],
        &["1e309", "false"],
    ),
    (
        "b",
        &["true", "\"f\"", "\"1\"", "\"FALSE\""],
        &["\"maybe\"", "2"],
    ),
    (
        "t",
        &["\"é日本\"", "\"\\ud83d\\ude00\"", "42", "{\"a\":[1]}"],
        &["\"a\\u0000b\""],
    ),
    (
        "vc",
        &["\"12345678\"", "\"abc     \""],
        &["\"123456789\"", "\"ééééééééé\""],
    ),
    ("ch", &["\"ab\"", "\"abcd  \""], &["\"abcde\""]),
    (
        "nm",
        &[
            "\"orders\"",
            "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
        ],
        &[
            "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
            "\"ééééééééééééééééééééééééééééééééé\"",
        ],
    ),
    ("j", &["{\"a\":1,\"a\":2}", "\"\\u0000\"", "[1e400]"], &[]),
    (
        "jb",
        &["{\"b\":[true,null]}", "\"\\ud83d\\ude00\"", "1e-300"],
        &["{\"x\":\"\\u0000\"}", "1e999999"],
    ),
    (
        "ts",
        &[
            "\"2026-01-02T03:04:05.1234565+02:00\"",
            "1767225600000",
            "\"2026-01-02 23:59:60Z\"",
        ],
        &[
            "\"2026-13-01T00:00:00Z\"",
            "\"2026-01-02T03:04:05\"",
            "1.5",
            "9223372036854775807",
        ],
    ),
    (
        "tsn",
        &["\"2026-03-04 05:06:07\"", "\"0001-01-01T00:00:00Z\""],
        &["\"yesterday\""],
    ),
    (
        "d",
        &["\"2026-02-28\"", "\"2026-02-28T23:00:00-05:00\""],
        &["\"2026-02-30\"", "\"5874898-01-01\""],
    ),
    (
        "u",
        &[
            "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"",
            "\"{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}\"",
        ],
        &["\"not-a-uuid\""],
    ),
    ("raw", &["\"aGVsbG8=\"", "\"\""], &["\"!!\"", "12"]),
];

/// A JSON object of the typed fields: all fitting, or with one field of
/// the wrong type (which dead-letters the record, either in sluice or, for
/// a few jsonb values, when Postgres refuses it).
fn typed_value(rng: &mut Rng) -> Vec<u8> {
    let wrong = rng.below(3) == 0;
    let bad_field = rng.below(FIELDS.len());
    let mut members = Vec::new();
    for (i, (name, good, bad)) in FIELDS.iter().enumerate() {
        if rng.below(8) == 0 {
            continue;
        }
        let value = match wrong && i == bad_field && !bad.is_empty() {
            true => rng.pick(bad),
            false => rng.pick(good),
        };
        members.push(format!("\"{name}\":{value}"));
    }
    format!("{{{}}}", members.join(",")).into_bytes()
}

/// Valid text cut short, with a byte replaced, or with a byte inserted.
fn near_valid(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    let at = rng.below(b.len() + 1);
    match rng.below(3) {
        0 => b.truncate(at),
        1 if at < b.len() => b[at] = b"{}[]\",:\\\xff\x00"[rng.below(10)],
        _ => b.insert(at, rng.next() as u8),
    }
    b
}

fn nested(depth: usize) -> Vec<u8> {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// A whole document for the docs route: valid, nested past 128 levels
/// (and past Postgres' stack), or what jsonb refuses (lone surrogate,
/// invalid UTF-8 in a string, a number numeric cannot hold).
pub fn doc_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => nested([128, 129, 400, 20_000][rng.below(4)]),
        1 => br#"{"s":"\ud800"}"#.to_vec(),
        2 => b"{\"s\":\"\xff\xfe\"}".to_vec(),
        3 => b"[1e999999]".to_vec(),
        4 => rng.bytes(40),
        5 => near_valid(rng, br#"{"a":[1,2,{"b":"c"}]}"#.to_vec()),
        _ => format!(
            r#"{{"n":{},"s":"é{}","a":[null,true]}}"#,
            rng.next() % 1000,
            rng.next() % 7
        )
        .into_bytes(),
    }
}

pub type Header = (Vec<u8>, Option<Vec<u8>>);

pub fn key(rng: &mut Rng) -> Option<Vec<u8>> {
    match rng.below(5) {
        0 => None,
        1 => Some(b"\xff\xfekey".to_vec()),
        2 => Some(rng.bytes(12)),
        _ => Some(format!("key-{}", rng.next() % 100).into_bytes()),
    }
}

pub fn headers(rng: &mut Rng) -> Vec<Header> {
    (0..rng.below(4))
        .map(|_| {
            let name: Vec<u8> = match rng.below(4) {
                0 => b"trace".to_vec(),
                1 => b"\xff\xfeodd".to_vec(),
                2 => b"\\xff".to_vec(),
                _ => rng.bytes(6).into_iter().map(|b| b.max(1)).collect(),
            };
            let value = match rng.below(4) {
                0 => None,
                1 => Some(rng.bytes(10)),
                _ => Some(format!("t-{}", rng.next() % 50).into_bytes()),
            };
            (name, value)
        })
        .collect()
}

/// One record to produce: partition, key, value, headers, timestamp.
pub struct Produce {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub timestamp: Option<i64>,
}

pub fn typed_record(rng: &mut Rng) -> Produce {
    let value = match rng.below(20) {
        0 => None,
        1..=3 => Some(rng.bytes(60)),
        4..=6 => {
            let valid = typed_value(rng);
            Some(near_valid(rng, valid))
        }
        7 => Some([&b"["[..], &typed_value(rng), b"]"].concat()),
        8 => Some(b"null".to_vec()),
        _ => Some(typed_value(rng)),
    };
    let timestamp = match rng.below(12) {
        0 => Some(0),
        1 => Some(9_224_318_016_000_000), // past Postgres' timestamps
        _ => None,
    };
    Produce {
        partition: rng.below(3) as i32,
        key: key(rng),
        value,
        headers: headers(rng),
        timestamp,
    }
}
