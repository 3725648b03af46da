//! Schema import on arbitrary JSON: parse every definition, resolve it against the
//! current schema, check every rule and plan the DDL for both engines. It may refuse
//! with field errors, never panic.
#![no_main]

use basalt_server::schema::Snapshot;
use basalt_server::schema::service::plan_import;
use libfuzzer_sys::fuzz_target;
use sea_orm::DatabaseBackend;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let definitions = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let empty = Snapshot::new(0, Vec::new());
    for delete_missing in [false, true] {
        let Ok(plan) = plan_import(&empty, &definitions, delete_missing) else {
            continue;
        };
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            let _ = plan.check(&empty, basalt_server::filter::resolve::check_rule, backend);
        }
        let _ = plan.snapshot_after(&empty);
    }
});
