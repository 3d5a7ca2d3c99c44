/*!
Property tests for the bytes the sidecar reads from someone else: Claude Code's session file
(`activity::claude::field` and `said`), which any process of the user can write.

`field` is checked against serde_json as the oracle: documents serde_json writes (compact or
pretty, with nested objects and arrays that repeat the key) give back exactly the raw value of
the top-level key. On arbitrary bytes it must not panic and only ever returns a slice of its
input. Cases default to 1024; `PROPTEST_CASES` overrides (`cargo xtask fuzz` runs hundreds
of thousands). Failures are not persisted: the shrunk input is printed.
*/

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

use crate::activity::claude::{field, said};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The keys the sidecar asks for, and a few others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("status".to_string()),
        Just("procStart".to_string()),
        Just("kind".to_string()),
        Just("statusUpdatedAt".to_string()),
        Just("sta\"tus".to_string()),
        any::<String>(),
    ]
}

/// A JSON value: scalars, and nested objects and arrays that may repeat the keys above.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\{}\\[\\],: ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// What `field` should give for `value`: a string's escaped text between its quotes, a
/// scalar's token; nothing for an object or array.
fn raw(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(_) => {
            let quoted = serde_json::to_vec(value).unwrap();
            Some(quoted[1..quoted.len() - 1].to_vec())
        }
        Value::Object(_) | Value::Array(_) => None,
        scalar => Some(serde_json::to_vec(scalar).unwrap()),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every top-level scalar of a document serde_json wrote comes back exactly, whatever
    /// nested objects hold the same key.
    #[test]
    fn field_reads_what_serde_json_wrote(
        fields in prop::collection::vec((key(), value()), 0..6),
        pretty in any::<bool>(),
    ) {
        let object: Map<String, Value> = fields.into_iter().collect();
        let doc = Value::Object(object.clone());
        let text = if pretty {
            serde_json::to_vec_pretty(&doc).unwrap()
        } else {
            serde_json::to_vec(&doc).unwrap()
        };
        for (k, v) in &object {
            let Some(want) = raw(v) else { continue };
            let key = serde_json::to_vec(&Value::String(k.clone())).unwrap();
            let key = &key[1..key.len() - 1];
            prop_assert_eq!(field(&text, key), Some(&want[..]), "{:?} in {}", k, String::from_utf8_lossy(&text));
        }
        prop_assert_eq!(field(&text, b"\0absent"), None);
    }

    /// Hostile bytes: no panic, and what comes back is a part of the input.
    #[test]
    fn field_survives_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        key in prop::collection::vec(any::<u8>(), 0..12),
        start in any::<u64>(),
    ) {
        if let Some(found) = field(&bytes, &key) {
            let range = bytes.as_ptr_range();
            prop_assert!(range.contains(&found.as_ptr()) || found.is_empty());
            prop_assert!(found.len() <= bytes.len());
        }
        let _ = said(&bytes, start);
    }

    /// Session-file-shaped soup: braces, quotes, escapes and the keys, in any order.
    #[test]
    fn field_survives_json_soup(
        pieces in prop::collection::vec(prop_oneof![
            Just(&b"{"[..]), Just(&b"}"[..]), Just(&b"["[..]), Just(&b"]"[..]),
            Just(&b"\""[..]), Just(&b"\\"[..]), Just(&b":"[..]), Just(&b","[..]),
            Just(&b" "[..]), Just(&b"\"status\""[..]), Just(&b"\"procStart\""[..]),
            Just(&b"\"busy\""[..]), Just(&b"77"[..]), Just(&b"\xff"[..]),
        ], 0..48),
    ) {
        let bytes = pieces.concat();
        let _ = field(&bytes, b"status");
        let _ = said(&bytes, 77);
    }
}
