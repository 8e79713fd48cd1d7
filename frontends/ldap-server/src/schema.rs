//! The attribute types this directory serves, their aliases, and how their values
//! match (equality, ordering, substrings), as the usual schemas (RFC 4519, RFC 2307,
//! RFC 4530, RFC 3045) define them.

use crate::dn;

/// How values of an attribute compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// caseIgnoreMatch: case-folded, runs of spaces as one.
    CaseIgnore,
    /// caseExactMatch (caseExactIA5Match): as written, runs of spaces as one.
    CaseExact,
    /// distinguishedNameMatch: the DNs' normal forms.
    Dn,
    /// integerMatch and integerOrderingMatch.
    Integer,
    /// telephoneNumberMatch: case, spaces and hyphens ignored.
    Telephone,
    /// generalizedTimeMatch and its ordering.
    Time,
}

/// One attribute type.
#[derive(Debug)]
pub(crate) struct AttributeType {
    /// The name answers use.
    pub(crate) name: &'static str,
    /// Other names it is asked for by, lowercase.
    pub(crate) aliases: &'static [&'static str],
    pub(crate) syntax: Syntax,
    /// Returned only when asked for by name or with `+`.
    pub(crate) operational: bool,
}

macro_rules! types {
    ($($name:literal [$($alias:literal),*] $syntax:ident $op:literal;)*) => {
        pub(crate) static TYPES: &[AttributeType] = &[$(AttributeType {
            name: $name,
            aliases: &[$($alias),*],
            syntax: Syntax::$syntax,
            operational: $op,
        }),*];
    };
}

types! {
    "objectClass" [] CaseIgnore false;
    "uid" ["userid"] CaseIgnore false;
    "cn" ["commonname"] CaseIgnore false;
    "sn" ["surname"] CaseIgnore false;
    "givenName" ["gn"] CaseIgnore false;
    "displayName" [] CaseIgnore false;
    "mail" ["rfc822mailbox"] CaseIgnore false;
    "telephoneNumber" [] Telephone false;
    "uidNumber" [] Integer false;
    "gidNumber" [] Integer false;
    "homeDirectory" [] CaseExact false;
    "loginShell" [] CaseExact false;
    "gecos" [] CaseIgnore false;
    "memberOf" [] Dn false;
    "member" [] Dn false;
    "memberUid" [] CaseIgnore false;
    "description" [] CaseIgnore false;
    "ou" ["organizationalunitname"] CaseIgnore false;
    "dc" ["domaincomponent"] CaseIgnore false;
    "o" ["organizationname"] CaseIgnore false;
    "entryUUID" [] CaseIgnore false;
    "createTimestamp" [] Time true;
    "modifyTimestamp" [] Time true;
    "entryDN" [] Dn true;
    "hasSubordinates" [] CaseIgnore true;
    "subschemaSubentry" [] Dn true;
    "namingContexts" [] Dn true;
    "supportedLDAPVersion" [] Integer true;
    "supportedControl" [] CaseIgnore true;
    "supportedExtension" [] CaseIgnore true;
    "supportedFeatures" [] CaseIgnore true;
    "supportedSASLMechanisms" [] CaseIgnore true;
    "vendorName" [] CaseIgnore true;
    "vendorVersion" [] CaseIgnore true;
}

/// The attribute type named `name` (any case, any alias; options such as `;binary`
/// ignored), if this directory knows it.
pub(crate) fn lookup(name: &str) -> Option<&'static AttributeType> {
    let name = name.split(';').next().unwrap_or(name);
    TYPES.iter().find(|t| {
        t.name.eq_ignore_ascii_case(name) || t.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// A value in the form it is compared in, or `None` when it is not a value of the
/// syntax (an assertion such as `uidNumber=abc`: the filter is then Undefined).
pub(crate) fn normal(syntax: Syntax, value: &str) -> Option<Normal> {
    Some(match syntax {
        Syntax::CaseIgnore => Normal::Text(dn::fold(value)),
        Syntax::CaseExact => Normal::Text(
            value
                .split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Syntax::Telephone => Normal::Text(
            value
                .chars()
                .filter(|c| *c != ' ' && *c != '-')
                .flat_map(char::to_lowercase)
                .collect(),
        ),
        Syntax::Dn => Normal::Text(dn::normalize(value)?),
        Syntax::Integer => Normal::Integer(value.trim().parse().ok()?),
        Syntax::Time => Normal::Integer(generalized_time(value)?),
    })
}

/// A value ready for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Normal {
    Text(String),
    Integer(i128),
}

/// Seconds since the epoch of a GeneralizedTime (`YYYYMMDDHH[MM[SS]][.f](Z|±HHMM)`):
/// minutes and seconds default to 0, fractions are dropped.
fn generalized_time(value: &str) -> Option<i128> {
    let value = value.trim();
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if !matches!(digits, 10 | 12 | 14) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        value.get(range).and_then(|text| text.parse().ok())
    };
    let (year, month, day, hour) = (number(0..4)?, number(4..6)?, number(6..8)?, number(8..10)?);
    let minute = if digits >= 12 { number(10..12)? } else { 0 };
    let second = if digits >= 14 { number(12..14)? } else { 0 };
    let mut rest = &value[digits..];
    if let Some(fraction) = rest.strip_prefix(['.', ',']) {
        rest = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &rest[1..];
            if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i64 = zone[..2].parse().ok()?;
            let minutes: i64 = zone[2..].parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(i128::from(
        days * 86_400 + hour * 3600 + minute * 60 + second - offset,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A time as GeneralizedTime, `YYYYMMDDHHMMSSZ`, from microseconds since the epoch.
pub(crate) fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_and_parse_as_generalized_time() {
        // 2026-12-03T06:35:34Z, as `date -u -d @1796279734` prints it.
        assert_eq!(format_time(1_796_279_734_000_000), "20261203063534Z");
        assert_eq!(generalized_time("20261203063534Z"), Some(1_796_279_734));
        assert_eq!(generalized_time("202612030635Z"), Some(1_796_279_700));
        assert_eq!(
            generalized_time("20261203083534.5+0200"),
            Some(1_796_279_734)
        );
        assert_eq!(format_time(0), "19700101000000Z");
        for bad in ["2026", "20261303063534Z", "20261203063534", "x"] {
            assert_eq!(generalized_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_aliases_resolve_in_any_case() {
        assert_eq!(lookup("COMMONNAME").unwrap().name, "cn");
        assert_eq!(lookup("memberof").unwrap().name, "memberOf");
        assert!(lookup("userCertificate;binary").is_none());
        assert_eq!(
            normal(Syntax::Telephone, "+1 555-0100"),
            normal(Syntax::Telephone, "+15550100")
        );
    }
}
