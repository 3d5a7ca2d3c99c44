/*!
Just enough JSON output for reports, without a serializer dependency: one [`Object`] writer
places every comma, quote and `null`, so no caller does it by hand.

Output is compact (`{"a":1,"b":null}`); [`array`] puts one element per line.
*/

use std::fmt::Write;

/// Appends `text` as a JSON string literal, quotes included.
pub fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number JSON can hold: integers as they are; a float only when finite (JSON has no
/// `inf` or `NaN`; those become `null`).
pub trait Number {
    fn write(&self, out: &mut String);
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn write(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integers!(i32, i64, u32, u64, usize);

impl Number for f64 {
    fn write(&self, out: &mut String) {
        // Rust prints a finite f64 as a plain decimal, never `1e5`: valid JSON.
        if self.is_finite() {
            let _ = write!(out, "{self}");
        } else {
            out.push_str("null");
        }
    }
}

/// One JSON object, written field by field into a `String`; [`Object::end`] closes it.
#[must_use = "call end() to close the object"]
pub struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    /// `"key":"value"`, or `"key":null` for `None`.
    pub fn string<'s>(&mut self, key: &str, value: impl Into<Option<&'s str>>) -> &mut Self {
        let value = value.into();
        let out = self.key(key);
        match value {
            Some(text) => string(out, text),
            None => out.push_str("null"),
        }
        self
    }

    /// `"key":123`, or `"key":null` for `None`.
    pub fn number<N: Number>(&mut self, key: &str, value: Option<N>) -> &mut Self {
        let out = self.key(key);
        match value {
            Some(n) => n.write(out),
            None => out.push_str("null"),
        }
        self
    }

    /// `"key":true` or `"key":false`.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

/// A JSON array of `items`, one element per line (`[]` when empty), each written by `each`.
pub fn array<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    if items.is_empty() {
        out.push_str("[]");
        return;
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        each(out, item);
    }
    out.push_str("\n]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn objects_place_commas_and_nulls() {
        let mut out = String::new();
        let mut obj = Object::new(&mut out);
        obj.string("a", "x\"")
            .string("b", None)
            .number("c", Some(7))
            .number("d", Some(0.25))
            .number::<f64>("e", None)
            .number("f", Some(f64::INFINITY))
            .bool("g", true);
        obj.end();
        assert_eq!(
            out,
            r#"{"a":"x\"","b":null,"c":7,"d":0.25,"e":null,"f":null,"g":true}"#
        );
        let mut out = String::new();
        Object::new(&mut out).end();
        assert_eq!(out, "{}");
    }

    #[test]
    fn arrays_one_element_per_line() {
        let mut out = String::new();
        array(&mut out, &[1, 2], |out, n| {
            let mut obj = Object::new(out);
            obj.number("n", Some(*n));
            obj.end();
        });
        assert_eq!(out, "[\n  {\"n\":1},\n  {\"n\":2}\n]");
        let mut out = String::new();
        array::<u8>(&mut out, &[], |_, _| {});
        assert_eq!(out, "[]");
    }
}
