use super::*;

#[test]
fn sizes() {
    let cases = [
        ("4MiB", 4 << 20),
        ("512KiB", 512 << 10),
        ("1GiB", 1 << 30),
        ("64KB", 64_000),
        ("2MB", 2_000_000),
        ("1GB", 1_000_000_000),
        ("100B", 100),
        ("4096", 4096),
    ];
    for (text, bytes) in cases {
        assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
    }
    for bad in [
        "big",
        "",
        "MiB",
        "4XB",
        "1.5MiB",
        "-1",
        "99999999999TiB",
        " 4MiB",
    ] {
        assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
    }
    assert_eq!(
        "big".parse::<ByteSize>().unwrap_err(),
        r#"invalid size "big" (write it like "4MiB" or "512KiB")"#
    );
    // One spelling per unit; the message gives it.
    let error = |text: &str| text.parse::<ByteSize>().unwrap_err();
    assert!(
        error("4mib").contains(r#"case-sensitive; write "4MiB""#),
        "{}",
        error("4mib")
    );
    assert!(error("4mb").contains(r#"write "4MB""#));
    assert!(error("4 MB").contains(r#"no space between the number and the unit; write "4MB""#));
    assert!(error("4 MiB").contains(r#"write "4MiB""#));
    assert!(error("4XB").contains("unknown unit \"XB\""));
}

#[test]
fn size_display() {
    assert_eq!(ByteSize(4 << 20).to_string(), "4MiB");
    assert_eq!(ByteSize(1536).to_string(), "1536B");
    assert_eq!(ByteSize(3072).to_string(), "3KiB");
    assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
    assert_eq!(ByteSize(1000).to_string(), "1000B");
    assert_eq!(ByteSize(4 << 20).bytes(), 4 << 20);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(
        parse_duration("1h2m3s4ms"),
        Ok(Duration::from_millis(3_723_004))
    );
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    assert_eq!(
        parse_duration("fast").unwrap_err(),
        r#"invalid duration "fast": expected a number at "fast" (write it like "250ms", "10s", "1m" or "1m30s")"#
    );
}

#[test]
fn durations_have_one_spelling_and_the_error_gives_it() {
    let error = |text: &str| parse_duration(text).unwrap_err();
    for (text, says) in [
        ("1M", "ambiguous (minutes or months?)"),
        ("1S", r#"lower case; write "s""#),
        ("50MS", r#"lower case; write "ms""#),
        ("1H", r#"lower case; write "h""#),
        ("5sec", r#"write the unit "sec" as "s""#),
        ("5 seconds", r#"write the unit "seconds" as "s""#),
        ("2min", r#"write the unit "min" as "m""#),
        ("1 s", "no spaces inside a duration"),
        ("1h 30m", "no spaces inside a duration"),
        ("1d", r#"unknown unit "d"; use ms, s, m or h"#),
        ("1y", r#"unknown unit "y""#),
        (
            "1.5s",
            r#"no fractions; write a smaller unit, like "1500ms""#,
        ),
        ("10", "10 has no unit"),
        ("30s1m", "largest first"),
        ("1s1s", "largest first"),
        ("", "it is empty"),
        (" 1s", "expected a number"),
        ("99999999999999999999s", "too large"),
        ("18446744073709551615h", "too long"),
    ] {
        assert!(error(text).contains(says), "{text}: {}", error(text));
    }
}
