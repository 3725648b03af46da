//! Which names a collection or field may have.

/// Names that would collide with what Basalt adds to records or puts in URLs and
/// filters, and SQL keywords that are reserved on SQLite or PostgreSQL. Names are
/// always quoted in SQL, so this is about clarity, not safety.
const RESERVED: &[&str] = &[
    // record keys Basalt adds or the filter language owns
    "collectionid",
    "collectionname",
    "expand",
    "passwordconfirm",
    "oldpassword",
    "null",
    "true",
    "false",
    "_",
    "__proto__",
    "constructor",
    "prototype",
    // SQL keywords reserved on SQLite or PostgreSQL
    "abort",
    "action",
    "add",
    "after",
    "all",
    "alter",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "attach",
    "autoincrement",
    "before",
    "begin",
    "between",
    "both",
    "by",
    "cascade",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "commit",
    "conflict",
    "constraint",
    "create",
    "cross",
    "current",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "database",
    "default",
    "deferrable",
    "deferred",
    "delete",
    "desc",
    "detach",
    "distinct",
    "do",
    "drop",
    "each",
    "else",
    "end",
    "escape",
    "except",
    "exclusive",
    "exists",
    "explain",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "glob",
    "grant",
    "group",
    "having",
    "if",
    "ignore",
    "immediate",
    "in",
    "index",
    "indexed",
    "initially",
    "inner",
    "insert",
    "instead",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "key",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "match",
    "natural",
    "no",
    "not",
    "notnull",
    "of",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "placing",
    "plan",
    "pragma",
    "primary",
    "query",
    "raise",
    "recursive",
    "references",
    "regexp",
    "reindex",
    "release",
    "rename",
    "replace",
    "restrict",
    "returning",
    "right",
    "rollback",
    "row",
    "savepoint",
    "select",
    "session_user",
    "set",
    "some",
    "table",
    "temp",
    "temporary",
    "then",
    "to",
    "trailing",
    "transaction",
    "trigger",
    "union",
    "unique",
    "update",
    "using",
    "vacuum",
    "values",
    "view",
    "virtual",
    "when",
    "where",
    "window",
    "with",
    "without",
];

/// Columns every table has on one engine (PostgreSQL's system columns, SQLite's rowid
/// aliases): a field named so would fail, or mean something else, on that engine, so
/// such names are refused on both and a schema moves between them.
const SYSTEM_COLUMNS: &[&str] = &[
    "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid", "rowid", "_rowid_",
];

/// Why a field name is refused because an engine keeps a column of that name.
pub fn system_column_problem(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    SYSTEM_COLUMNS.contains(&lower.as_str()).then(|| {
        format!("`{name}` is a system column of PostgreSQL or SQLite; choose another name.")
    })
}

/// Why a name is refused, as a message for the client; `None` when it is fine.
///
/// A name is 1–63 characters of `a-z0-9_`, starts with a letter (a leading `_` is
/// reserved for Basalt's own collections), and is not a reserved word.
pub fn name_problem(name: &str) -> Option<String> {
    let valid_shape = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_shape {
        return Some(
            "Must be 1–63 characters of a-z, 0-9 and _, starting with a letter.".to_owned(),
        );
    }
    if RESERVED.contains(&name) {
        return Some(format!("`{name}` is a reserved word."));
    }
    None
}

/// Field names may be mixed-case where PocketBase's system fields are
/// (`emailVisibility`, `tokenKey`), so system fields skip [`name_problem`]'s shape
/// rule; user fields do not.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["posts", "a", "blog_posts2", &"a".repeat(63)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "Posts",
            "_posts",
            "2posts",
            "posts-x",
            "po sts",
            "select",
            "expand",
            "é",
            &"a".repeat(64),
            "posts;drop",
            "collectionid",
        ] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        assert!(is_reserved("collectionId"));
        // PocketBase allows it, and names are always quoted.
        assert_eq!(name_problem("user"), None);
        for system in [
            "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "rowid", "OID",
        ] {
            assert!(system_column_problem(system).is_some(), "{system}");
        }
        assert_eq!(system_column_problem("title"), None);
        assert!(!is_reserved("title"));
    }
}
