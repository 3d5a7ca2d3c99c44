/*!
JSON documents for reports: serde_json writes them from derived `Serialize` types (field order
is declaration order); this module adds one layout, [`lines`], for the reports that list agents.

serde_json writes a non-finite `f64` as `null` (JSON has no `inf` or `NaN`), and escapes every
control character in strings.
*/

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

/// `value` as compact JSON, except that an array's elements each start a line of their own,
/// indented by two spaces (`[\n  {...},\n  {...}\n]`, and `[]` when empty): one agent per line,
/// for people and `grep`, yet one document.
pub fn lines<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Lines::default());
    value
        .serialize(&mut ser)
        .expect("serializing our own report types into memory cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// serde_json's compact layout with a line break before each array element.
#[derive(Default)]
struct Lines {
    /// Per open array, whether it has an element yet: an empty one closes on its own line.
    open: Vec<bool>,
}

impl Formatter for Lines {
    fn begin_array<W: ?Sized + io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.open.push(false);
        CompactFormatter.begin_array(out)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        out: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if let Some(any) = self.open.last_mut() {
            *any = true;
        }
        out.write_all(if first { b"\n  " } else { b",\n  " })
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        let any = self.open.pop().unwrap_or(false);
        out.write_all(if any { b"\n]" } else { b"]" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row<'a> {
        n: u32,
        s: Option<&'a str>,
        f: f64,
    }

    #[test]
    fn lines_put_each_element_on_a_line_and_keep_field_order() {
        let rows = [
            Row {
                n: 1,
                s: Some("a\"\n\u{1}"),
                f: 0.25,
            },
            Row {
                n: 2,
                s: None,
                f: f64::INFINITY,
            },
        ];
        assert_eq!(
            lines(&rows),
            "[\n  {\"n\":1,\"s\":\"a\\\"\\n\\u0001\",\"f\":0.25},\n  {\"n\":2,\"s\":null,\"f\":null}\n]"
        );
        assert_eq!(lines::<[Row]>(&[]), "[]");
    }
}
