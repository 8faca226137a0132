//! The image's `created` time: seconds since the epoch or RFC 3339 in,
//! RFC 3339 UTC out (`2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.5Z`).
//!
//! Civil-from-days arithmetic (Howard Hinnant's algorithms) instead of a date
//! crate: the proleptic Gregorian calendar is all that is needed.

/// Latest representable instant: 9999-12-31T23:59:59 (4-digit years).
const MAX_SECONDS: i64 = 253_402_300_799;
/// Earliest: 0000-01-01T00:00:00.
const MIN_SECONDS: i64 = -62_167_219_200;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats seconds since the epoch (and a fraction as written, without the
/// dot and trailing zeros) as RFC 3339 UTC.
fn format(seconds: i64, fraction: &str) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out.push('Z');
    out
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Checks a fraction's digits (nanosecond precision at most).
fn fraction(s: &str) -> Result<&str, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the fraction of a second must be digits".into());
    }
    if s.len() > 9 {
        return Err("at most 9 fractional digits (nanoseconds) are supported".into());
    }
    Ok(s)
}

fn parse_epoch(s: &str) -> Result<String, String> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, fraction(f)?),
        None => (s, ""),
    };
    // 12 digits is already past year 9999; longer would overflow.
    let seconds = digits(whole)
        .filter(|_| whole.len() <= 12)
        .ok_or_else(|| "expected whole seconds since the epoch".to_string())?;
    if seconds > MAX_SECONDS {
        return Err("after year 9999".into());
    }
    Ok(format(seconds, frac))
}

fn parse_rfc3339(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let shape_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !shape_ok || !s.is_char_boundary(19) {
        return Err("expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)".into());
    }
    let field = |r: std::ops::Range<usize>| {
        digits(&s[r]).ok_or_else(|| "expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)".to_string())
    };
    let (y, mo, d) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (h, mi, sec) = (field(11..13)?, field(14..16)?, field(17..19)?);
    if !(1..=12).contains(&mo) {
        return Err(format!("month {mo:02} is out of range"));
    }
    if d < 1 || d > days_in_month(y, mo) {
        return Err(format!("day {d:02} is out of range for {y:04}-{mo:02}"));
    }
    if h > 23 || mi > 59 || sec > 59 {
        return Err(format!("time {h:02}:{mi:02}:{sec:02} is out of range"));
    }
    let mut rest = &s[19..];
    let mut frac = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        frac = fraction(&after_dot[..end])?;
        rest = &after_dot[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let ob = rest.as_bytes();
            if ob.len() != 6 || !matches!(ob[0], b'+' | b'-') || ob[3] != b':' {
                return Err("expected a time zone: Z or ±HH:MM".into());
            }
            let oh = digits(&rest[1..3]).ok_or("expected a time zone: Z or ±HH:MM")?;
            let om = digits(&rest[4..6]).ok_or("expected a time zone: Z or ±HH:MM")?;
            if oh > 23 || om > 59 {
                return Err(format!("time zone offset {rest} is out of range"));
            }
            let sign = if ob[0] == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Err("outside years 0000 to 9999 in UTC".into());
    }
    Ok(format(seconds, frac))
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
    fn round_trip_every_day_of_some_years() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y, m));
        }
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
