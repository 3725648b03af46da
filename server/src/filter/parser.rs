//! Tokens into an [`Expr`]: `or := and ("||" and)*`, `and := atom ("&&" atom)*`,
//! `atom := "(" or ")" | operand op operand`.

use super::ast::{CmpOp, Comparison, Expr, Literal, Macro, Modifier, Operand, Path, Root};
use super::lexer::{Tok, Token};
use super::{FilterError, MAX_COMPARISONS, MAX_DEPTH, MAX_PATH_SEGMENTS};

pub struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
    comparisons: usize,
    end: usize,
}

impl Parser {
    pub fn new(tokens: Vec<Token>, end: usize) -> Parser {
        Parser {
            tokens,
            next: 0,
            depth: 0,
            comparisons: 0,
            end,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    /// The whole input as one expression.
    pub fn parse(mut self) -> Result<Expr, FilterError> {
        let expr = self.or()?;
        match self.peek() {
            None => Ok(expr),
            Some(token) => Err(FilterError::new(
                token.pos,
                match token.tok {
                    Tok::Close => "unmatched `)`".to_owned(),
                    _ => "expected `&&`, `||` or the end of the filter".to_owned(),
                },
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and()?];
        while matches!(self.peek(), Some(Token { tok: Tok::Or, .. })) {
            self.bump();
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Any(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.atom()?];
        while matches!(self.peek(), Some(Token { tok: Tok::And, .. })) {
            self.bump();
            parts.push(self.atom()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::All(parts)
        })
    }

    fn atom(&mut self) -> Result<Expr, FilterError> {
        if let Some(Token {
            tok: Tok::Open,
            pos,
        }) = self.peek().cloned()
        {
            self.bump();
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(FilterError::new(
                    pos,
                    format!("nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            let inner = self.or()?;
            match self.bump() {
                Some(Token {
                    tok: Tok::Close, ..
                }) => {}
                _ => return Err(FilterError::new(pos, "`(` is never closed")),
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        let (op, any, pos) = match self.bump() {
            Some(Token {
                tok: Tok::Op { symbol, any },
                pos,
            }) => (op_of(symbol), any, pos),
            Some(token) => {
                return Err(FilterError::new(
                    token.pos,
                    "expected a comparison operator (=, !=, >, >=, <, <=, ~, !~)",
                ));
            }
            None => return Err(FilterError::new(self.end, "expected a comparison operator")),
        };
        let right = self.operand()?;
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(FilterError::new(
                pos,
                format!("more than {MAX_COMPARISONS} comparisons"),
            ));
        }
        Ok(Expr::Compare(Comparison {
            left,
            op,
            any,
            right,
            pos,
        }))
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let here = self.here();
        let Some(token) = self.bump() else {
            return Err(FilterError::new(here, "expected a value or a field"));
        };
        let pos = token.pos;
        match token.tok {
            Tok::Str(s) => Ok(Operand::Literal {
                value: Literal::String(s),
                pos,
            }),
            Tok::Num(n) => Ok(Operand::Literal {
                value: Literal::Number(n),
                pos,
            }),
            Tok::Word(word) => word_operand(&word, pos),
            _ => Err(FilterError::new(pos, "expected a value or a field")),
        }
    }
}

fn op_of(symbol: &str) -> CmpOp {
    match symbol {
        "!=" => CmpOp::Neq,
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Gte,
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Lte,
        "~" => CmpOp::Like,
        "!~" => CmpOp::NotLike,
        _ => CmpOp::Eq,
    }
}

fn is_name(segment: &str) -> bool {
    !segment.is_empty()
        && segment.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn word_operand(word: &str, pos: usize) -> Result<Operand, FilterError> {
    match word {
        "true" => {
            return Ok(Operand::Literal {
                value: Literal::Bool(true),
                pos,
            });
        }
        "false" => {
            return Ok(Operand::Literal {
                value: Literal::Bool(false),
                pos,
            });
        }
        "null" => {
            return Ok(Operand::Literal {
                value: Literal::Null,
                pos,
            });
        }
        _ => {}
    }
    if let Some(name) = word.strip_prefix('@') {
        let simple = match name {
            "now" => Some(Macro::Now),
            "second" => Some(Macro::Second),
            "minute" => Some(Macro::Minute),
            "hour" => Some(Macro::Hour),
            "weekday" => Some(Macro::Weekday),
            "day" => Some(Macro::Day),
            "month" => Some(Macro::Month),
            "year" => Some(Macro::Year),
            "yesterday" => Some(Macro::Yesterday),
            "tomorrow" => Some(Macro::Tomorrow),
            "todayStart" => Some(Macro::TodayStart),
            "todayEnd" => Some(Macro::TodayEnd),
            "monthStart" => Some(Macro::MonthStart),
            "monthEnd" => Some(Macro::MonthEnd),
            "yearStart" => Some(Macro::YearStart),
            "yearEnd" => Some(Macro::YearEnd),
            "request.method" => Some(Macro::Method),
            "request.context" => Some(Macro::Context),
            _ => None,
        };
        if let Some(name) = simple {
            return Ok(Operand::Macro { name, pos });
        }
    }
    path(word, pos).map(Operand::Path)
}

fn path(word: &str, pos: usize) -> Result<Path, FilterError> {
    // A trailing `:modifier` applies to the whole path.
    let (body, modifier) = match word.rsplit_once(':') {
        Some((body, m)) if !m.contains('.') => {
            let modifier = match m {
                "isset" => Modifier::Isset,
                "changed" => Modifier::Changed,
                "length" => Modifier::Length,
                "each" => Modifier::Each,
                "lower" => Modifier::Lower,
                _ if body.starts_with("@collection.")
                    && !body.contains(':')
                    && body.matches('.').count() == 1 =>
                {
                    // `@collection.name:alias` without a field is incomplete, not a modifier.
                    return Err(FilterError::new(pos, format!("`{word}` names no field")));
                }
                other => {
                    return Err(FilterError::new(
                        pos,
                        format!("unknown modifier `:{other}`"),
                    ));
                }
            };
            (body, Some(modifier))
        }
        _ => (word, None),
    };
    let mut parts: Vec<&str> = body.split('.').collect();
    let root = match parts.first().copied() {
        Some("@request") => {
            let scope = parts.get(1).copied().unwrap_or_default();
            parts.drain(..2.min(parts.len()));
            match scope {
                "auth" => Root::Auth,
                "body" | "data" => Root::Body,
                "query" => Root::Query,
                "headers" => Root::Headers,
                other => {
                    return Err(FilterError::new(pos, format!("unknown `@request.{other}`")));
                }
            }
        }
        Some("@collection") => {
            let target = parts.get(1).copied().unwrap_or_default();
            parts.drain(..2.min(parts.len()));
            let (name, alias) = match target.split_once(':') {
                Some((name, alias)) => (name, Some(alias)),
                None => (target, None),
            };
            if !is_name(name) || alias.is_some_and(|a| !is_name(a)) {
                return Err(FilterError::new(
                    pos,
                    "`@collection.` needs a collection name (and optionally `:alias`)",
                ));
            }
            Root::Collection {
                name: name.to_owned(),
                alias: alias.map(str::to_owned),
            }
        }
        Some(first) if first.starts_with('@') => {
            return Err(FilterError::new(pos, format!("unknown macro `{first}`")));
        }
        _ => Root::Record,
    };
    if parts.is_empty() {
        return Err(FilterError::new(pos, format!("`{word}` names no field")));
    }
    if parts.len() > MAX_PATH_SEGMENTS {
        return Err(FilterError::new(
            pos,
            format!("`{word}` goes deeper than {MAX_PATH_SEGMENTS} fields"),
        ));
    }
    if let Some(bad) = parts.iter().find(|p| !is_name(p)) {
        return Err(FilterError::new(
            pos,
            format!("`{bad}` in `{word}` is not a field name"),
        ));
    }
    Ok(Path {
        root,
        segments: parts.into_iter().map(str::to_owned).collect(),
        modifier,
        pos,
    })
}
