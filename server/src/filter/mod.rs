//! The filter language of lists, access rules, subscriptions and the functions' host
//! API (DESIGN.md §4): lexer → parser → syntax tree → names resolved against the
//! schema ([`resolve`]). Filters are bounded in size, comparisons and nesting, and
//! every error names the character where it is. The compiler to sea-query conditions
//! (values only as bound parameters) builds on these. Imports `schema`.

pub mod ast;
pub mod compile;
mod lexer;
mod parser;
pub mod resolve;
pub mod rules;

use std::fmt;

pub use ast::Expr;

/// Longest filter accepted, in characters.
pub const MAX_LENGTH: usize = 3500;
/// Most comparisons in one filter.
pub const MAX_COMPARISONS: usize = 200;
/// Deepest nesting of parentheses.
pub const MAX_DEPTH: usize = 32;
/// Most fields in one path (a relation hop each, after the first).
pub const MAX_PATH_SEGMENTS: usize = 7;

/// A filter that cannot be used, with the character offset (0-based) of the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub pos: usize,
    pub message: String,
}

impl FilterError {
    pub fn new(pos: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.pos + 1)
    }
}

impl std::error::Error for FilterError {}

/// Parse a filter. Empty (or only whitespace and comments) is `None`: no condition.
///
/// Fails on text over [`MAX_LENGTH`] characters, a syntax error, more than
/// [`MAX_COMPARISONS`] comparisons, or nesting deeper than [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<Option<Expr>, FilterError> {
    let length = text.chars().count();
    if length > MAX_LENGTH {
        return Err(FilterError::new(
            MAX_LENGTH,
            format!("the filter is longer than {MAX_LENGTH} characters"),
        ));
    }
    // PostgreSQL cannot compare text holding NUL (and nothing stored holds one):
    // refused here so both engines answer alike.
    if let Some(pos) = text.chars().position(|c| c == '\0') {
        return Err(FilterError::new(pos, "the NUL character is not allowed"));
    }
    let tokens = lexer::lex(text)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    parser::Parser::new(tokens, length).parse().map(Some)
}

#[cfg(test)]
/// A small schema: users (auth), posts → users, comments → posts, tags (multi).
pub(crate) fn test_snapshot() -> crate::schema::Snapshot {
    let mut errors = crate::validation::FieldErrors::default();
    let parse_def = |body: serde_json::Value, errors: &mut crate::validation::FieldErrors| {
        let input = crate::schema::model::parse_collection(&body, errors);
        let fields = input
            .fields
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|f| crate::schema::Field {
                id: f.id.clone().unwrap_or_else(|| f.field.name.clone()),
                ..f.field
            })
            .collect();
        crate::schema::Collection {
            id: input.id.clone().unwrap(),
            name: input.name.clone().unwrap(),
            kind: input.kind.unwrap_or(crate::schema::CollectionKind::Base),
            system: false,
            fields,
            indexes: vec![],
            rules: Default::default(),
            auth: (input.kind == Some(crate::schema::CollectionKind::Auth)).then(Default::default),
            created: String::new(),
            updated: String::new(),
        }
    };
    let users = parse_def(
        serde_json::json!({"id": "u", "name": "users", "type": "auth", "fields": [
            {"name": "id", "type": "text", "primaryKey": true},
            {"name": "email", "type": "email"}, {"name": "password", "type": "password"},
            {"name": "tokenKey", "type": "text", "hidden": true}, {"name": "role", "type": "text"}
        ]}),
        &mut errors,
    );
    let posts = parse_def(
        serde_json::json!({"id": "p", "name": "posts", "fields": [
            {"name": "id", "type": "text", "primaryKey": true}, {"name": "title", "type": "text"},
            {"name": "views", "type": "number"}, {"name": "secret", "type": "text", "hidden": true},
            {"name": "author", "type": "relation", "collectionId": "u"},
            {"name": "tags", "type": "select", "values": ["a", "b"], "maxSelect": 2}
        ]}),
        &mut errors,
    );
    let comments = parse_def(
        serde_json::json!({"id": "c", "name": "comments", "fields": [
            {"name": "id", "type": "text", "primaryKey": true}, {"name": "text", "type": "text"},
            {"name": "post", "type": "relation", "collectionId": "p"}
        ]}),
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    crate::schema::Snapshot::new(1, vec![users, posts, comments])
}

#[cfg(test)]
mod tests {
    use super::ast::*;
    use super::*;

    fn cmp(text: &str) -> Comparison {
        match parse(text).unwrap().unwrap() {
            Expr::Compare(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn precedence_and_grouping() {
        let expr = parse("a = 1 || b = 2 && c = 3").unwrap().unwrap();
        let Expr::Any(parts) = expr else { panic!() };
        assert_eq!(parts.len(), 2);
        assert!(matches!(parts[1], Expr::All(ref inner) if inner.len() == 2));
        let grouped = parse("(a = 1 || b = 2) && c = 3").unwrap().unwrap();
        assert!(matches!(grouped, Expr::All(ref p) if matches!(p[0], Expr::Any(_))));
        assert_eq!(parse("  // nothing\n ").unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn operands_paths_modifiers_and_macros() {
        let c = cmp("author.profile.name ?~ 'ann'");
        assert!(c.any);
        assert_eq!(c.op, CmpOp::Like);
        let Operand::Path(p) = &c.left else { panic!() };
        assert_eq!(p.root, Root::Record);
        assert_eq!(p.segments, ["author", "profile", "name"]);

        let c = cmp("@request.auth.id != ''");
        let Operand::Path(p) = &c.left else { panic!() };
        assert_eq!(p.root, Root::Auth);
        assert_eq!(p.segments, ["id"]);

        let c = cmp("@request.body.tags:length <= 3");
        let Operand::Path(p) = &c.left else { panic!() };
        assert_eq!(
            (p.root.clone(), p.modifier),
            (Root::Body, Some(Modifier::Length))
        );

        let c = cmp("@collection.users:u.email = @request.auth.email");
        let Operand::Path(p) = &c.left else { panic!() };
        assert_eq!(
            p.root,
            Root::Collection {
                name: "users".into(),
                alias: Some("u".into())
            }
        );
        assert_eq!(p.segments, ["email"]);

        let c = cmp("created > @now");
        assert!(matches!(
            c.right,
            Operand::Macro {
                name: Macro::Now,
                ..
            }
        ));
        let c = cmp("@request.method = 'GET'");
        assert!(matches!(
            c.left,
            Operand::Macro {
                name: Macro::Method,
                ..
            }
        ));
        let c = cmp("comments_via_post.text ~ 'hi'");
        let Operand::Path(p) = &c.left else { panic!() };
        assert_eq!(p.segments, ["comments_via_post", "text"]);
        let c = cmp("name:lower = 'x'");
        let Operand::Path(p) = &c.left else { panic!() };
        assert_eq!(p.modifier, Some(Modifier::Lower));
        assert!(matches!(
            cmp("done = true").right,
            Operand::Literal {
                value: Literal::Bool(true),
                ..
            }
        ));
        assert!(matches!(
            cmp("x = null").right,
            Operand::Literal {
                value: Literal::Null,
                ..
            }
        ));
    }

    #[test]
    fn errors_say_where() {
        for (text, pos, words) in [
            ("title =", 7, "expected a value"),
            ("title 'x'", 6, "operator"),
            ("(a = 1", 0, "never closed"),
            ("a = 1)", 5, "unmatched"),
            ("a = 1 b = 2", 6, "expected `&&`"),
            ("a:upper = 1", 0, "unknown modifier"),
            ("@request.nope.x = 1", 0, "unknown `@request.nope`"),
            ("@weird = 1", 0, "unknown macro"),
            ("a..b = 1", 0, "not a field name"),
            ("@collection. = 1", 0, "collection name"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.pos, pos, "{text}: {err}");
            assert!(err.message.contains(words), "{text}: {err}");
            assert!(
                err.to_string()
                    .contains(&format!("at character {}", pos + 1))
            );
        }
    }

    #[test]
    fn bounds() {
        assert!(parse(&format!("a = '{}'", "x".repeat(MAX_LENGTH))).is_err());
        let many = vec!["a = 1"; MAX_COMPARISONS + 1].join(" && ");
        assert!(parse(&many).unwrap_err().message.contains("comparisons"));
        let ok = vec!["a = 1"; MAX_COMPARISONS].join(" || ");
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "{}a = 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let fine = format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&fine).is_ok());
        assert!(
            parse("a.b.c.d.e.f.g.h = 1")
                .unwrap_err()
                .message
                .contains("deeper")
        );
    }

    /// A small deterministic generator (no extra dependency): random soups of the
    /// language's pieces and of arbitrary characters must never panic, and whatever
    /// parses stays within the bounds.
    #[test]
    fn arbitrary_input_never_panics() {
        const PIECES: &[&str] = &[
            "a",
            "b.c",
            "@request.auth.id",
            "@collection.x:y.z",
            "@now",
            "'s'",
            "\"d\"",
            "1",
            "-2.5",
            "true",
            "null",
            "=",
            "!=",
            "?=",
            "~",
            "?!~",
            ">=",
            "&&",
            "||",
            "(",
            ")",
            ":length",
            ":each",
            "\\",
            "'",
            "//",
            "\n",
            " ",
            "é",
            "\u{0}",
            "?",
            "@",
            ".",
            ":",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut text = String::new();
            for _ in 0..len {
                if next() % 5 == 0 {
                    text.push(char::from_u32((next() % 0x3000) as u32).unwrap_or('x'));
                } else {
                    text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
                if next() % 2 == 0 {
                    text.push(' ');
                }
            }
            if let Ok(Some(expr)) = parse(&text) {
                assert!(expr.comparisons().len() <= MAX_COMPARISONS);
            }
        }
    }
}
