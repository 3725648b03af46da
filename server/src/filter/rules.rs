//! Access rules compiled once per schema snapshot: each collection's list, view,
//! create, update and delete rules (and an auth collection's auth and manage rules)
//! parsed into [`Rule`] the first time a snapshot is asked, and kept with it. No
//! request parses a rule; a schema change makes a new snapshot, and so new rules.
//! What a rule means for a caller (superusers, `@request` binding) is decided in
//! `records`, on top of this.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use super::Expr;
use crate::schema::{Collection, Snapshot};

/// A rule, compiled.
#[derive(Clone, Debug)]
pub enum Rule {
    /// `null`: superusers only.
    Locked,
    /// `""`: anyone.
    Public,
    /// An expression, to be bound to each request.
    Expr(Arc<Expr>),
    /// A stored rule that no longer parses (never saved so; kept as an error).
    Broken(String),
}

/// Which of a collection's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleOp {
    List,
    View,
    Create,
    Update,
    Delete,
    /// An auth collection's `authRule`: who may sign in.
    Auth,
    /// An auth collection's `manageRule`.
    Manage,
}

impl RuleOp {
    fn index(self) -> usize {
        self as usize
    }
}

/// One collection's rules.
#[derive(Debug)]
struct CollectionRules([Rule; 7]);

/// Every collection's rules in one snapshot, by collection id.
#[derive(Debug, Default)]
pub struct Compiled {
    by_id: HashMap<String, CollectionRules>,
}

fn compile(text: Option<&String>) -> Rule {
    match text {
        None => Rule::Locked,
        Some(text) => match super::parse(text) {
            Ok(None) => Rule::Public,
            Ok(Some(expr)) => Rule::Expr(Arc::new(expr)),
            Err(err) => Rule::Broken(err.to_string()),
        },
    }
}

impl Compiled {
    fn build(snapshot: &Snapshot) -> Compiled {
        let by_id = snapshot
            .all()
            .iter()
            .map(|c| {
                let auth = c.auth.as_ref();
                let rules = [
                    compile(c.rules.list.as_ref()),
                    compile(c.rules.view.as_ref()),
                    compile(c.rules.create.as_ref()),
                    compile(c.rules.update.as_ref()),
                    compile(c.rules.delete.as_ref()),
                    compile(auth.and_then(|a| a.auth_rule.as_ref())),
                    compile(auth.and_then(|a| a.manage_rule.as_ref())),
                ];
                (c.id.clone(), CollectionRules(rules))
            })
            .collect();
        Compiled { by_id }
    }

    /// `collection`'s rule for `op`; a collection this snapshot does not hold (built
    /// by hand, say) has its rule compiled on the spot.
    pub fn rule(&self, collection: &Collection, op: RuleOp) -> Rule {
        match self
            .by_id
            .get(&collection.id)
            .and_then(|rules| rules.0.get(op.index()))
        {
            Some(rule) => rule.clone(),
            None => {
                let auth = collection.auth.as_ref();
                compile(match op {
                    RuleOp::List => collection.rules.list.as_ref(),
                    RuleOp::View => collection.rules.view.as_ref(),
                    RuleOp::Create => collection.rules.create.as_ref(),
                    RuleOp::Update => collection.rules.update.as_ref(),
                    RuleOp::Delete => collection.rules.delete.as_ref(),
                    RuleOp::Auth => auth.and_then(|a| a.auth_rule.as_ref()),
                    RuleOp::Manage => auth.and_then(|a| a.manage_rule.as_ref()),
                })
            }
        }
    }
}

/// The compiled rules of `snapshot`, built on first use and kept with it.
pub fn of(snapshot: &Snapshot) -> Arc<Compiled> {
    let slot = snapshot
        .extension()
        .get_or_init(|| Arc::new(Compiled::build(snapshot)) as Arc<dyn Any + Send + Sync>);
    Arc::clone(slot)
        .downcast::<Compiled>()
        .unwrap_or_else(|_| Arc::new(Compiled::build(snapshot)))
}

/// `collection`'s rule for `op` in `snapshot`.
pub fn rule(snapshot: &Snapshot, collection: &Collection, op: RuleOp) -> Rule {
    of(snapshot).rule(collection, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_compile_once_per_snapshot() {
        let base = crate::filter::test_snapshot();
        let mut posts = (**base.get("posts").unwrap()).clone();
        posts.rules.list = Some(String::new());
        posts.rules.view = Some("title = 'x' && views > 1".into());
        posts.rules.create = None;
        posts.rules.update = Some("title = ".into());
        let users = (**base.get("users").unwrap()).clone();
        let snapshot = Snapshot::new(7, vec![posts.clone(), users]);

        let first = of(&snapshot);
        assert!(Arc::ptr_eq(&first, &of(&snapshot)), "built once, then kept");
        assert!(matches!(first.rule(&posts, RuleOp::List), Rule::Public));
        assert!(matches!(first.rule(&posts, RuleOp::Create), Rule::Locked));
        assert!(matches!(first.rule(&posts, RuleOp::Delete), Rule::Locked));
        assert!(matches!(
            first.rule(&posts, RuleOp::Update),
            Rule::Broken(_)
        ));
        // The same parsed expression every time: no request parses it again.
        let (Rule::Expr(a), Rule::Expr(b)) = (
            first.rule(&posts, RuleOp::View),
            of(&snapshot).rule(&posts, RuleOp::View),
        ) else {
            panic!("the view rule is an expression");
        };
        assert!(Arc::ptr_eq(&a, &b));
        // A new snapshot compiles its own rules.
        posts.rules.view = None;
        let next = Snapshot::new(8, vec![posts.clone()]);
        assert!(matches!(rule(&next, &posts, RuleOp::View), Rule::Locked));
    }
}
