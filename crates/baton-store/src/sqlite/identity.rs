//! Principals, token hashes, passwords and web sessions in SQLite.

use baton_core::clock::{from_millis, to_millis};
use baton_core::identity::token_id;
use baton_core::{Error, Principal, Result, Role, Session, Timestamp, TokenInfo};
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

pub(super) fn tokens(c: &Connection, principal_id: i64) -> Result<Vec<TokenInfo>> {
    c.prepare_cached(
        "SELECT hash, created_at FROM tokens WHERE principal_id = ?1 ORDER BY created_at, hash",
    )
    .db()?
    .query_map([principal_id], |r| {
        Ok(TokenInfo {
            id: token_id(&r.get::<_, Vec<u8>>(0)?),
            created_at: from_millis(r.get(1)?),
        })
    })
    .db()?
    .collect::<rusqlite::Result<Vec<_>>>()
    .db()
}

pub(super) fn revoke_token(c: &Connection, principal_id: i64, id: &str) -> Result<Vec<Vec<u8>>> {
    let hashes: Vec<Vec<u8>> = c
        .prepare_cached("SELECT hash FROM tokens WHERE principal_id = ?1")
        .db()?
        .query_map([principal_id], |r| r.get(0))
        .db()?
        .collect::<rusqlite::Result<Vec<Vec<u8>>>>()
        .db()?
        .into_iter()
        .filter(|h| token_id(h) == id)
        .collect();
    if hashes.is_empty() {
        return Err(Error::not_found("token", id));
    }
    let mut stmt = c
        .prepare_cached("DELETE FROM tokens WHERE hash = ?1")
        .db()?;
    for h in &hashes {
        stmt.execute([h]).db()?;
    }
    Ok(hashes)
}

pub(super) fn set_password_hash(c: &Connection, name: &str, hash: Option<&str>) -> Result<()> {
    let n = c
        .prepare_cached("UPDATE principals SET password_hash = ?2 WHERE name = ?1")
        .db()?
        .execute(params![name, hash])
        .db()?;
    if n == 0 {
        return Err(Error::not_found("principal", name));
    }
    Ok(())
}

pub(super) fn principal_with_password(
    c: &Connection,
    name: &str,
) -> Result<Option<(Principal, Option<String>)>> {
    c.prepare_cached("SELECT id, name, role, password_hash FROM principals WHERE name = ?1")
        .db()?
        .query_row([name], |r| {
            Ok((principal_row(r)?, r.get::<_, Option<String>>(3)?))
        })
        .optional()
        .db()?
        .map(|(p, hash)| Ok((to_principal(p)?, hash)))
        .transpose()
}

pub(super) fn create_session(c: &Connection, s: &Session, hash: &[u8]) -> Result<()> {
    let exists: Option<i64> = c
        .prepare_cached("SELECT id FROM principals WHERE id = ?1")
        .db()?
        .query_row([s.principal.id], |r| r.get(0))
        .optional()
        .db()?;
    if exists.is_none() {
        return Err(Error::not_found("principal", s.principal.id));
    }
    c.prepare_cached(
        "INSERT INTO sessions (hash, id, principal_id, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .db()?
    .execute(params![
        hash,
        s.id,
        s.principal.id,
        to_millis(s.created_at),
        to_millis(s.expires_at)
    ])
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::AlreadyExists(format!("session {} exists", s.id))
        } else {
            Error::Store(store_err(e))
        }
    })?;
    Ok(())
}

pub(super) fn session_by_hash(c: &Connection, hash: &[u8]) -> Result<Option<Session>> {
    c.prepare_cached(
        "SELECT p.id, p.name, p.role, s.id, s.created_at, s.expires_at \
         FROM sessions s JOIN principals p ON p.id = s.principal_id WHERE s.hash = ?1",
    )
    .db()?
    .query_row([hash], |r| {
        Ok((
            principal_row(r)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })
    .optional()
    .db()?
    .map(|(p, id, created, expires)| {
        Ok(Session {
            id,
            principal: to_principal(p)?,
            created_at: from_millis(created),
            expires_at: from_millis(expires),
        })
    })
    .transpose()
}

pub(super) fn delete_session(c: &Connection, hash: &[u8]) -> Result<Option<Session>> {
    let found = session_by_hash(c, hash)?;
    if found.is_some() {
        c.prepare_cached("DELETE FROM sessions WHERE hash = ?1")
            .db()?
            .execute([hash])
            .db()?;
    }
    Ok(found)
}

pub(super) fn sweep_sessions(c: &Connection, now: Timestamp) -> Result<u64> {
    let n = c
        .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")
        .db()?
        .execute([to_millis(now)])
        .db()?;
    Ok(n as u64)
}
