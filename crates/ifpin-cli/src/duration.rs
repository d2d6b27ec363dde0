//! Durations on the command line, one syntax for every subcommand: `500ms`, `3s`, `1.5s`,
//! `2m`, `1h`, or plain seconds (`3`).

use std::ops::RangeInclusive;
use std::time::Duration;

/// Parses `text` as a duration within `range`; the error says what to write instead.
pub fn parse(text: &str, range: RangeInclusive<Duration>) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 3s or 1m"))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h (e.g. 500ms, 3s)"
            ));
        }
    };
    let secs = value * scale;
    let (min, max) = (range.start().as_secs_f64(), range.end().as_secs_f64());
    if !(secs >= min && secs <= max && secs > 0.0) {
        return Err(format!(
            "{text:?} is out of range: from {} to {}",
            show(*range.start()),
            show(*range.end())
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration the way the syntax writes it.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(3600);

    #[test]
    fn every_unit_and_plain_seconds() {
        assert_eq!(parse("500ms", ANY).unwrap(), Duration::from_millis(500));
        assert_eq!(parse("3s", ANY).unwrap(), Duration::from_secs(3));
        assert_eq!(parse("3", ANY).unwrap(), Duration::from_secs(3));
        assert_eq!(parse("1.5s", ANY).unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m", ANY).unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h", ANY).unwrap(), Duration::from_secs(3600));
        for bad in ["", "0", "0s", "-1s", "2h", "s", "1.2.3s", "2 weeks"] {
            assert!(parse(bad, ANY).is_err(), "{bad:?}");
        }
        let err = parse(
            "10ms",
            Duration::from_millis(50)..=Duration::from_secs(86_400),
        );
        assert_eq!(
            err.unwrap_err(),
            "\"10ms\" is out of range: from 50ms to 24h"
        );
    }
}
