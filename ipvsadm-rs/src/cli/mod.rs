//! From argv to a typed command, with ipvsadm's rules.
//!
//! This first version knows the list command (`-L`, `-l`, `--list`, or no
//! arguments at all) with `-n`/`--numeric`, `--sort` and `--nosort`; the
//! rest of ipvsadm's command line is refused with a plain message.

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// List the whole table.
    List(ListOptions),
}

/// Options of the list command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `--nosort`: the kernel's order.
    pub nosort: bool,
}

/// Why a command line was refused: the message and ipvsadm's exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The text for stderr, without the final newline.
    pub message: String,
    /// The exit code.
    pub code: i32,
}

/// ipvsadm's answer when the first option is not a command.
pub fn try_help(prog: &str) -> Refusal {
    Refusal {
        message: format!("Try `{prog} -h' or '{prog} --help' for more information."),
        code: 255,
    }
}

/// Parses the arguments after the program name.
pub fn parse(prog: &str, args: &[String]) -> Result<Command, Refusal> {
    let mut opts = ListOptions::default();
    let Some(first) = args.first() else {
        return Ok(Command::List(opts));
    };
    // The first option must be a command; short options may be clustered
    // behind it (`-Ln`).
    let rest_of_cluster: Vec<char> = match first.as_str() {
        "--list" => vec![],
        s if s.starts_with('-') && !s.starts_with("--") && s.len() >= 2 => {
            let mut chars = s[1..].chars();
            match chars.next() {
                Some('L') | Some('l') => chars.collect(),
                _ => return Err(try_help(prog)),
            }
        }
        _ => return Err(try_help(prog)),
    };
    let mut seen_numeric = false;
    let mut seen_nosort = false;
    let mut set = |name: &str, opts: &mut ListOptions| -> Result<(), Refusal> {
        match name {
            "n" | "numeric" => {
                if seen_numeric {
                    return Err(Refusal {
                        message: "multiple 'numeric' options specified".into(),
                        code: 2,
                    });
                }
                seen_numeric = true;
                opts.numeric = true;
            }
            "nosort" => {
                if seen_nosort {
                    return Err(Refusal {
                        message: "multiple 'nosort' options specified".into(),
                        code: 2,
                    });
                }
                seen_nosort = true;
                opts.nosort = true;
            }
            "sort" => {}
            other => {
                return Err(Refusal {
                    message: format!(
                        "{prog}: option '{}{other}' is not supported by this version yet",
                        if other.len() == 1 { "-" } else { "--" }
                    ),
                    code: 2,
                })
            }
        }
        Ok(())
    };
    for c in rest_of_cluster {
        set(&c.to_string(), &mut opts)?;
    }
    for arg in &args[1..] {
        if let Some(long) = arg.strip_prefix("--") {
            set(long, &mut opts)?;
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            for c in shorts.chars() {
                set(&c.to_string(), &mut opts)?;
            }
        } else {
            return Err(Refusal {
                message: format!("unexpected argument {arg}"),
                code: 2,
            });
        }
    }
    Ok(Command::List(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, Refusal> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("ipvsadm", &args)
    }

    #[test]
    fn list_forms() {
        let numeric = Command::List(ListOptions {
            numeric: true,
            nosort: false,
        });
        assert_eq!(p(&["-Ln"]), Ok(numeric.clone()));
        assert_eq!(p(&["-L", "-n"]), Ok(numeric.clone()));
        assert_eq!(p(&["-l", "--numeric"]), Ok(numeric.clone()));
        assert_eq!(p(&["--list", "-n", "--sort"]), Ok(numeric));
        assert_eq!(p(&[]), Ok(Command::List(ListOptions::default())));
    }

    #[test]
    fn first_option_must_be_a_command() {
        let err = p(&["-n", "-L"]).unwrap_err();
        assert_eq!(err.code, 255);
        assert_eq!(
            err.message,
            "Try `ipvsadm -h' or 'ipvsadm --help' for more information."
        );
    }

    #[test]
    fn repeated_option_and_stray_word() {
        assert_eq!(
            p(&["-Ln", "-n"]).unwrap_err().message,
            "multiple 'numeric' options specified"
        );
        assert_eq!(
            p(&["-L", "foo"]).unwrap_err().message,
            "unexpected argument foo"
        );
    }
}
