//! POSIX getopt for the tools, so they parse flags exactly as NetBSD's do
//! (`-dh`, `-c 2`, `-c2`, `--` ends options).

/// Parsed options in order, plus the operands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The options, in the order given, each with its argument if it takes one.
    pub opts: Vec<(char, Option<String>)>,
    /// What follows the options.
    pub operands: Vec<String>,
}

/// What getopt refuses; the messages are getopt's, without the program
/// name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GetoptError {
    /// An option the tool does not have.
    #[error("unknown option -- {0}")]
    Unknown(char),
    /// An option that takes an argument came last, without one.
    #[error("option requires an argument -- {0}")]
    MissingArgument(char),
}

/// `spec` is a getopt string: a letter, followed by ':' if it takes a
/// value.
pub fn getopt(args: &[String], spec: &str) -> Result<Parsed, GetoptError> {
    let takes = |c: char| -> Option<bool> {
        // ':' marks a value in `spec`; it is never an option itself.
        if c == ':' {
            return None;
        }
        let i = spec.find(c)?;
        Some(spec[i + c.len_utf8()..].starts_with(':'))
    };
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            match takes(c) {
                None => return Err(GetoptError::Unknown(c)),
                Some(false) => p.opts.push((c, None)),
                Some(true) => {
                    let rest: String = chars[j + 1..].iter().collect();
                    let val = if !rest.is_empty() {
                        rest
                    } else {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => return Err(GetoptError::MissingArgument(c)),
                        }
                    };
                    p.opts.push((c, Some(val)));
                    break;
                }
            }
            j += 1;
        }
        i += 1;
    }
    p.operands = args[i..].to_vec();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
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
}
