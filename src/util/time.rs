//! Timestamps as text, from milliseconds since the Unix epoch (RFC 3339, UTC), and ages such as
//! `30d`, without a date-time crate. Pure: the clock is read at the edges (`timefmt`).

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats milliseconds since the Unix epoch as `2026-11-24T03:13:01.123Z` (before the
/// epoch: the epoch).
pub fn rfc3339_ms(ms: i64) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    let (y, mo, da) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses an age such as `30d`, `12h`, `90m`, `45s` or `2w` into milliseconds; `all` is none
/// (no limit).
pub fn parse_age(text: &str) -> Result<Option<i64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| {
        format!("`{text}` is not an age; use a number and a unit: 30d, 12h, 90m, 45s, 2w or `all`")
    })?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => {
            return Err(format!(
            "`{text}` has no known unit; use a number and a unit: 30d, 12h, 90m, 45s, 2w or `all`"
        ))
        }
    };
    n.checked_mul(ms)
        .map(Some)
        .ok_or_else(|| format!("`{text}` is too long an age"))
}

#[cfg(test)]
mod age_tests {
    use super::parse_age;

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("30d"), Ok(Some(30 * 86_400_000)));
        assert_eq!(parse_age("12h"), Ok(Some(12 * 3_600_000)));
        assert_eq!(parse_age("90m"), Ok(Some(90 * 60_000)));
        assert_eq!(parse_age("2w"), Ok(Some(14 * 86_400_000)));
        assert_eq!(parse_age("all"), Ok(None));
        assert!(parse_age("30").unwrap_err().contains("no known unit"));
        assert!(parse_age("d").unwrap_err().contains("not an age"));
        assert!(
            parse_age("99999999999999999w")
                .unwrap_err()
                .contains("not an age")
                || parse_age("99999999999999999w")
                    .unwrap_err()
                    .contains("too long")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_994_000_123), "2026-11-29T23:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00.000Z");
    }
}
