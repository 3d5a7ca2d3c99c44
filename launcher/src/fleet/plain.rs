/*!
A pane's output made plain text for the operator's terminal: [`Printable`] runs it through
`vte`'s parser (the state machine terminals use, so a sequence is dropped whole however it is
written or split) and keeps only what a terminal would draw, plus newlines and tabs.

Dropped: escape sequences (CSI, OSC, DCS, the two-byte ones), C0 controls but `\n` and `\t`
(a carriage return, a bell, a backspace), DEL, C1 controls whether sent as raw bytes or as
UTF-8 (U+0080..U+009F: U+009B is a CSI to some terminals), and broken UTF-8 (vte turns it
into U+FFFD, which is dropped with it). An agent cannot drive the operator's terminal
through `mosaic-fleet logs`.
*/

/// The stripper; it keeps its state across chunks, since a sequence or a UTF-8 character may
/// be split between two reads.
#[derive(Default)]
pub struct Printable {
    parser: vte::Parser,
    text: Text,
}

/// What the parser hands over: the text so far, and whether a newline is owed.
#[derive(Default)]
struct Text {
    out: Vec<u8>,
    mid_line: bool,
}

impl Printable {
    /// Appends the printable part of `input` to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        std::mem::swap(&mut self.text.out, out);
        self.parser.advance(&mut self.text, input);
        std::mem::swap(&mut self.text.out, out);
    }

    /// The last character passed on was not a newline.
    pub fn mid_line(&self) -> bool {
        self.text.mid_line
    }
}

/// `bytes` made plain in one go: a capture, or any output that comes whole.
pub fn plain(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    Printable::default().push(bytes, &mut out);
    String::from_utf8(out).expect("only whole characters are kept")
}

impl vte::Perform for Text {
    fn print(&mut self, c: char) {
        // U+FFFD is how vte reports broken UTF-8; DEL reaches `print` too.
        if c != char::REPLACEMENT_CHARACTER && !c.is_control() {
            let mut utf8 = [0; 4];
            self.out
                .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            self.mid_line = true;
        }
    }

    fn execute(&mut self, byte: u8) {
        // C0 and C1 controls: only the two that lay out text pass.
        if byte == b'\n' || byte == b'\t' {
            self.out.push(byte);
            self.mid_line = byte != b'\n';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(chunks: &[&[u8]]) -> String {
        let mut p = Printable::default();
        let mut out = Vec::new();
        for chunk in chunks {
            p.push(chunk, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_and_carriage_returns_are_dropped() {
        assert_eq!(plain(b"a\r\n\x1b[31mred\x1b[0m\tx\n"), "a\nred\tx\n");
        // A title (OSC, ended by BEL or ST), a charset switch, a bell, a backspace.
        assert_eq!(
            plain(b"\x1b]0;title\x07\x1b]2;t\x1b\\\x1b(Bok\x07\x08!"),
            "ok!"
        );
        // UTF-8 passes whole.
        assert_eq!(plain("é→\n".as_bytes()), "é→\n");
    }

    #[test]
    fn c1_controls_and_broken_utf8_are_dropped() {
        // U+0085 (NEL) and U+009B (CSI) as UTF-8, then as raw bytes; DEL.
        assert_eq!(plain("a\u{85}b\u{9b}c\u{7f}d".as_bytes()), "abcd");
        assert_eq!(plain(b"a\x85b\x9bc"), "abc");
        // A lone continuation byte, a truncated sequence, an overlong one, a surrogate.
        assert_eq!(plain(b"x\x80y\xe2\x82z\xc0\xafw\xed\xa0\x80v"), "xyzwv");
    }

    #[test]
    fn a_sequence_split_between_reads_is_still_dropped() {
        assert_eq!(
            chunks(&[b"x\x1b", b"[3", b"8;5;1mY\x1b]8;;", b"http://a\x1b", b"\\z"]),
            "xYz"
        );
        // A character split between reads passes whole.
        assert_eq!(chunks(&[b"\xe2", b"\x86", b"\x92!"]), "→!");
    }

    #[test]
    fn mid_line_tells_whether_a_newline_is_owed() {
        let mut p = Printable::default();
        let mut out = Vec::new();
        p.push(b"done\n", &mut out);
        assert!(!p.mid_line());
        p.push(b"partial\x1b[0m", &mut out);
        assert!(p.mid_line());
    }
}
