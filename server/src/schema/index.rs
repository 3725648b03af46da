//! Index definitions as PocketBase gives them:
//! `CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON collection (col [ASC|DESC], …)`.
//! They are parsed into an [`IndexDef`] and rebuilt by the DDL planner; the string
//! itself never reaches the database.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexColumn {
    pub name: String,
    pub descending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub unique: bool,
    pub table: String,
    pub columns: Vec<IndexColumn>,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '`' | '"' | '[' => {
                chars.next();
                let close = if c == '[' { ']' } else { c };
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some(ch) if ch == close => break,
                        Some(ch) => name.push(ch),
                        None => return Err(format!("unclosed quote {c}")),
                    }
                }
                tokens.push(Token::Quoted(name));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' {
                        word.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: std::vec::IntoIter<Token>,
    peeked: Option<Token>,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        self.peeked.take().or_else(|| self.tokens.next())
    }

    fn peek(&mut self) -> Option<&Token> {
        if self.peeked.is_none() {
            self.peeked = self.tokens.next();
        }
        self.peeked.as_ref()
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), String> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(format!("expected {word}"))
        }
    }

    fn identifier(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w) | Token::Quoted(w)) => Ok(w),
            _ => Err(format!("expected {what}")),
        }
    }
}

/// Parse one index string.
///
/// Fails with a message for the client when the text is not of the accepted form
/// (partial indexes, expressions and collations are not accepted).
pub fn parse_index(text: &str) -> Result<IndexDef, String> {
    let mut p = Parser {
        tokens: tokenize(text)?.into_iter(),
        peeked: None,
    };
    p.expect_keyword("CREATE")?;
    let unique = p.keyword("UNIQUE");
    p.expect_keyword("INDEX")?;
    if p.keyword("IF") {
        p.expect_keyword("NOT")?;
        p.expect_keyword("EXISTS")?;
    }
    let name = p.identifier("an index name")?;
    p.expect_keyword("ON")?;
    let table = p.identifier("the collection name")?;
    if p.next() != Some(Token::Open) {
        return Err("expected ( before the columns".to_owned());
    }
    let mut columns = Vec::new();
    loop {
        let column = p.identifier("a column name")?;
        let descending = if p.keyword("DESC") {
            true
        } else {
            p.keyword("ASC");
            false
        };
        columns.push(IndexColumn {
            name: column,
            descending,
        });
        match p.next() {
            Some(Token::Comma) => continue,
            Some(Token::Close) => break,
            _ => return Err("expected , or ) after a column".to_owned()),
        }
    }
    if let Some(extra) = p.next() {
        return Err(match extra {
            Token::Word(w) if w.eq_ignore_ascii_case("WHERE") => {
                "partial indexes (WHERE …) are not supported".to_owned()
            }
            _ => "unexpected text after the column list".to_owned(),
        });
    }
    let valid_name = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err("an index name is 1–63 characters of a-z, A-Z, 0-9 and _".to_owned());
    }
    Ok(IndexDef {
        name,
        unique,
        table,
        columns,
    })
}

impl IndexDef {
    /// The canonical string this index is stored and shown as.
    pub fn to_definition(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                if c.descending {
                    format!("`{}` DESC", c.name)
                } else {
                    format!("`{}`", c.name)
                }
            })
            .collect();
        format!(
            "CREATE {}INDEX `{}` ON `{}` ({})",
            if self.unique { "UNIQUE " } else { "" },
            self.name,
            self.table,
            columns.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pocketbase_forms_parse() {
        let idx = parse_index("CREATE UNIQUE INDEX `idx_email` ON `users` (`email`)").unwrap();
        assert!(idx.unique);
        assert_eq!(idx.name, "idx_email");
        assert_eq!(idx.table, "users");
        assert_eq!(idx.columns.len(), 1);

        let idx = parse_index(
            "create index if not exists idx_posts_a on posts (title desc, \"views\" ASC, [x])",
        )
        .unwrap();
        assert!(!idx.unique);
        assert_eq!(
            idx.columns,
            vec![
                IndexColumn {
                    name: "title".into(),
                    descending: true
                },
                IndexColumn {
                    name: "views".into(),
                    descending: false
                },
                IndexColumn {
                    name: "x".into(),
                    descending: false
                },
            ]
        );
        assert_eq!(
            idx.to_definition(),
            "CREATE INDEX `idx_posts_a` ON `posts` (`title` DESC, `views`, `x`)"
        );
        assert_eq!(parse_index(&idx.to_definition()).unwrap(), idx);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "DROP TABLE posts",
            "CREATE INDEX idx ON posts",
            "CREATE INDEX idx ON posts ()",
            "CREATE INDEX idx ON posts (title) WHERE views > 1",
            "CREATE INDEX idx ON posts (lower(title))",
            "CREATE INDEX idx ON posts (title); DROP TABLE posts",
            "CREATE INDEX `idx ON posts (title)",
            "CREATE INDEX `bad name` ON posts (title)",
        ] {
            assert!(parse_index(bad).is_err(), "{bad}");
        }
    }
}
