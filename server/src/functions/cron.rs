//! Cron schedules: the standard five fields (minute hour day-of-month month
//! day-of-week), or six with seconds first, in an IANA time zone (UTC by default).
//! Parsing and the next/previous tick come from the `croner` crate; when both the
//! day of month and the day of week are restricted, either matching is enough (as in
//! Vixie cron).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Cron {
    cron: croner::Cron,
    zone: Tz,
}

impl Cron {
    /// Parse `pattern` in `timezone` (UTC when `None`).
    ///
    /// Fails with a message for the manifest's field error.
    pub fn parse(pattern: &str, timezone: Option<&str>) -> Result<Cron, String> {
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{pattern}` has {fields} fields: a schedule has five (minute hour day month weekday) or six (seconds first)."
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| format!("`{pattern}` is not a cron schedule: {e}"))?;
        let zone = match timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("`{name}` is not an IANA time zone (e.g. Europe/Paris)."))?,
        };
        Ok(Cron { cron, zone })
    }

    /// The newest tick at or before `at`.
    pub fn latest(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&whole_seconds(at).with_timezone(&self.zone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first tick after `at`.
    pub fn next(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&whole_seconds(at).with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// `at` without its fraction of a second (ticks fall on whole seconds).
fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedules_parse_with_optional_seconds_and_zones() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 10, 7, 30).unwrap()
            + chrono::Duration::milliseconds(250);
        let five = Cron::parse("*/5 * * * *", None).unwrap();
        assert_eq!(
            five.latest(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 10, 5, 0).unwrap())
        );
        assert_eq!(
            five.next(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 10, 10, 0).unwrap())
        );
        let seconds = Cron::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(
            seconds.next(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 3, 10, 7, 40).unwrap())
        );
        // 09:00 in Paris is 08:00 UTC in winter.
        let paris = Cron::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            paris.next(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap())
        );
        for bad in ["* * * *", "61 * * * *", "* * * * * * *", "nope"] {
            assert!(Cron::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Cron::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }
}
