//! What a cell means: text, booleans, times, lists of values, references by name or
//! `name(id)`, and the escape that keeps a spreadsheet from running a cell as a
//! formula. Each reader returns the message of a problem, without row or column (the
//! caller knows those).

use std::borrow::Cow;

use portcullis_engine::{
    AccountSelector, AccountSpec, Actions, Id, Protocol, ProtocolFilter, SecretKind, Time,
};
use serde_json::Value;

use crate::kind::Format;
use crate::read::Cell;

/// Characters that make a spreadsheet treat a cell as a formula (or that some
/// spreadsheets skip before looking for one).
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether `text`, past any leading `'`, starts like a formula.
fn starts_like_formula(text: &str) -> bool {
    text.trim_start_matches('\'').starts_with(FORMULA_TRIGGERS)
}

/// The text an export writes for `value`.
///
/// CSV: a value that starts like a formula gets a leading `'`, so a spreadsheet shows it
/// as text instead of running it. XLSX cells are written as text and never run, so
/// only a value that already starts with `'` before such a character gets one, to
/// survive the import's unescape below.
pub(crate) fn escape(value: &str, format: Format) -> Cow<'_, str> {
    let needed = starts_like_formula(value)
        && match format {
            Format::Csv => true,
            Format::Xlsx => value.starts_with('\''),
        };
    if needed {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// The inverse of [`escape`]: one leading `'` goes when it precedes (possibly after
/// more `'`) one of `=`, `+`, `-`, `@`, tab or CR. Any other `'` is kept.
pub(crate) fn unescape(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if starts_like_formula(rest) => rest,
        _ => text,
    }
}

/// A cell as text, unescaped and not trimmed. Empty cells are empty text.
pub(crate) fn raw_text(cell: &Cell) -> Result<Cow<'_, str>, String> {
    match cell {
        Cell::Empty => Ok(Cow::Borrowed("")),
        Cell::Text(text) => Ok(Cow::Borrowed(unescape(text))),
        Cell::Int(value) => Ok(Cow::Owned(value.to_string())),
        Cell::Float(value) if value.fract() == 0.0 && value.abs() < 1e15 => {
            Ok(Cow::Owned(format!("{value:.0}")))
        }
        Cell::Float(value) => Ok(Cow::Owned(value.to_string())),
        Cell::Bool(value) => Ok(Cow::Owned(value.to_string())),
        Cell::Date(_) => {
            Err("a date cell where text is expected; format the cell as text".to_owned())
        }
        Cell::Refused(message) => Err(message.clone()),
    }
}

/// A cell as trimmed text.
pub(crate) fn text(cell: &Cell) -> Result<String, String> {
    raw_text(cell).map(|text| text.trim().to_owned())
}

/// [`text`], taking the cell: no copy when the text needs no change.
pub(crate) fn into_text(cell: Cell) -> Result<String, String> {
    match cell {
        Cell::Text(text) => {
            let clean = unescape(&text).trim();
            if clean.len() == text.len() {
                Ok(text)
            } else {
                Ok(clean.to_owned())
            }
        }
        other => text(&other),
    }
}

/// [`raw_text`], taking the cell.
pub(crate) fn into_raw_text(cell: Cell) -> Result<String, String> {
    match cell {
        Cell::Text(text) => {
            let clean = unescape(&text);
            if clean.len() == text.len() {
                Ok(text)
            } else {
                Ok(clean.to_owned())
            }
        }
        other => raw_text(&other).map(Cow::into_owned),
    }
}

/// `true`, `false`, `yes`, `no`, `1`, `0` (any case); `None` for an empty cell.
pub(crate) fn boolean(cell: &Cell) -> Result<Option<bool>, String> {
    match cell {
        Cell::Bool(value) => Ok(Some(*value)),
        Cell::Int(1) => Ok(Some(true)),
        Cell::Int(0) => Ok(Some(false)),
        Cell::Float(value) if *value == 1.0 => Ok(Some(true)),
        Cell::Float(value) if *value == 0.0 => Ok(Some(false)),
        _ => {
            let text = text(cell)?;
            match text.to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "yes" | "1" => Ok(Some(true)),
                "false" | "no" | "0" => Ok(Some(false)),
                _ => Err(format!(
                    "`{text}` is not a boolean (expected true, false, yes, no, 1 or 0)"
                )),
            }
        }
    }
}

const NUMBER_AS_DATE: &str = "a number where a date is expected; write an RFC 3339 time such as `2027-01-01T00:00:00Z`, or format the cell as a date";

/// An RFC 3339 time, or an XLSX date cell; `None` for an empty cell. Numbers are
/// refused: a serial day count means nothing outside the spreadsheet that wrote it.
pub(crate) fn time(cell: &Cell) -> Result<Option<Time>, String> {
    match cell {
        Cell::Date(time) => Ok(Some(*time)),
        Cell::Int(_) | Cell::Float(_) => Err(NUMBER_AS_DATE.to_owned()),
        _ => {
            let text = text(cell)?;
            if text.is_empty() {
                return Ok(None);
            }
            if text.parse::<f64>().is_ok() {
                return Err(NUMBER_AS_DATE.to_owned());
            }
            text.parse::<Time>()
                .map(Some)
                .map_err(|error| error.to_string())
        }
    }
}

/// A value named by a cell: `name`, or JumpServer's `name(id)`. With an id, the entity
/// with that id is meant when it exists, else the one with that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) name: String,
    pub(crate) id: Option<Id>,
}

impl Reference {
    pub(crate) fn parse(text: &str) -> Reference {
        let text = text.trim();
        if let Some((name, id)) = split_id(text) {
            return Reference {
                name: name.to_owned(),
                id: Some(id),
            };
        }
        Reference {
            name: text.to_owned(),
            id: None,
        }
    }

    /// How the file wrote it, for messages.
    pub(crate) fn display(&self) -> String {
        match self.id {
            Some(id) if self.name.is_empty() => format!("({id})"),
            Some(id) => format!("{}({id})", self.name),
            None => self.name.clone(),
        }
    }
}

/// `name(uuid)` → (`name`, uuid), when the parenthesised part is a UUID.
fn split_id(text: &str) -> Option<(&str, Id)> {
    let body = text.strip_suffix(')')?;
    let open = body.rfind('(')?;
    let id = Id::parse(body[open + 1..].trim())?;
    Some((body[..open].trim_end(), id))
}

/// One value of a list cell: text, or (in the JSON form) an object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Text(String),
    Object(serde_json::Map<String, Value>),
}

/// A list cell: values separated by commas, or a JSON array (whose values may then
/// hold commas). Empty values are dropped; an empty cell is an empty list.
pub(crate) fn items(cell: &Cell) -> Result<Vec<Item>, String> {
    let text = text(cell)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(&text)
            .map_err(|error| format!("`{}` is not a JSON array: {error}", shorten(&text)))?;
        let mut items = Vec::with_capacity(values.len());
        for value in values {
            match value {
                Value::String(text) if text.trim().is_empty() => {}
                Value::String(text) => items.push(Item::Text(text.trim().to_owned())),
                Value::Number(number) => items.push(Item::Text(number.to_string())),
                Value::Object(object) => items.push(Item::Object(object)),
                other => {
                    return Err(format!(
                        "the JSON array holds `{}`; expected text",
                        shorten(&other.to_string())
                    ));
                }
            }
        }
        return Ok(items);
    }
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| Item::Text(item.to_owned()))
        .collect())
}

/// A list cell of plain text values.
pub(crate) fn texts(cell: &Cell) -> Result<Vec<String>, String> {
    items(cell)?
        .into_iter()
        .map(|item| match item {
            Item::Text(text) => Ok(text),
            Item::Object(object) => Err(format!(
                "`{}` is an object; expected text",
                shorten(&Value::Object(object).to_string())
            )),
        })
        .collect()
}

pub(crate) fn references(cell: &Cell) -> Result<Vec<Reference>, String> {
    Ok(texts(cell)?.iter().map(|t| Reference::parse(t)).collect())
}

/// A member of a group (a user or a subgroup), with the membership's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    pub(crate) reference: Reference,
    pub(crate) expires_at: Option<Time>,
}

/// `alice`, `alice(id)`, `alice until 2027-01-01T00:00:00Z`, or in the JSON form
/// `{"user": "alice", "expires_at": "…"}` (`group` instead of `user` for subgroups).
pub(crate) fn memberships(cell: &Cell, key: &str) -> Result<Vec<Membership>, String> {
    let mut list = Vec::new();
    for item in items(cell)? {
        let membership = match item {
            Item::Text(text) => match text.rsplit_once(" until ") {
                Some((name, until)) => Membership {
                    reference: Reference::parse(name),
                    expires_at: Some(until.trim().parse::<Time>().map_err(|e| e.to_string())?),
                },
                None => Membership {
                    reference: Reference::parse(&text),
                    expires_at: None,
                },
            },
            Item::Object(object) => {
                let name = object
                    .get(key)
                    .or_else(|| object.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("a member object needs a `{key}` field"))?;
                let expires_at = match object.get("expires_at") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(text)) => {
                        Some(text.parse::<Time>().map_err(|e| e.to_string())?)
                    }
                    Some(other) => return Err(format!("`{other}` is not an RFC 3339 time")),
                };
                if let Some(unknown) = object
                    .keys()
                    .find(|k| !["name", key, "expires_at"].contains(&k.as_str()))
                {
                    return Err(format!("unknown field `{unknown}` in a member object"));
                }
                Membership {
                    reference: Reference::parse(name),
                    expires_at,
                }
            }
        };
        list.push(membership);
    }
    Ok(list)
}

/// Role assignments: `role` (on the global scope `*`) or `role on scope`, or in the
/// JSON form `{"scope": "…", "roles": ["…"]}`. Returns (scope, role) pairs in order.
pub(crate) fn role_assignments(cell: &Cell) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for item in items(cell)? {
        match item {
            Item::Text(text) => match text.split_once(" on ") {
                Some((role, scope)) => {
                    pairs.push((scope.trim().to_owned(), role.trim().to_owned()))
                }
                None => pairs.push(("*".to_owned(), text)),
            },
            Item::Object(object) => {
                let scope = object
                    .get("scope")
                    .and_then(Value::as_str)
                    .unwrap_or("*")
                    .to_owned();
                let roles = match (object.get("roles"), object.get("role")) {
                    (Some(Value::Array(roles)), None) => roles
                        .iter()
                        .map(|r| r.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("`roles` must be a list of role names")?,
                    (None, Some(Value::String(role))) => vec![role.clone()],
                    _ => return Err("a role object needs `scope` and `roles`".to_owned()),
                };
                pairs.extend(roles.into_iter().map(|role| (scope.clone(), role)));
            }
        }
    }
    Ok(pairs)
}

/// `ssh/22, rdp/3389` (spaces separate too).
pub(crate) fn protocols(cell: &Cell) -> Result<Vec<Protocol>, String> {
    let mut list = Vec::new();
    for item in texts(cell)? {
        for word in item.split_whitespace() {
            list.push(word.parse::<Protocol>().map_err(|e| e.to_string())?);
        }
    }
    Ok(list)
}

fn secret_kind(word: &str) -> Option<SecretKind> {
    let name = word.to_ascii_lowercase().replace('-', "_");
    serde_json::from_value(Value::String(name)).ok()
}

/// An asset's accounts: `root`, `root (privileged)`, `deploy (ssh_key)`,
/// `root (privileged password)`, optionally with the account's id among the words in
/// parentheses; or in the JSON form `{"username", "privileged", "secret_kind", "id"}`.
pub(crate) fn accounts(cell: &Cell) -> Result<Vec<AccountSpec>, String> {
    let mut list = Vec::new();
    for item in items(cell)? {
        let account = match item {
            Item::Text(text) => {
                let (username, words) =
                    match text.strip_suffix(')').and_then(|b| b.rsplit_once('(')) {
                        Some((username, words)) => (username.trim(), words),
                        None => (text.as_str(), ""),
                    };
                let mut account = AccountSpec::new(username);
                for word in words.split_whitespace() {
                    if word.eq_ignore_ascii_case("privileged") {
                        account.privileged = true;
                    } else if let Some(kind) = secret_kind(word) {
                        account.secret_kind = kind;
                    } else if let Some(id) = Id::parse(word) {
                        account.id = Some(id);
                    } else {
                        return Err(format!(
                            "unknown account attribute `{word}` in `{text}` (expected privileged, a secret kind such as ssh_key, or the account's id)"
                        ));
                    }
                }
                account
            }
            Item::Object(object) => serde_json::from_value::<AccountSpec>(Value::Object(object))
                .map_err(|error| format!("malformed account: {error}"))?,
        };
        if account.username.is_empty() {
            return Err("an account needs a username".to_owned());
        }
        list.push(account);
    }
    Ok(list)
}

/// A rule's accounts: `@ALL`, `@USER`, `@INPUT`, `@ANON`, usernames, `!username`.
pub(crate) fn selectors(cell: &Cell) -> Result<Vec<AccountSelector>, String> {
    texts(cell)?
        .iter()
        .map(|text| text.parse::<AccountSelector>().map_err(|e| e.to_string()))
        .collect()
}

/// A rule's protocols: names, `all`, or `none`. An empty cell is refused, so that a
/// forgotten cell grants neither everything nor nothing by accident.
pub(crate) fn protocol_filter(cell: &Cell) -> Result<ProtocolFilter, String> {
    let names = texts(cell)?;
    if names.is_empty() {
        return Err("no protocol; name them, or write `all` or `none`".to_owned());
    }
    if names.len() == 1 && names[0].eq_ignore_ascii_case("none") {
        return Ok(ProtocolFilter::Only(Vec::new()));
    }
    ProtocolFilter::from_names(&names).map_err(|e| e.to_string())
}

/// A rule's actions: names (`connect`, `transfer`, `all`, …) or `none`. An empty cell
/// is refused, as for protocols.
pub(crate) fn actions(cell: &Cell) -> Result<Actions, String> {
    let names = texts(cell)?;
    if names.is_empty() {
        return Err("no action; name them, or write `all` or `none`".to_owned());
    }
    if names.len() == 1 && names[0].eq_ignore_ascii_case("none") {
        return Ok(Actions::NONE);
    }
    Actions::parse_names(&names).map_err(|e| e.to_string())
}

/// A name of a closed set (`mfa`, `effect`, …) through the model's own serde form.
pub(crate) fn word<T: serde::de::DeserializeOwned>(
    cell: &Cell,
    expected: &str,
) -> Result<Option<T>, String> {
    let text = text(cell)?;
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_value(Value::String(text.to_ascii_lowercase()))
        .map(Some)
        .map_err(|_| format!("`{text}` is not one of {expected}"))
}

/// A list cell as an export writes it: `a, b, c`, or a JSON array when some value
/// could not be read back from the comma form.
pub(crate) fn join<S: AsRef<str>>(values: &[S]) -> String {
    let plain = values.iter().all(|value| {
        let value = value.as_ref();
        !value.is_empty() && !value.contains(',') && value.trim() == value
    }) && !values.first().is_some_and(|v| v.as_ref().starts_with('['));
    if plain {
        let mut out = String::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(value.as_ref());
        }
        out
    } else {
        let list: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        serde_json::to_string(&list).unwrap_or_default()
    }
}

/// At most 60 characters of `text`, for messages.
pub(crate) fn shorten(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(57).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> Cell {
        Cell::Text(text.to_owned())
    }

    #[test]
    fn formula_escape_round_trips() {
        for value in [
            "=1+1", "+x", "-x", "@ALL", "\tx", "\rx", "'=x", "''@x", "'plain", "plain", "",
        ] {
            for format in [Format::Csv, Format::Xlsx] {
                let written = escape(value, format);
                assert_eq!(unescape(&written), value, "{value:?} in {format}");
            }
        }
        assert_eq!(escape("=HYPERLINK(1)", Format::Csv), "'=HYPERLINK(1)");
        assert_eq!(escape("@ALL", Format::Xlsx), "@ALL");
        assert_eq!(unescape("'abc"), "'abc");
        assert_eq!(unescape("'-5"), "-5");
    }

    #[test]
    fn booleans() {
        for (text, value) in [
            ("TRUE", Some(true)),
            ("yes", Some(true)),
            ("1", Some(true)),
            ("No", Some(false)),
            ("0", Some(false)),
            ("false", Some(false)),
            ("", None),
        ] {
            assert_eq!(boolean(&cell(text)), Ok(value), "{text}");
        }
        assert_eq!(boolean(&Cell::Bool(true)), Ok(Some(true)));
        assert!(boolean(&cell("maybe")).unwrap_err().contains("`maybe`"));
    }

    #[test]
    fn times_refuse_numbers() {
        assert_eq!(
            time(&cell("2027-01-01T00:00:00Z")),
            Ok(Some("2027-01-01T00:00:00Z".parse().unwrap()))
        );
        assert_eq!(time(&cell(" ")), Ok(None));
        assert!(time(&cell("45000")).unwrap_err().starts_with("a number"));
        assert!(
            time(&Cell::Float(45000.5))
                .unwrap_err()
                .starts_with("a number")
        );
        assert!(time(&cell("tomorrow")).is_err());
    }

    #[test]
    fn references_in_jumpserver_form() {
        let id = "2b8c0f4e-8d5a-4f57-9c35-0d1c6f6b4a11";
        assert_eq!(
            Reference::parse(&format!("web (prod)({id})")),
            Reference {
                name: "web (prod)".to_owned(),
                id: Id::parse(id)
            }
        );
        assert_eq!(Reference::parse("web (prod)").id, None);
    }

    #[test]
    fn lists_commas_or_json() {
        assert_eq!(texts(&cell("a, b,,c ")).unwrap(), ["a", "b", "c"]);
        assert_eq!(texts(&cell(r#"["a,b", "c"]"#)).unwrap(), ["a,b", "c"]);
        assert!(texts(&cell("[1,")).is_err());
        assert_eq!(join(&["a", "b"]), "a, b");
        assert_eq!(join(&["a,b", "c"]), r#"["a,b","c"]"#);
        assert_eq!(join::<&str>(&[]), "");
    }

    #[test]
    fn memberships_with_expiry() {
        let list = memberships(&cell("alice, bob until 2027-01-01T00:00:00Z"), "user").unwrap();
        assert_eq!(list[0].expires_at, None);
        assert_eq!(list[1].reference.name, "bob");
        assert!(list[1].expires_at.is_some());
        let list = memberships(
            &cell(r#"[{"user": "carol", "expires_at": "2027-01-01T00:00:00Z"}]"#),
            "user",
        )
        .unwrap();
        assert_eq!(list[0].reference.name, "carol");
        assert!(memberships(&cell("bob until soon"), "user").is_err());
    }

    #[test]
    fn accounts_with_attributes() {
        let list = accounts(&cell("root (privileged), deploy (ssh_key), guest")).unwrap();
        assert!(list[0].privileged);
        assert_eq!(list[1].secret_kind, SecretKind::SshKey);
        assert_eq!(list[2].username, "guest");
        assert!(accounts(&cell("root (superuser)")).is_err());
    }

    #[test]
    fn rule_sets() {
        assert_eq!(actions(&cell("connect, transfer")).unwrap().bits(), 1 | 38);
        assert!(actions(&cell("")).is_err());
        assert_eq!(protocol_filter(&cell("all")).unwrap(), ProtocolFilter::All);
        assert!(selectors(&cell("@ALL, !root")).is_ok());
        assert!(selectors(&cell("@EVERYONE")).is_err());
    }
}
