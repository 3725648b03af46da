//! The syntax tree of a filter. Names are still unresolved here: checking them against
//! the schema (and typing them) is the compiler's job.

/// A whole filter or rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Every part must hold (`a && b && c`).
    All(Vec<Expr>),
    /// At least one part must hold (`a || b`).
    Any(Vec<Expr>),
    /// The part must not hold. The filter language has no syntax for it; GraphQL's
    /// `_not` lowers to it.
    Not(Box<Expr>),
    Compare(Comparison),
}

/// `left op right`, e.g. `title ~ 'rust'` or `tags ?= 'news'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub left: Operand,
    pub op: CmpOp,
    /// The `?` forms: holds if any element of a multi-valued left side matches.
    pub any: bool,
    pub right: Operand,
    /// Character offset of the operator, for error messages.
    pub pos: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    /// `~`: contains (a `%` in the value is a wildcard), case-insensitive.
    Like,
    /// `!~`: does not contain.
    NotLike,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
            CmpOp::Like => "~",
            CmpOp::NotLike => "!~",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Literal { value: Literal, pos: usize },
    Path(Path),
    Macro { name: Macro, pos: usize },
}

impl Operand {
    pub fn pos(&self) -> usize {
        match self {
            Operand::Literal { pos, .. } | Operand::Macro { pos, .. } => *pos,
            Operand::Path(path) => path.pos,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    String(String),
    Number(f64),
    Bool(bool),
    Null,
}

/// A field path: `title`, `author.name`, `comments_via_post.text`,
/// `@request.auth.id`, `@request.body.tags:length`, `@collection.users:u.email`.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub root: Root,
    /// Field names, following relations from the root.
    pub segments: Vec<String>,
    pub modifier: Option<Modifier>,
    pub pos: usize,
}

/// Where a path starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    /// The record being filtered.
    Record,
    /// `@request.auth.*`: the caller's own record (empty for anonymous).
    Auth,
    /// `@request.body.*`: the submitted data.
    Body,
    /// `@request.query.*`: the URL's query parameters.
    Query,
    /// `@request.headers.*`: request headers (lower case, `-` written as `_`).
    Headers,
    /// `@collection.NAME[:ALIAS].*`: any record of another collection.
    Collection { name: String, alias: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    /// `:isset` — the body contains the key (only on `@request.body`).
    Isset,
    /// `:changed` — the body sets a value different from the record's.
    Changed,
    /// `:length` — the number of elements of a multi-valued field.
    Length,
    /// `:each` — every element of a multi-valued field must match.
    Each,
    /// `:lower` — compare in lower case.
    Lower,
}

/// Values computed at request time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Macro {
    Now,
    Second,
    Minute,
    Hour,
    Weekday,
    Day,
    Month,
    Year,
    Yesterday,
    Tomorrow,
    TodayStart,
    TodayEnd,
    MonthStart,
    MonthEnd,
    YearStart,
    YearEnd,
    /// `@request.method`
    Method,
    /// `@request.context` (`default`, `oauth2`, `realtime`, …)
    Context,
}

impl Expr {
    /// Every comparison, depth first.
    pub fn comparisons(&self) -> Vec<&Comparison> {
        let mut out = Vec::new();
        fn walk<'a>(expr: &'a Expr, out: &mut Vec<&'a Comparison>) {
            match expr {
                Expr::All(parts) | Expr::Any(parts) => parts.iter().for_each(|p| walk(p, out)),
                Expr::Not(inner) => walk(inner, out),
                Expr::Compare(c) => out.push(c),
            }
        }
        walk(self, &mut out);
        out
    }
}
