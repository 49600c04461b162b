//! Names in messages. Kernel and host names are bytes (anything but NUL);
//! a message shows them so that every byte can still be told apart.

/// A name for a message: its UTF-8 as it is, any other byte as `\xNN`
/// (never U+FFFD, which would hide which bytes the name has).
pub fn show(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        s.push_str(chunk.valid());
        for x in chunk.invalid() {
            s.push_str(&format!("\\x{x:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::show;

    #[test]
    fn stray_bytes_show_as_hex_and_utf8_as_itself() {
        assert_eq!(show(b"m/\xff\xfe"), "m/\\xff\\xfe");
        assert_eq!(show("é".as_bytes()), "é");
    }
}
