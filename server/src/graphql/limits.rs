//! Hard limits on an operation, checked on its text before anything runs: length,
//! depth, aliases, root fields and cost. Cost counts every field once, and a list
//! field's selection as many times as the list may hold (`perPage`, `limit`), so
//! `posts(perPage: 1000) { items { comments_via_post(limit: 1000) { id } } }` costs
//! a million and is refused before a single statement.

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Value as Gql, Variables};

use crate::records::read::{DEFAULT_PER_PAGE, MAX_PER_PAGE};
use crate::records::related::MAX_BACK_LIMIT;

/// Records a back-relation yields per parent when `limit` is not given.
pub const DEFAULT_BACK_LIMIT: u64 = 100;
/// Elements a multi relation is assumed to hold, for cost.
const MULTI_GUESS: u64 = 10;

/// The limits, from the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_length: usize,
    pub max_depth: usize,
    pub max_cost: u64,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_length: 32 * 1024,
            max_depth: 10,
            max_cost: 50_000,
            max_aliases: 30,
            max_root_fields: 20,
            introspection: true,
        }
    }
}

/// Which fields are lists, by name, in one schema.
#[derive(Clone, Debug, Default)]
pub struct ListFields {
    /// Paged root fields (`posts`): `perPage` items.
    pub paged: HashSet<String>,
    /// Multi relation fields: a few.
    pub multi: HashSet<String>,
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    limits: &'a Limits,
    lists: &'a ListFields,
    aliases: usize,
    /// Fragment spreads being expanded: a cycle (refused later by validation) must
    /// not loop here.
    spreads: usize,
}

/// Fragment spreads nested deeper than this are refused.
const MAX_SPREADS: usize = 64;

/// Whether a text of `len` bytes may be parsed at all.
///
/// Fails with a message naming the limit.
pub fn check_length(len: usize, limits: &Limits) -> Result<(), String> {
    if len > limits.max_length {
        return Err(format!(
            "The query is {len} bytes long; the limit is {}.",
            limits.max_length
        ));
    }
    Ok(())
}

/// [`check`] on an operation already parsed.
///
/// Fails with a message naming the limit exceeded.
pub fn check_document(
    document: &ExecutableDocument,
    variables: &Variables,
    limits: &Limits,
    lists: &ListFields,
) -> Result<(), String> {
    let mut walk = Walk {
        document,
        variables,
        limits,
        lists,
        aliases: 0,
        spreads: 0,
    };
    for (_, operation) in document.operations.iter() {
        let set = &operation.node.selection_set.node;
        let roots = walk.count_roots(set, 0)?;
        if roots > limits.max_root_fields {
            return Err(format!(
                "The operation asks for {roots} root fields; the limit is {}.",
                limits.max_root_fields
            ));
        }
        let cost = walk.cost(set, 1)?;
        if cost > limits.max_cost {
            return Err(format!(
                "The operation could cost {cost} (a field counts 1, a list's fields once per \
                 item it may hold); the limit is {}. Ask for fewer items per page.",
                limits.max_cost
            ));
        }
    }
    Ok(())
}

impl<'a> Walk<'a> {
    fn fragment(&self, name: &Name) -> Option<&'a SelectionSet> {
        self.document
            .fragments
            .get(name)
            .map(|f| &f.node.selection_set.node)
    }

    fn count_roots(&self, set: &SelectionSet, nesting: usize) -> Result<usize, String> {
        if nesting > self.limits.max_depth {
            return Err("Fragments nest too deeply.".into());
        }
        let mut n = 0usize;
        for item in &set.items {
            n = n.saturating_add(match &item.node {
                Selection::Field(_) => 1,
                Selection::FragmentSpread(spread) => {
                    match self.fragment(&spread.node.fragment_name.node) {
                        Some(inner) => self.count_roots(inner, nesting + 1)?,
                        None => 0,
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.count_roots(&inline.node.selection_set.node, nesting + 1)?
                }
            });
        }
        Ok(n)
    }

    fn argument(&self, field: &async_graphql::parser::types::Field, name: &str) -> Option<u64> {
        let value = field.get_argument(name)?.node.clone();
        let value = value
            .into_const_with(|var| self.variables.get(&var).cloned().ok_or(()))
            .ok()?;
        match value {
            Gql::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
            _ => None,
        }
    }

    fn cost(&mut self, set: &SelectionSet, depth: usize) -> Result<u64, String> {
        if depth > self.limits.max_depth {
            return Err(format!(
                "The operation nests deeper than {} levels.",
                self.limits.max_depth
            ));
        }
        let mut total = 0u64;
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if field.alias.is_some() {
                        self.aliases += 1;
                        if self.aliases > self.limits.max_aliases {
                            return Err(format!(
                                "The operation uses more than {} aliases.",
                                self.limits.max_aliases
                            ));
                        }
                    }
                    let name = field.name.node.as_str();
                    let children = &field.selection_set.node;
                    if name.starts_with("__") {
                        // Introspection: bounded by the schema, and clients' standard
                        // query nests deeply.
                        1
                    } else if children.items.is_empty() {
                        1
                    } else {
                        let times = if self.lists.paged.contains(name) {
                            self.argument(field, "perPage")
                                .unwrap_or(DEFAULT_PER_PAGE)
                                .clamp(1, MAX_PER_PAGE)
                        } else if name.contains("_via_") {
                            self.argument(field, "limit")
                                .unwrap_or(DEFAULT_BACK_LIMIT)
                                .clamp(1, MAX_BACK_LIMIT)
                        } else if self.lists.multi.contains(name) {
                            MULTI_GUESS
                        } else {
                            1
                        };
                        let inner = self.cost(children, depth + 1)?;
                        inner.saturating_mul(times).saturating_add(1)
                    }
                }
                Selection::FragmentSpread(spread) => {
                    match self.fragment(&spread.node.fragment_name.node) {
                        // A fragment's fields sit at the spread's depth.
                        Some(inner) => {
                            self.spreads += 1;
                            if self.spreads > MAX_SPREADS {
                                return Err("Fragments nest too deeply.".into());
                            }
                            let cost = self.cost(inner, depth)?;
                            self.spreads -= 1;
                            cost
                        }
                        None => 0,
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.cost(&inline.node.selection_set.node, depth)?
                }
            };
            total = total.saturating_add(cost);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the operation stays within `limits`; a text that does not parse passes
    /// (the executor reports its syntax error).
    ///
    /// Fails with a message naming the limit exceeded.
    fn check(
        query: &str,
        variables: &Variables,
        limits: &Limits,
        lists: &ListFields,
    ) -> Result<(), String> {
        check_length(query.len(), limits)?;
        match async_graphql::parser::parse_query(query) {
            Ok(document) => check_document(&document, variables, limits, lists),
            Err(_) => Ok(()),
        }
    }

    fn lists() -> ListFields {
        ListFields {
            paged: ["posts".to_owned()].into(),
            multi: HashSet::new(),
        }
    }

    #[test]
    fn hostile_shapes_are_refused_before_running() {
        let limits = Limits::default();
        let vars = Variables::default();
        assert!(check("{ posts { items { id } } }", &vars, &limits, &lists()).is_ok());
        let deep = format!(
            "{{ posts {{ items {} }} }}",
            "{ author ".repeat(12) + &"}".repeat(12)
        );
        assert!(
            check(&deep, &vars, &limits, &lists())
                .unwrap_err()
                .contains("deeper")
        );
        let aliases: String = (0..40)
            .map(|i| format!("a{i}: post(id: \"x\") {{ id }} "))
            .collect();
        assert!(check(&format!("{{ {aliases} }}"), &vars, &limits, &lists()).is_err());
        let huge = "{ posts(perPage: 1000) { items { comments_via_post(limit: 1000) { id } } } }";
        assert!(
            check(huge, &vars, &limits, &lists())
                .unwrap_err()
                .contains("cost")
        );
        let long = format!("{{ posts {{ items {{ id }} }} }} #{}", "x".repeat(40_000));
        assert!(
            check(&long, &vars, &limits, &lists())
                .unwrap_err()
                .contains("bytes")
        );
        let cyclic = "query { ...A } fragment A on Query { ...A }";
        assert!(check(cyclic, &vars, &limits, &lists()).is_err());
        // Variables count like literals.
        let mut vars = Variables::default();
        vars.insert(Name::new("n"), Gql::Number(1000.into()));
        let with_var = "query($n: Int) { posts(perPage: $n) { items { comments_via_post(limit: 1000) { id } } } }";
        assert!(check(with_var, &vars, &limits, &lists()).is_err());
    }
}
