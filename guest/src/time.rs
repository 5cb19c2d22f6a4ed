//! RFC 3339 formatting of wall-clock time, without a date library.

/// A wall-clock instant: seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub seconds: u64,
    pub nanoseconds: u32,
}

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form JavaScript's `Date#toISOString` writes.
    pub fn to_rfc3339(self) -> String {
        let days = self.seconds / 86_400;
        let secs_of_day = self.seconds % 86_400;
        let (year, month, day) = civil_from_days(days as i64);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60,
            self.nanoseconds / 1_000_000
        )
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day), proleptic
/// Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_formatted_as_1970() {
        assert_eq!(
            Timestamp::default().to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn leap_day_and_milliseconds_are_formatted() {
        // 2024-02-29T12:34:56.789Z
        let t = Timestamp {
            seconds: 1_709_210_096,
            nanoseconds: 789_000_000,
        };
        assert_eq!(t.to_rfc3339(), "2024-02-29T12:34:56.789Z");
    }
}
