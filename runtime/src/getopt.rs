//! POSIX getopt for the tools, so they parse flags exactly as NetBSD's do
//! (`-dh`, `-c 2`, `-c2`, `--` ends options).
//!
//! Arguments are `OsString`s: a path operand or an option's value may be
//! any bytes but NUL, as on NetBSD, and comes back unchanged.
//!
//! Two orders: [`Order::Posix`] ends the options at the first operand
//! (`rumpctl -v ls -l`: the `-l` is `ls`'s), [`Order::Permute`] takes
//! options anywhere until `--`, as GNU getopt does, for the FUSE mount
//! tools (`rump_ext2fs img mnt -o ro`, as `fuse2fs` takes it).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Parsed options in order, plus the operands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Each option letter, with its value when the spec gives it one.
    pub opts: Vec<(char, Option<OsString>)>,
    /// What follows the options (after `--` or the first non-option).
    pub operands: Vec<OsString>,
}

/// What getopt refuses; the messages are getopt's, without the program
/// name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GetoptError {
    /// A letter the spec does not name.
    #[error("unknown option -- {0}")]
    Unknown(char),
    /// An option that takes a value came last.
    #[error("option requires an argument -- {0}")]
    MissingArgument(char),
}

/// Where options may stand among the operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Options end at the first operand (or `--`); what follows is all
    /// operands. NetBSD's getopt(3), and what a command with subcommands
    /// needs.
    Posix,
    /// Options anywhere until `--`; the operands keep their order. `-`
    /// alone is an operand; an option's value is taken as it is, even
    /// when it starts with `-` (`-o -x`).
    Permute,
}

/// [`getopt_with`] in [`Order::Posix`]: `spec` is a getopt string, a
/// letter followed by ':' if it takes a value. Option letters are ASCII;
/// any other byte in an option cluster is an unknown option.
pub fn getopt<S: AsRef<OsStr>>(args: &[S], spec: &str) -> Result<Parsed, GetoptError> {
    getopt_with(args, spec, Order::Posix)
}

/// Parse `args` against `spec` (as for [`getopt`]), options placed as
/// `order` allows.
pub fn getopt_with<S: AsRef<OsStr>>(
    args: &[S],
    spec: &str,
    order: Order,
) -> Result<Parsed, GetoptError> {
    let takes = |c: u8| -> Option<bool> {
        // ':' marks a value in `spec`; it is never an option itself.
        if c == b':' || !c.is_ascii() {
            return None;
        }
        let i = spec.bytes().position(|b| b == c)?;
        Some(spec.as_bytes().get(i + 1) == Some(&b':'))
    };
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_ref().as_bytes();
        if a == b"--" {
            i += 1;
            break;
        }
        if !a.starts_with(b"-") || a == b"-" {
            match order {
                Order::Posix => break,
                Order::Permute => {
                    p.operands.push(args[i].as_ref().to_os_string());
                    i += 1;
                    continue;
                }
            }
        }
        let mut j = 1;
        while j < a.len() {
            let c = a[j];
            match takes(c) {
                None => {
                    // Name the character as the user typed it when it is
                    // one; a stray byte shows as its Latin-1 character.
                    let ch = std::str::from_utf8(&a[j..])
                        .ok()
                        .and_then(|s| s.chars().next())
                        .unwrap_or(c as char);
                    return Err(GetoptError::Unknown(ch));
                }
                Some(false) => p.opts.push((c as char, None)),
                Some(true) => {
                    let val = if j + 1 < a.len() {
                        OsString::from_vec(a[j + 1..].to_vec())
                    } else {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.as_ref().to_os_string(),
                            None => return Err(GetoptError::MissingArgument(c as char)),
                        }
                    };
                    p.opts.push((c as char, Some(val)));
                    break;
                }
            }
            j += 1;
        }
        i += 1;
    }
    p.operands
        .extend(args[i..].iter().map(|s| s.as_ref().to_os_string()));
    Ok(p)
}

/// An option value or operand that must be text (a number, a URL, a mode):
/// the text, or `name VALUE: not valid UTF-8` for the message.
pub fn text<'a>(what: &str, v: &'a OsStr) -> Result<&'a str, String> {
    v.to_str()
        .ok_or_else(|| format!("{what}{}: not valid UTF-8", crate::tool::show(v.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }
    #[test]
    fn parses_like_getopt() {
        let p = getopt(&v(&["-dh", "-n"]), "dhn").unwrap();
        assert_eq!(p.opts, vec![('d', None), ('h', None), ('n', None)]);
        let p = getopt(&v(&["-s", "-c2", "-d", "key=/dk", "unix://x"]), "sc:d:").unwrap();
        assert_eq!(
            p.opts,
            vec![
                ('s', None),
                ('c', Some("2".into())),
                ('d', Some("key=/dk".into()))
            ]
        );
        assert_eq!(p.operands, v(&["unix://x"]));
        assert_eq!(
            getopt(&v(&["-x"]), "dhn").unwrap_err().to_string(),
            "unknown option -- x"
        );
        assert_eq!(
            getopt(&v(&["-c"]), "c:").unwrap_err().to_string(),
            "option requires an argument -- c"
        );
        assert_eq!(
            getopt(&v(&["-:"]), "c:").unwrap_err(),
            GetoptError::Unknown(':')
        );
        assert_eq!(getopt(&v(&["--", "-d"]), "d").unwrap().operands, v(&["-d"]));
    }

    #[test]
    fn bytes_pass_unchanged() {
        let odd = OsString::from_vec(b"dir/\xff\xfe".to_vec());
        let args = vec![OsString::from("-d"), odd.clone(), odd.clone()];
        let p = getopt(&args, "d:").unwrap();
        assert_eq!(p.opts, vec![('d', Some(odd.clone()))]);
        assert_eq!(p.operands, vec![odd.clone()]);
        let glued = OsString::from_vec(b"-d\xff".to_vec());
        let p = getopt(&[glued], "d:").unwrap();
        assert_eq!(p.opts[0].1.as_deref().unwrap().as_bytes(), b"\xff");
        let bad = OsString::from_vec(b"-\xff".to_vec());
        assert_eq!(
            getopt(&[bad], "d").unwrap_err(),
            GetoptError::Unknown('\u{ff}')
        );
        assert!(text("-c ", &odd).unwrap_err().contains("not valid UTF-8"));
    }

    #[test]
    fn permuted_options_stand_anywhere_until_the_end_of_options() {
        let perm = |a: &[&str], spec: &str| getopt_with(&v(a), spec, Order::Permute);
        // fuse2fs's order: operands first, options after.
        let p = perm(&["img", "mnt", "-o", "ro", "-f"], "fo:").unwrap();
        assert_eq!(p.opts, vec![('o', Some("ro".into())), ('f', None)]);
        assert_eq!(p.operands, v(&["img", "mnt"]));
        // Between the operands, clustered, glued values; operands keep
        // their order.
        let p = perm(&["a", "-fv", "b", "-ox,y", "c"], "fvo:").unwrap();
        assert_eq!(
            p.opts,
            vec![('f', None), ('v', None), ('o', Some("x,y".into()))]
        );
        assert_eq!(p.operands, v(&["a", "b", "c"]));
        // `--` ends the options; what follows is operands, dashes and all.
        let p = perm(&["a", "--", "-f", "b"], "f").unwrap();
        assert!(p.opts.is_empty());
        assert_eq!(p.operands, v(&["a", "-f", "b"]));
        // `-` alone is an operand; a value may start with '-'.
        let p = perm(&["-", "-o", "-f"], "fo:").unwrap();
        assert_eq!(p.opts, vec![('o', Some("-f".into()))]);
        assert_eq!(p.operands, v(&["-"]));
        // Errors as in order: after an operand too.
        assert_eq!(
            perm(&["img", "-x"], "f").unwrap_err(),
            GetoptError::Unknown('x')
        );
        assert_eq!(
            perm(&["img", "mnt", "-o"], "o:").unwrap_err(),
            GetoptError::MissingArgument('o')
        );
        // Bytes pass unchanged, wherever they stand.
        let odd = OsString::from_vec(b"\xff.img".to_vec());
        let args = vec![odd.clone(), OsString::from("-d"), odd.clone(), "m".into()];
        let p = getopt_with(&args, "d:", Order::Permute).unwrap();
        assert_eq!(p.opts, vec![('d', Some(odd.clone()))]);
        assert_eq!(p.operands, vec![odd, "m".into()]);
        // The POSIX order stops at the first operand instead.
        let p = getopt(&v(&["img", "-f"]), "f").unwrap();
        assert!(p.opts.is_empty());
        assert_eq!(p.operands, v(&["img", "-f"]));
    }
}
