//! A validation hook: refuses posts whose title or body mentions spam, on create and
//! on update, with a field error the client can show beside the field.
//!
//! Deploy: `basalt functions deploy no_spam.wasm --name no-spam
//! --trigger posts.before-create --trigger posts.before-update`

use basalt_functions::{Function, Outcome, Write};

struct NoSpam;

fn check(write: &Write) -> Outcome {
    for field in ["title", "body"] {
        let text = write
            .values
            .get(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if text.to_lowercase().contains("spam") {
            return Outcome::reject_field(
                "Posts may not advertise spam.",
                field,
                "validation_no_spam",
                "Remove the word `spam`.",
            );
        }
    }
    Outcome::Unchanged
}

impl Function for NoSpam {
    fn before_create(write: Write) -> Outcome {
        check(&write)
    }
    fn before_update(write: Write) -> Outcome {
        check(&write)
    }
}

basalt_functions::export!(NoSpam);
