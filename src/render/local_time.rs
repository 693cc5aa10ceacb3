//! A phone's local time from its IANA zone: the standard offset and the DST
//! rule, derived from the IANA database that `jiff` bundles (so nothing
//! depends on the host's `/usr/share/zoneinfo`), in the shapes vendors'
//! formats take. No table of offsets is kept here: the rule is read off the
//! zone's next transitions, as the database gives them.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// The phone's local time: its IANA zone, and the standard offset and DST
/// rule the IANA database gives for it, in the shapes vendors' formats take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// The IANA name as the database spells it, as `Europe/London`.
    pub zone: String,
    /// Standard (winter) offset east of UTC: 0, -18000, 19800, 37800.
    pub offset_seconds: i32,
    /// The same in minutes: 0, -300, 330, 630.
    pub offset_minutes: i32,
    /// `+00:00`, `-05:00`, `+05:30`, `+10:30`.
    pub offset_hhmm: String,
    /// Decimal hours, signed except for zero: `0`, `-5`, `+5.5`, `+10.5`.
    pub offset_hours: String,
    /// POSIX TZ string: `GMT0BST,M3.5.0/1,M10.5.0`, `IST-5:30`,
    /// `<+1030>-10:30<+11>-11,M10.1.0,M4.1.0`.
    pub posix: String,
    /// `None` where the zone has no DST now.
    pub dst: Option<Dst>,
    /// The family's code for this zone from its profile's `time_zones`
    /// table; `""` if not listed.
    pub vendor_zone: String,
}

/// Daylight saving time as the zone keeps it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dst {
    /// How far clocks go forward: 60; 30 for Australia/Lord_Howe.
    pub save_minutes: i32,
    /// When DST begins.
    pub start: DstChange,
    /// When it ends.
    pub end: DstChange,
}

/// One change of the DST rule, as "the week-th weekday of month at
/// hour:minute", with the date it falls on next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstChange {
    /// 1-12.
    pub month: u8,
    /// 1-4, or 5 = the last in the month.
    pub week: u8,
    /// 0 = Sunday ... 6 = Saturday (POSIX).
    pub weekday: u8,
    /// 1 = Monday ... 7 = Sunday.
    pub iso_weekday: u8,
    /// Day of month of the next such change.
    pub day: u8,
    /// Local wall-clock time of the change: standard time for the start,
    /// DST time for the end (as POSIX has it).
    pub hour: u8,
    pub minute: u8,
}

/// The zone is not in the IANA database.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IANA time zone name (such as Europe/London)")]
pub struct UnknownZone(pub String);

/// Whether `name` is a zone of the bundled IANA database.
pub fn is_known_zone(name: &str) -> bool {
    lookup(name).is_some()
}

fn lookup(name: &str) -> Option<TimeZone> {
    // The database's lookup ignores case; names with spaces or control
    // characters are never zones, and are refused before the look-up.
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    jiff::tz::db().get(name).ok()
}

impl LocalTime {
    /// The local time of `zone` as of now; `vendor_zones` is the family's
    /// `time_zones` table (IANA name → the vendor's code).
    ///
    /// Every phone file is rendered with one, so a zone's is derived once
    /// and kept until its next transition (or a day): the rule can only
    /// change there.
    pub fn new(zone: &str, vendor_zones: &BTreeMap<String, String>) -> Result<LocalTime, UnknownZone> {
        LocalTime::new_until(zone, vendor_zones).map(|(t, _)| t)
    }

    /// [`LocalTime::new`], and until when (Unix seconds) it holds: the
    /// zone's next transition, or a day. What is rendered from it may be
    /// kept until then.
    pub fn new_until(zone: &str, vendor_zones: &BTreeMap<String, String>) -> Result<(LocalTime, i64), UnknownZone> {
        static KEPT: std::sync::OnceLock<RwLock<HashMap<String, (i64, LocalTime)>>> = std::sync::OnceLock::new();
        let kept = KEPT.get_or_init(Default::default);
        let now = Timestamp::now();
        let fresh = |(until, _): &(i64, LocalTime)| now.as_second() < *until;
        let known = kept.read().unwrap_or_else(|p| p.into_inner()).get(zone).filter(|k| fresh(k)).map(|(u, t)| (t.clone(), *u));
        let (mut time, until) = match known {
            Some(t) => t,
            None => {
                // Only zones of the database are kept, so the map is bounded by it.
                let (t, until) = LocalTime::derive(zone, now)?;
                kept.write().unwrap_or_else(|p| p.into_inner()).insert(zone.to_string(), (until, t.clone()));
                (t, until)
            }
        };
        time.vendor_zone = vendor_zone(&time.zone, vendor_zones);
        Ok((time, until))
    }

    /// The local time of `zone` with the DST rule in force at `now`.
    pub fn at(zone: &str, vendor_zones: &BTreeMap<String, String>, now: Timestamp) -> Result<LocalTime, UnknownZone> {
        let (mut time, _) = LocalTime::derive(zone, now)?;
        time.vendor_zone = vendor_zone(&time.zone, vendor_zones);
        Ok(time)
    }

    /// The zone's local time at `now` (no vendor code yet), and until when
    /// (Unix seconds) it holds.
    fn derive(zone: &str, now: Timestamp) -> Result<(LocalTime, i64), UnknownZone> {
        let tz = lookup(zone).ok_or_else(|| UnknownZone(zone.to_string()))?;
        let until = tz.following(now).next().map_or(i64::MAX, |t| t.timestamp().as_second()).min(now.as_second() + 86_400);
        let name = tz.iana_name().unwrap_or(zone).to_string();
        let rule = derive_rule(&tz, now);
        let (std, std_abbr) = match &rule {
            Some(r) => (r.std, r.std_abbr.clone()),
            None => {
                let info = tz.to_offset_info(now);
                (info.offset(), info.abbreviation().to_string())
            }
        };
        let secs = std.seconds();
        let mut posix = format!("{}{}", posix_name(&std_abbr), posix_offset(-secs));
        let dst = rule.map(|r| {
            posix.push_str(&posix_name(&r.dst_abbr));
            if r.save_seconds != 3600 {
                // POSIX assumes one hour ahead when the DST offset is left out.
                posix.push_str(&posix_offset(-(secs + r.save_seconds)));
            }
            posix.push_str(&format!(",{},{}", posix_rule(&r.start), posix_rule(&r.end)));
            Dst { save_minutes: r.save_seconds / 60, start: r.start, end: r.end }
        });
        let time = LocalTime {
            zone: name,
            offset_seconds: secs,
            offset_minutes: secs / 60,
            offset_hhmm: hhmm(secs),
            offset_hours: decimal_hours(secs),
            posix,
            dst,
            vendor_zone: String::new(),
        };
        Ok((time, until))
    }
}

/// The family's code for the zone (its profile's `time_zones` table); `""`
/// if it has none.
fn vendor_zone(name: &str, vendor_zones: &BTreeMap<String, String>) -> String {
    vendor_zones
        .get(name)
        .or_else(|| vendor_zones.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .cloned()
        .unwrap_or_default()
}

/// The yearly DST cycle read off the zone's transitions.
struct Rule {
    std: Offset,
    std_abbr: String,
    dst_abbr: String,
    save_seconds: i32,
    start: DstChange,
    end: DstChange,
}

/// How many transitions after now are read: four years of a yearly rule,
/// enough to tell "the last Sunday" from "the fourth".
const SAMPLED: usize = 8;

/// The zone's DST rule as of `now`: `None` unless the next transitions
/// alternate between two offsets, twice a year. The larger offset is the
/// summer one whatever the database's DST flag says (Europe/Dublin keeps
/// winter time as a negative DST, which no phone understands).
fn derive_rule(tz: &TimeZone, now: Timestamp) -> Option<Rule> {
    let next: Vec<_> = tz.following(now).take(SAMPLED).collect();
    let (a, b) = (next.first()?, next.get(1)?);
    // A yearly rule changes twice within a year; a single future change of
    // offset is not DST.
    if b.timestamp().as_second() - now.as_second() > 366 * 86_400 || a.offset() == b.offset() {
        return None;
    }
    let (summer, winter) = if a.offset() > b.offset() { (a, b) } else { (b, a) };
    let (std, dst) = (winter.offset(), summer.offset());
    let save_seconds = dst.seconds() - std.seconds();
    // Every sampled transition must go to one of the two offsets.
    if next.iter().any(|t| t.offset() != std && t.offset() != dst) {
        return None;
    }
    // The wall clock just before the change: standard time when it starts,
    // summer time when it ends.
    let starts: Vec<_> = next.iter().filter(|t| t.offset() == dst).map(|t| std.to_datetime(t.timestamp())).collect();
    let ends: Vec<_> = next.iter().filter(|t| t.offset() == std).map(|t| dst.to_datetime(t.timestamp())).collect();
    Some(Rule {
        std,
        std_abbr: winter.abbreviation().to_string(),
        dst_abbr: summer.abbreviation().to_string(),
        save_seconds,
        start: change(&starts)?,
        end: change(&ends)?,
    })
}

/// One change of the rule from the dates it falls on in successive years
/// (the first is the next one).
fn change(dates: &[jiff::civil::DateTime]) -> Option<DstChange> {
    let first = dates.first()?;
    let is_last = |d: &jiff::civil::DateTime| d.day() + 7 > d.date().days_in_month();
    let nth = |d: &jiff::civil::DateTime| ((d.day() - 1) / 7 + 1) as u8;
    // "The last Sunday" only if every year's change is its month's last;
    // else the week every year shares. A rule of neither kind (Israel's
    // "Friday before the last Sunday") is given as it falls next.
    let week = if dates.iter().all(is_last) {
        5
    } else if dates.iter().all(|d| nth(d) == nth(first)) {
        nth(first)
    } else if is_last(first) {
        5
    } else {
        nth(first)
    };
    Some(DstChange {
        month: first.month() as u8,
        week,
        weekday: first.weekday().to_sunday_zero_offset() as u8,
        iso_weekday: first.weekday().to_monday_one_offset() as u8,
        day: first.day() as u8,
        hour: first.hour() as u8,
        minute: first.minute() as u8,
    })
}

/// A zone abbreviation as POSIX writes it: bare when alphabetic, else in
/// angle brackets (`<+1030>`).
fn posix_name(abbr: &str) -> String {
    if abbr.len() >= 3 && abbr.chars().all(|c| c.is_ascii_alphabetic()) {
        abbr.to_string()
    } else {
        format!("<{abbr}>")
    }
}

/// `[-]h[:mm[:ss]]`, the sign as given (POSIX offsets are west of UTC).
fn posix_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    match (m, sec) {
        (0, 0) => format!("{sign}{h}"),
        (_, 0) => format!("{sign}{h}:{m:02}"),
        _ => format!("{sign}{h}:{m:02}:{sec:02}"),
    }
}

/// `Mm.w.d[/time]`, the time left out when it is POSIX's default 02:00.
fn posix_rule(c: &DstChange) -> String {
    let rule = format!("M{}.{}.{}", c.month, c.week, c.weekday);
    match (c.hour, c.minute) {
        (2, 0) => rule,
        (h, 0) => format!("{rule}/{h}"),
        (h, m) => format!("{rule}/{h}:{m:02}"),
    }
}

fn hhmm(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let m = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Hours with as many decimals as needed: `0`, `-5`, `+5.5`, `+5.75`.
fn decimal_hours(seconds: i32) -> String {
    if seconds == 0 {
        return "0".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let m = seconds.unsigned_abs() / 60;
    let (h, frac) = (m / 60, m % 60);
    if frac == 0 {
        return format!("{sign}{h}");
    }
    // Minutes as hundredths of an hour (15 → 25, 30 → 5, 45 → 75).
    let hundredths = format!("{:02}", frac * 100 / 60);
    format!("{sign}{h}.{}", hundredths.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: &str, when: &str) -> LocalTime {
        LocalTime::at(zone, &BTreeMap::new(), when.parse().unwrap()).unwrap()
    }

    fn change(month: u8, week: u8, day: u8, hour: u8) -> DstChange {
        // Every rule below changes on a Sunday.
        DstChange { month, week, weekday: 0, iso_weekday: 7, day, hour, minute: 0 }
    }

    // EU rule (IANA europe, Rule EU): last Sunday of March 01:00 UTC (01:00
    // GMT) to the last Sunday of October 01:00 UTC (02:00 BST).
    #[test]
    fn europe_london() {
        let t = at("Europe/London", "2026-01-15T12:00:00Z");
        assert_eq!((t.offset_seconds, t.offset_minutes), (0, 0));
        assert_eq!((t.offset_hhmm.as_str(), t.offset_hours.as_str()), ("+00:00", "0"));
        let dst = t.dst.unwrap();
        assert_eq!(dst.save_minutes, 60);
        // 2026: 29 March, 25 October.
        assert_eq!(dst.start, change(3, 5, 29, 1));
        assert_eq!(dst.end, change(10, 5, 25, 2));
        assert_eq!(t.posix, "GMT0BST,M3.5.0/1,M10.5.0");
    }

    // US rule (IANA northamerica, Rule US, since 2007): second Sunday of
    // March 2:00 to the first Sunday of November 2:00.
    #[test]
    fn america_new_york() {
        let t = at("America/New_York", "2026-01-15T12:00:00Z");
        assert_eq!((t.offset_seconds, t.offset_minutes), (-18000, -300));
        assert_eq!((t.offset_hhmm.as_str(), t.offset_hours.as_str()), ("-05:00", "-5"));
        let dst = t.dst.unwrap();
        assert_eq!(dst.save_minutes, 60);
        // 2026: 8 March, 1 November.
        assert_eq!(dst.start, change(3, 2, 8, 2));
        assert_eq!(dst.end, change(11, 1, 1, 2));
        assert_eq!(t.posix, "EST5EDT,M3.2.0,M11.1.0");
    }

    // IANA asia, Zone Asia/Kolkata: 5:30 IST, no DST since 1945.
    #[test]
    fn asia_kolkata() {
        let t = at("Asia/Kolkata", "2026-06-15T12:00:00Z");
        assert_eq!((t.offset_seconds, t.offset_minutes), (19800, 330));
        assert_eq!((t.offset_hhmm.as_str(), t.offset_hours.as_str()), ("+05:30", "+5.5"));
        assert_eq!(t.dst, None);
        assert_eq!(t.posix, "IST-5:30");
    }

    // IANA australasia, Rule LH (since 2008): first Sunday of October 2:00
    // (+0:30) to the first Sunday of April 2:00.
    #[test]
    fn australia_lord_howe() {
        // Mid-winter there: the next change is October's start.
        let t = at("Australia/Lord_Howe", "2026-06-15T12:00:00Z");
        assert_eq!((t.offset_seconds, t.offset_minutes), (37800, 630));
        assert_eq!((t.offset_hhmm.as_str(), t.offset_hours.as_str()), ("+10:30", "+10.5"));
        let dst = t.dst.unwrap();
        assert_eq!(dst.save_minutes, 30);
        // 4 October 2026, 4 April 2027.
        assert_eq!(dst.start, change(10, 1, 4, 2));
        assert_eq!(dst.end, change(4, 1, 4, 2));
        assert_eq!(t.posix, "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
    }

    // Dublin's winter is a negative DST in the database (IANA europe, Rule
    // Eire); phones want the summer as the DST, with the EU dates.
    #[test]
    fn negative_dst_is_turned_round() {
        let t = at("Europe/Dublin", "2026-01-15T12:00:00Z");
        assert_eq!(t.offset_seconds, 0);
        let dst = t.dst.unwrap();
        assert_eq!((dst.save_minutes, dst.start.month, dst.start.week, dst.end.month), (60, 3, 5, 10));
    }

    #[test]
    fn unknown_zones_are_refused() {
        for z in ["", "Mars/Olympus_Mons", "Europe/London ", "Europe/../etc", "Europe/Lon\ndon"] {
            assert!(!is_known_zone(z), "{z:?}");
            assert_eq!(LocalTime::new(z, &BTreeMap::new()), Err(UnknownZone(z.into())));
        }
        assert!(is_known_zone("UTC") && is_known_zone("Europe/London") && is_known_zone("america/new_york"));
    }

    #[test]
    fn vendor_zone_comes_from_the_profile_table() {
        let table = BTreeMap::from([("Europe/London".to_string(), "GBR-0".to_string())]);
        let t = LocalTime::at("Europe/London", &table, "2026-01-15T12:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(t.vendor_zone, "GBR-0");
        assert_eq!(at("Asia/Kolkata", "2026-01-15T12:00:00Z").vendor_zone, "");
    }

    #[test]
    fn offsets_in_hours() {
        assert_eq!(decimal_hours(5 * 3600 + 45 * 60), "+5.75");
        assert_eq!(decimal_hours(-(3 * 3600 + 30 * 60)), "-3.5");
        assert_eq!(hhmm(-(9 * 3600 + 30 * 60)), "-09:30");
    }
}
