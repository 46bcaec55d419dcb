//! Human durations in policy files: `90s`, `15m`, `1h30m`, `8h`, `7d`, `1w`.

/// Parses a duration like `1h30m` into whole seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "'{text}' is not a duration: unknown unit '{c}' (use s, m, h, d, w, e.g. 1h30m)"
                ))
            }
        };
        if num.is_empty() {
            return Err(format!(
                "'{text}' is not a duration: a unit needs a number before it"
            ));
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("'{text}' is not a duration: number too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("'{text}' is too long"))?;
        num.clear();
        saw_unit = true;
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!(
            "'{text}' is not a duration: every number needs a unit (s, m, h, d, w), e.g. 15m"
        ));
    }
    if total <= 0 {
        return Err(format!("'{text}' must be longer than zero"));
    }
    Ok(total)
}

/// Formats seconds the way policy files write them.
pub fn format_duration(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            out.push_str(&format!("{}{}", rest / unit, name));
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(604_800), "7d");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "15", "m", "1x", "-5m", "0s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
