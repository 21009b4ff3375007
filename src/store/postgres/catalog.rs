//! `verify-audit`'s schema check on PostgreSQL: the guards labfeed created
//! are in place. SQLite's check compares the whole schema text; here the
//! server rewrites definitions, so what can silently lift a guard is
//! compared instead: every trigger of the migrations present, enabled and
//! as written, the trigger function unchanged, no other trigger and no rule
//! on labfeed's tables.

use std::collections::BTreeMap;

use super::MIGRATIONS;
use crate::store::StoreError;
use crate::store::sql::{Db, params};

fn squeeze(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The triggers and function bodies the migrations create, by name.
fn expected() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut triggers = BTreeMap::new();
    let mut functions = BTreeMap::new();
    for m in MIGRATIONS {
        let mut rest = m.sql;
        while let Some(at) = rest.find("CREATE TRIGGER ") {
            let statement = &rest[at..];
            let end = statement.find(';').unwrap_or(statement.len());
            let text = squeeze(&statement[..end]);
            let name = text.split(' ').nth(2).unwrap_or_default().to_owned();
            triggers.insert(name, text);
            rest = &statement[end..];
        }
        let mut rest = m.sql;
        while let Some(at) = rest.find("CREATE FUNCTION ") {
            let statement = &rest[at + "CREATE FUNCTION ".len()..];
            let name = statement.split('(').next().unwrap_or_default().to_owned();
            let body = statement.split("$$").nth(1).unwrap_or_default();
            functions.insert(name, squeeze(body));
            rest = statement;
        }
    }
    (triggers, functions)
}

pub(crate) fn schema_problem(db: Db<'_>) -> Result<Option<String>, StoreError> {
    let (expected_triggers, expected_functions) = expected();
    let actual: BTreeMap<String, (String, String)> = db.query_all(
        "SELECT t.tgname::text, t.tgenabled::text, pg_get_triggerdef(t.oid)
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace",
        params![],
        |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))),
    )?;
    for (name, sql) in &expected_triggers {
        match actual.get(name) {
            None => return Ok(Some(format!("trigger {name} is missing: the schema is not the one labfeed created"))),
            Some((enabled, _)) if enabled != "O" && enabled != "A" => {
                return Ok(Some(format!("trigger {name} is disabled: the schema is not the one labfeed created")));
            }
            Some((_, def)) if squeeze(&def.replace("public.", "")) != *sql => {
                return Ok(Some(format!("trigger {name} differs from the one labfeed created")));
            }
            Some(_) => {}
        }
    }
    if let Some(name) = actual.keys().find(|name| !expected_triggers.contains_key(*name)) {
        return Ok(Some(format!("trigger {name} was not created by labfeed")));
    }
    for (name, body) in &expected_functions {
        let found: Option<String> = db.query_opt(
            "SELECT prosrc FROM pg_proc WHERE proname = ?1 AND pronamespace = current_schema()::regnamespace",
            params![name.as_str()],
            |r| r.get(0),
        )?;
        match found {
            None => return Ok(Some(format!("function {name} is missing: the schema is not the one labfeed created"))),
            Some(src) if squeeze(&src) != *body => {
                return Ok(Some(format!("function {name} differs from the one labfeed created")));
            }
            Some(_) => {}
        }
    }
    let rule: Option<String> = db.query_opt(
        "SELECT rulename::text || ' on ' || tablename::text FROM pg_rules WHERE schemaname = current_schema() LIMIT 1",
        params![],
        |r| r.get(0),
    )?;
    Ok(rule.map(|rule| format!("rule {rule} was not created by labfeed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_append_only_table_has_its_triggers_in_the_expectation() {
        let (triggers, functions) = expected();
        assert!(triggers.contains_key("raw_no_update") && triggers.contains_key("audit_log_no_delete"), "{triggers:?}");
        assert!(triggers["raw_no_update"].starts_with("CREATE TRIGGER raw_no_update BEFORE UPDATE ON raw"));
        assert!(functions["labfeed_refuse"].contains("RAISE EXCEPTION"), "{functions:?}");
    }
}
