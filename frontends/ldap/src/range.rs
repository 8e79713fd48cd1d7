//! Active Directory's ranged attribute retrieval, as pure functions.
//!
//! A group with more members than the server's MaxValRange (1500 by default) answers
//! `member;range=0-1499` instead of `member`; the client asks again for
//! `member;range=1500-*` and so on until a range ends in `*`. OpenLDAP never ranges,
//! so this logic is tested against recorded answers, not a live server.

use std::collections::HashMap;

/// One answer's worth of an attribute's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeStep {
    pub values: Vec<String>,
    /// The attribute description to ask for next (`member;range=1500-*`), or `None`
    /// when the values are complete.
    pub next: Option<String>,
}

/// The values of `attribute` in one answer's attributes, plain or ranged, and what to
/// ask for next. `None` when the answer holds the attribute in neither form.
pub fn range_step(attrs: &HashMap<String, Vec<String>>, attribute: &str) -> Option<RangeStep> {
    for (name, values) in attrs {
        if name.eq_ignore_ascii_case(attribute) {
            return Some(RangeStep {
                values: values.clone(),
                next: None,
            });
        }
        let Some((base, options)) = name.split_once(';') else {
            continue;
        };
        if !base.eq_ignore_ascii_case(attribute) {
            continue;
        }
        let Some(range) = options
            .split(';')
            .find_map(|option| strip_prefix_ignore_case(option, "range="))
        else {
            continue;
        };
        let (_low, high) = range.split_once('-')?;
        let next = if high == "*" {
            None
        } else {
            let high: u64 = high.parse().ok()?;
            Some(format!("{base};range={}-*", high + 1))
        };
        return Some(RangeStep {
            values: values.clone(),
            next,
        });
    }
    None
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The values of one attribute gathered over as many answers as the server needs.
/// The caller asks [`RangeCursor::next_request`] for what to fetch next (a base-scope
/// search of the same entry for that one attribute description) and feeds the answer
/// back, until there is nothing left to ask for.
#[derive(Debug, Clone)]
pub struct RangeCursor {
    attribute: String,
    values: Vec<String>,
    next: Option<String>,
    steps: usize,
}

/// The most answers one attribute may take: a server that never ends a range cannot
/// keep us asking forever (1,000 answers of 1,500 values is 1.5 million members).
pub const MAX_RANGE_STEPS: usize = 1000;

/// A server kept answering ranges past [`MAX_RANGE_STEPS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndlessRange;

impl RangeCursor {
    /// Starts from the entry's first answer (which may hold the attribute plain,
    /// ranged, or not at all).
    pub fn start(first: &HashMap<String, Vec<String>>, attribute: &str) -> RangeCursor {
        let step = range_step(first, attribute);
        let (values, next) = step.map_or((Vec::new(), None), |s| (s.values, s.next));
        RangeCursor {
            attribute: attribute.to_owned(),
            values,
            next,
            steps: 1,
        }
    }

    /// The attribute description to fetch next, if the values are not complete.
    pub fn next_request(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// Takes the answer to [`RangeCursor::next_request`].
    pub fn feed(&mut self, answer: &HashMap<String, Vec<String>>) -> Result<(), EndlessRange> {
        self.steps += 1;
        match range_step(answer, &self.attribute) {
            Some(mut more) => {
                self.values.append(&mut more.values);
                self.next = more.next;
            }
            // The server dropped the attribute: take what we have.
            None => self.next = None,
        }
        if self.next.is_some() && self.steps >= MAX_RANGE_STEPS {
            return Err(EndlessRange);
        }
        Ok(())
    }

    pub fn into_values(self) -> Vec<String> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, values: std::ops::Range<u32>) -> HashMap<String, Vec<String>> {
        let values = values
            .map(|i| format!("CN=user{i},OU=People,DC=corp,DC=example"))
            .collect();
        HashMap::from([(name.to_owned(), values)])
    }

    #[test]
    fn a_plain_attribute_is_complete() {
        let step = range_step(&answer("member", 0..3), "member").unwrap();
        assert_eq!(step.values.len(), 3);
        assert_eq!(step.next, None);
    }

    #[test]
    fn a_first_range_asks_for_the_rest() {
        let step = range_step(&answer("member;range=0-1499", 0..1500), "member").unwrap();
        assert_eq!(step.values.len(), 1500);
        assert_eq!(step.next.as_deref(), Some("member;range=1500-*"));
    }

    #[test]
    fn the_last_range_ends_in_a_star() {
        let step = range_step(&answer("member;range=3000-*", 3000..3200), "Member").unwrap();
        assert_eq!(step.next, None);
    }

    #[test]
    fn another_attribute_is_not_this_one() {
        assert_eq!(range_step(&answer("memberOf", 0..2), "member"), None);
        assert_eq!(
            range_step(&answer("memberOf;range=0-1", 0..2), "member"),
            None
        );
    }

    /// Recorded from an Active Directory group of 3,200 members with the default
    /// MaxValRange of 1500: three answers.
    #[test]
    fn recorded_answers_are_followed_to_the_end() {
        let recorded = [
            answer("member;range=1500-2999", 1500..3000),
            answer("member;range=3000-*", 3000..3200),
        ];
        let mut cursor = RangeCursor::start(&answer("member;range=0-1499", 0..1500), "member");
        let mut asked = Vec::new();
        for recorded in &recorded {
            asked.push(cursor.next_request().unwrap().to_owned());
            cursor.feed(recorded).unwrap();
        }
        assert_eq!(cursor.next_request(), None);
        assert_eq!(asked, ["member;range=1500-*", "member;range=3000-*"]);
        let values = cursor.into_values();
        assert_eq!(values.len(), 3200);
        assert_eq!(values[0], "CN=user0,OU=People,DC=corp,DC=example");
        assert_eq!(values[3199], "CN=user3199,OU=People,DC=corp,DC=example");
    }

    #[test]
    fn a_range_that_never_ends_is_an_error() {
        let mut cursor = RangeCursor::start(&answer("member;range=0-0", 0..1), "member");
        let mut result = Ok(());
        for _ in 0..MAX_RANGE_STEPS {
            result = cursor.feed(&answer("member;range=1-1", 1..2));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(EndlessRange));
    }

    #[test]
    fn an_entry_without_the_attribute_has_no_values() {
        let cursor = RangeCursor::start(&answer("cn", 0..1), "member");
        assert_eq!(cursor.next_request(), None);
        assert!(cursor.into_values().is_empty());
    }
}
