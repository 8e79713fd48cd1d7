//! The confusable fold: when two unique names look alike.
//!
//! Unique names already compare case-insensitively ([`same_name`]). On top of that a
//! new name is refused when one of its *fold forms* equals a fold form of a name held
//! by another entity of the same kind and scope. A fold form is built character by
//! character:
//!
//! - an ASCII character becomes its ASCII lowercase, nothing more. ASCII names fold to
//!   their lowercase selves, so different ASCII names never collide (`rn`/`m`,
//!   `0`/`O`, `web-01`/`web-O1` all stay distinct: administrators really have those);
//! - a non-ASCII character whose compatibility form (NFKC) is ASCII becomes that,
//!   lowercased: fullwidth `ｍ` becomes `m`, mathematical `𝟎` becomes `0`, the Kelvin
//!   sign `k`;
//! - any other non-ASCII character becomes its UTS #39 confusable prototype (the
//!   skeleton of that single character: NFD, default-ignorable code points dropped,
//!   each code point mapped through `confusables.txt`, NFD again), lowercased:
//!   Cyrillic `а` becomes `a`, dotless `ı` becomes `i`, a zero-width space nothing.
//!
//! The compatibility step comes first because the table lives in its own space, where
//! ASCII `m` is spelled `rn` and `0` is `O`: the prototype of fullwidth `ｍ` is `rn`,
//! so `ａｄｍｉｎ` would meet `adrnin` rather than `admin`.
//!
//! A non-ASCII name has two forms: its characters folded as written, and their
//! lowercase folded. Both are needed because the table is not case-blind: Cyrillic
//! `І` (it reads as `I`) has the prototype `l`, its lowercase `і` the prototype `i`,
//! so `Іnfra` meets `infra` only through its lowercase; Cyrillic `В` has the
//! prototype `B` but its lowercase `в` the prototype `ʙ`, so `Вob` meets `bob` only as
//! written. Two names look alike when their sets of forms meet.
//!
//! Known gaps, all of the table's making: a character whose prototype is a multi-letter
//! ASCII spelling (`rn` for m-like ones without an ASCII compatibility form) meets only
//! that spelling; two accents that look alike but decompose differently stay distinct.
//!
//! [`same_name`]: super::same_name

use smallvec::{SmallVec, smallvec};
use unicode_normalization::UnicodeNormalization;

/// The fold forms of `name`: one for an ASCII name (its lowercase), one or two (as
/// written, and through its lowercase) for any other.
pub(crate) fn fold_forms(name: &str) -> SmallVec<[String; 2]> {
    if name.is_ascii() {
        return smallvec![name.to_ascii_lowercase()];
    }
    let as_written = fold(name, false);
    let lowered = fold(name, true);
    if as_written == lowered {
        smallvec![as_written]
    } else {
        smallvec![as_written, lowered]
    }
}

/// The keys under which unique names collide: the engine refuses a new name beside
/// another entity's (of the same kind and scope) when their keys meet, case variants
/// and look-alikes alike. An ASCII name has one key, its lowercase; any other one or
/// two (see the module docs). For front-ends that plan many writes at once (LDAP
/// sync) and want to report a clash per entry rather than have the write refused.
pub fn name_folds(name: &str) -> Vec<String> {
    fold_forms(name).into_vec()
}

/// Whether `name` has a fold form among `forms` (the forms of another name).
pub(crate) fn meets(name: &str, forms: &[String]) -> bool {
    fold_forms(name).iter().any(|form| forms.contains(form))
}

/// Whether two names look alike: their fold forms meet. Case variants look alike too.
pub(crate) fn looks_alike(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    meets(a, &fold_forms(b))
}

fn fold(name: &str, lowercase_first: bool) -> String {
    let mut folded = String::with_capacity(name.len());
    for c in name.chars() {
        if lowercase_first {
            for lower in c.to_lowercase() {
                push_prototype(&mut folded, lower);
            }
        } else {
            push_prototype(&mut folded, c);
        }
    }
    folded
}

fn push_prototype(folded: &mut String, c: char) {
    if c.is_ascii() {
        folded.push(c.to_ascii_lowercase());
        return;
    }
    let compatible: SmallVec<[char; 4]> = std::iter::once(c).nfkc().collect();
    if compatible.iter().all(char::is_ascii) {
        folded.extend(compatible.iter().map(char::to_ascii_lowercase));
        return;
    }
    let mut buffer = [0u8; 4];
    for prototype in unicode_security::skeleton(c.encode_utf8(&mut buffer)) {
        folded.extend(prototype.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_names_fold_to_their_lowercase() {
        assert_eq!(fold_forms("Web-01").as_slice(), ["web-01"]);
        assert_eq!(fold_forms("rn").as_slice(), ["rn"]);
    }

    #[test]
    fn different_ascii_names_never_look_alike() {
        for (a, b) in [("rn", "m"), ("0", "O"), ("web-01", "web-O1"), ("l", "I")] {
            assert!(!looks_alike(a, b), "{a} / {b}");
        }
    }

    #[test]
    fn look_alikes_of_alice() {
        for name in [
            "\u{430}lice",   // Cyrillic а
            "ａｌｉｃｅ",    // fullwidth
            "ＡＬＩＣＥ",    // fullwidth capitals: only through the lowercase form
            "al\u{131}ce",   // dotless ı: the table maps it to `i`
            "al\u{456}ce",   // Cyrillic і
            "al\u{200B}ice", // a zero-width space is default-ignorable
            "\u{1D41A}lice", // mathematical bold a
            "\u{410}LICE",   // Cyrillic А among ASCII capitals
        ] {
            assert!(looks_alike(name, "alice"), "{name:?}");
            assert!(looks_alike("Alice", name), "{name:?}");
        }
        assert!(
            !looks_alike("al\u{ed}ce", "alice"),
            "í has a visible accent"
        );
        assert!(!looks_alike("\u{430}lice", "bob"));
        assert!(!looks_alike("bob", "alice"));
    }

    #[test]
    fn capitals_meet_through_the_form_as_written() {
        // Cyrillic В is B as written; its lowercase в is a small capital ʙ.
        assert!(looks_alike("\u{412}ob", "bob"));
        // Greek Ι and Cyrillic І read as I; through their lowercase they meet `infra`.
        assert!(looks_alike("\u{399}nfra", "infra"));
        assert!(looks_alike("\u{406}nfra", "Infra"));
    }

    #[test]
    fn compatibility_forms_come_before_the_table() {
        // The table spells m as `rn` and 0 as `O`; NFKC gives fullwidth and
        // mathematical letters and digits their ASCII selves first.
        assert!(looks_alike("ａｄｍｉｎ", "admin"));
        assert!(looks_alike("ＡＤＭＩＮ", "admin"));
        assert!(
            looks_alike("\u{430}d\u{FF4D}in", "admin"),
            "Cyrillic а and fullwidth ｍ"
        );
        assert!(!looks_alike("ａｄｍｉｎ", "adrnin"));
        assert!(looks_alike("web-\u{1D7CE}1", "web-01"));
        assert!(!looks_alike("web-\u{1D7CE}1", "web-O1"));
        assert!(looks_alike("\u{212A}elvin", "kelvin"));
    }

    #[test]
    fn non_ascii_look_alikes_meet_each_other() {
        assert!(looks_alike("\u{430}lice", "ａｌｉｃｅ"));
        assert!(
            looks_alike("caf\u{e9}", "cafe\u{301}"),
            "composed and decomposed é"
        );
        assert!(!looks_alike("caf\u{e9}", "cafe"));
    }

    proptest! {
        #[test]
        fn ascii_names_look_alike_exactly_when_case_equal(a in "[a-zA-Z0-9._-]{1,6}", b in "[a-zA-Z0-9._-]{1,6}") {
            prop_assert_eq!(looks_alike(&a, &b), a.eq_ignore_ascii_case(&b));
        }

        #[test]
        fn looking_alike_is_symmetric_and_reflexive(a in "\\PC{1,8}", b in "\\PC{1,8}") {
            prop_assert_eq!(looks_alike(&a, &b), looks_alike(&b, &a));
            prop_assert!(looks_alike(&a, &a));
        }

        #[test]
        fn case_variants_look_alike(a in "\\PC{1,8}") {
            for variant in [a.to_lowercase(), a.to_uppercase()] {
                if super::super::same_name(&a, &variant) {
                    prop_assert!(looks_alike(&a, &variant), "{:?} / {:?}", a, variant);
                }
            }
        }

        #[test]
        fn swapping_letters_for_cyrillic_twins_looks_alike(name in "[aceopx]{1,8}") {
            let cyrillic: String = name
                .chars()
                .map(|c| match c {
                    'a' => '\u{430}',
                    'c' => '\u{441}',
                    'e' => '\u{435}',
                    'o' => '\u{43E}',
                    'p' => '\u{440}',
                    _ => '\u{445}',
                })
                .collect();
            prop_assert!(looks_alike(&cyrillic, &name));
            prop_assert!(looks_alike(&cyrillic, &name.to_uppercase()));
        }
    }
}
