//! Filter text into tokens, each with its character offset.

use super::FilterError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A path or keyword: letters, digits, `_`, `.`, `:`, and a leading `@`.
    Word(String),
    Str(String),
    Num(f64),
    /// A comparison operator, with `any` for the `?` forms.
    Op {
        symbol: &'static str,
        any: bool,
    },
    And,
    Or,
    Open,
    Close,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const OPERATORS: [&str; 8] = ["!=", ">=", "<=", "!~", "=", ">", "<", "~"];

/// Split `text` into tokens. `//` starts a comment running to the end of the line.
///
/// Fails on an unterminated string, a malformed number or a character that belongs
/// to no token.
pub fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == Some('/') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '(' => {
                tokens.push(Token {
                    tok: Tok::Open,
                    pos: start,
                });
                i += 1;
            }
            ')' => {
                tokens.push(Token {
                    tok: Tok::Close,
                    pos: start,
                });
                i += 1;
            }
            '&' if at(i + 1) == Some('&') => {
                tokens.push(Token {
                    tok: Tok::And,
                    pos: start,
                });
                i += 2;
            }
            '|' if at(i + 1) == Some('|') => {
                tokens.push(Token {
                    tok: Tok::Or,
                    pos: start,
                });
                i += 2;
            }
            '\'' | '"' => {
                let quote = c;
                let mut value = String::new();
                i += 1;
                loop {
                    match at(i) {
                        None => {
                            return Err(FilterError::new(start, "unterminated string"));
                        }
                        Some('\\') => {
                            match at(i + 1) {
                                Some(escaped) => value.push(escaped),
                                None => return Err(FilterError::new(start, "unterminated string")),
                            }
                            i += 2;
                        }
                        Some(ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            value.push(ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token {
                    tok: Tok::Str(value),
                    pos: start,
                });
            }
            '?' | '=' | '!' | '>' | '<' | '~' => {
                let any = c == '?';
                let op_start = if any { i + 1 } else { i };
                let symbol = OPERATORS.iter().find(|op| {
                    op.chars()
                        .enumerate()
                        .all(|(k, ch)| at(op_start + k) == Some(ch))
                });
                match symbol {
                    Some(symbol) => {
                        tokens.push(Token {
                            tok: Tok::Op { symbol, any },
                            pos: start,
                        });
                        i = op_start + symbol.chars().count();
                    }
                    None => return Err(FilterError::new(start, format!("unexpected `{c}`"))),
                }
            }
            c if c.is_ascii_digit()
                || (c == '-' && at(i + 1).is_some_and(|n| n.is_ascii_digit() || n == '.'))
                || (c == '.' && at(i + 1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                i += 1;
                while at(i).is_some_and(|n| {
                    n.is_ascii_digit()
                        || n == '.'
                        || n == 'e'
                        || n == 'E'
                        || ((n == '-' || n == '+') && matches!(at(i - 1), Some('e' | 'E')))
                }) {
                    i += 1;
                }
                let text: String = chars.get(start..i).unwrap_or_default().iter().collect();
                let value: f64 = text
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| FilterError::new(start, format!("malformed number `{text}`")))?;
                tokens.push(Token {
                    tok: Tok::Num(value),
                    pos: start,
                });
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '@' => {
                i += 1;
                while at(i)
                    .is_some_and(|n| n.is_ascii_alphanumeric() || matches!(n, '_' | '.' | ':'))
                {
                    i += 1;
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                tokens.push(Token {
                    tok: Tok::Word(word),
                    pos: start,
                });
            }
            other => {
                return Err(FilterError::new(
                    start,
                    format!("unexpected character `{other}`"),
                ));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens() {
        assert_eq!(
            toks("a.b ?!= 'x\\'y' && (n >= -1.5e3 || t ~ \"%q%\") // tail"),
            vec![
                Tok::Word("a.b".into()),
                Tok::Op {
                    symbol: "!=",
                    any: true
                },
                Tok::Str("x'y".into()),
                Tok::And,
                Tok::Open,
                Tok::Word("n".into()),
                Tok::Op {
                    symbol: ">=",
                    any: false
                },
                Tok::Num(-1500.0),
                Tok::Or,
                Tok::Word("t".into()),
                Tok::Op {
                    symbol: "~",
                    any: false
                },
                Tok::Str("%q%".into()),
                Tok::Close,
            ]
        );
        assert_eq!(lex("  x").unwrap()[0].pos, 2);
    }

    #[test]
    fn errors_point_at_the_problem() {
        assert_eq!(lex("a = 'open").unwrap_err().pos, 4);
        assert_eq!(lex("a ; b").unwrap_err().pos, 2);
        assert_eq!(lex("a = 1.2.3").unwrap_err().pos, 4);
        assert_eq!(lex("a ?? b").unwrap_err().pos, 2);
        assert!(lex("a & b").is_err());
    }
}
