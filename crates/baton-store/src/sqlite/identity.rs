//! Principals and token hashes in SQLite.

use baton_core::clock::to_millis;
use baton_core::{Error, Principal, Result, Role, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::queue::Db;
use super::rows::{is_unique_violation, store_err};

fn principal_row(r: &Row) -> rusqlite::Result<(i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn to_principal((id, name, role): (i64, String, String)) -> Result<Principal> {
    Ok(Principal {
        id,
        name,
        role: role.parse::<Role>()?,
    })
}

pub(super) fn create_principal(
    c: &Connection,
    name: &str,
    role: Role,
    now: Timestamp,
) -> Result<Principal> {
    let id = c
        .prepare_cached(
            "INSERT INTO principals (name, role, created_at) VALUES (?1, ?2, ?3) RETURNING id",
        )
        .db()?
        .query_row(params![name, role.as_str(), to_millis(now)], |r| r.get(0))
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::AlreadyExists(format!("a principal named {name} already exists"))
            } else {
                Error::Store(store_err(e))
            }
        })?;
    Ok(Principal {
        id,
        name: name.to_owned(),
        role,
    })
}

pub(super) fn principal(c: &Connection, name: &str) -> Result<Option<Principal>> {
    c.prepare_cached("SELECT id, name, role FROM principals WHERE name = ?1")
        .db()?
        .query_row([name], principal_row)
        .optional()
        .db()?
        .map(to_principal)
        .transpose()
}

pub(super) fn principals(c: &Connection) -> Result<Vec<Principal>> {
    c.prepare_cached("SELECT id, name, role FROM principals ORDER BY name")
        .db()?
        .query_map([], principal_row)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?
        .into_iter()
        .map(to_principal)
        .collect()
}

pub(super) fn add_token(
    c: &Connection,
    principal_id: i64,
    hash: &[u8],
    now: Timestamp,
) -> Result<()> {
    c.prepare_cached("INSERT INTO tokens (hash, principal_id, created_at) VALUES (?1, ?2, ?3)")
        .db()?
        .execute(params![hash, principal_id, to_millis(now)])
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::not_found("principal", principal_id)
            } else {
                Error::Store(store_err(e))
            }
        })?;
    Ok(())
}

pub(super) fn principal_by_token(c: &Connection, hash: &[u8]) -> Result<Option<Principal>> {
    c.prepare_cached(
        "SELECT p.id, p.name, p.role FROM tokens t JOIN principals p ON p.id = t.principal_id \
         WHERE t.hash = ?1",
    )
    .db()?
    .query_row([hash], principal_row)
    .optional()
    .db()?
    .map(to_principal)
    .transpose()
}
