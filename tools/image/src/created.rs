//! The image's `created` time: seconds since the epoch or RFC 3339 in,
//! RFC 3339 UTC out (`2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.5Z`).
//! The calendar is the `time` crate's.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Formats an instant as RFC 3339 UTC, years 0000 to 9999, the fraction
/// without trailing zeros.
fn format(t: OffsetDateTime) -> Result<String, String> {
    let t = t
        .checked_to_offset(UtcOffset::UTC)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or("outside years 0000 to 9999 in UTC")?;
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = format!("{:09}", t.nanosecond());
    let fraction = nanos.trim_end_matches('0');
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out.push('Z');
    Ok(out)
}

/// Checks a fraction's digits (nanosecond precision at most).
fn fraction(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the fraction of a second must be digits".into());
    }
    if s.len() > 9 {
        return Err("at most 9 fractional digits (nanoseconds) are supported".into());
    }
    format!("{s:0<9}")
        .parse()
        .map_err(|_| "the fraction of a second must be digits".to_string())
}

fn parse_epoch(s: &str) -> Result<String, String> {
    let (whole, nanos) = match s.split_once('.') {
        Some((w, f)) => (w, fraction(f)?),
        None => (s, 0),
    };
    // 12 digits is already past year 9999; longer would overflow.
    let seconds: i64 = Some(whole)
        .filter(|w| !w.is_empty() && w.len() <= 12 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| "expected whole seconds since the epoch".to_string())?;
    let t =
        OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| "after year 9999".to_string())?;
    let t = t
        .replace_nanosecond(nanos)
        .map_err(|e| format!("the fraction of a second: {e}"))?;
    format(t)
}

fn parse_rfc3339(s: &str) -> Result<String, String> {
    // The `time` crate reads any number of fractional digits; the tools
    // keep nanoseconds, so more would be silently lost.
    if let Some((_, after)) = s.split_once('.') {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        fraction(&after[..digits])?;
    }
    // RFC 3339 lets applications use a space for the `T`, and the `time`
    // crate does; images (and Go's time.RFC3339) use the `T`.
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return Err("expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)".into());
    }
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM): {e}"))?;
    format(t)
}

/// Parses `created` as integer or fractional seconds since the epoch
/// (`1704164645`, `1704164645.5`) or RFC 3339 (`2024-01-02T03:04:05Z`,
/// `2024-01-02T05:04:05.5+02:00`), and returns it as RFC 3339 UTC with a
/// `Z`, the fraction kept (without trailing zeros).
pub fn parse(s: &str) -> Result<String, String> {
    let looks_epoch = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let result = if looks_epoch {
        parse_epoch(s)
    } else {
        parse_rfc3339(s)
    };
    result.map_err(|why| {
        format!(
            "{s:?} is not a time: {why} (expected seconds since the epoch such as 1704164645 or 1704164645.5, or RFC 3339 such as 2024-01-02T03:04:05Z)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds() {
        assert_eq!(parse("0").unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(parse("1704164645").unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(parse("1704164645.5").unwrap(), "2024-01-02T03:04:05.5Z");
        assert_eq!(parse("1704164645.500").unwrap(), "2024-01-02T03:04:05.5Z");
        assert_eq!(parse("1704164645.0").unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(
            parse("1704164645.123456789").unwrap(),
            "2024-01-02T03:04:05.123456789Z"
        );
        assert_eq!(parse("951782400").unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(parse("946684800").unwrap(), "2000-01-01T00:00:00Z");
        assert_eq!(parse("253402300799").unwrap(), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse("2024-01-02T03:04:05Z").unwrap(),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            parse("2024-01-02t03:04:05.50z").unwrap(),
            "2024-01-02T03:04:05.5Z"
        );
        assert_eq!(
            parse("2024-01-02T05:04:05+02:00").unwrap(),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            parse("2024-01-01T23:30:00.25-04:30").unwrap(),
            "2024-01-02T04:00:00.25Z"
        );
        assert_eq!(
            parse("2024-03-01T00:30:00+01:00").unwrap(),
            "2024-02-29T23:30:00Z"
        );
        assert_eq!(
            parse("1969-12-31T23:59:59Z").unwrap(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            parse("0001-01-01T00:00:00Z").unwrap(),
            "0001-01-01T00:00:00Z"
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "now",
            "-1",
            "1.",
            ".5",
            "1.2.3",
            "1704164645.1234567891",
            "9999999999999",
            "253402300800",
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05Z",
            "2024-13-02T03:04:05Z",
            "2023-02-29T03:04:05Z",
            "2024-01-02T24:00:00Z",
            "2024-01-02T03:04:60Z",
            "2024-01-02T03:04:05+0200",
            "2024-01-02T03:04:05+24:00",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05Zjunk",
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2024-01-02T03:04:0éZ",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("{bad:?} is not a time: ")),
                "{bad}: {err}"
            );
        }
    }
}
