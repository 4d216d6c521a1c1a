//! Principals, roles and what each role may do.
//!
//! Authorization is a business rule, so it lives here and is enforced by the
//! engine, not by the HTTP layer: an in-process caller gets the same checks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result, Timestamp};

/// The kind of principal, which decides what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages principals and tokens and collection settings; may do
    /// everything.
    Admin,
    /// Watches queues and locks, revokes leases, requeues parked items,
    /// forces locks open.
    Supervisor,
    /// A person working items: claims, heartbeats, releases, completes;
    /// takes locks; writes records.
    Operator,
    /// An application: enqueues, reads, takes locks, writes records.
    App,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Supervisor, Role::Operator, Role::App];

    /// The name used in the API, CLI and database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Operator => "operator",
            Role::App => "app",
        }
    }

    /// Whether this role may perform `action`.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Supervisor => !matches!(action, ManagePrincipals | Configure),
            Role::Operator => matches!(action, Work | Lock | Read | Edit),
            Role::App => matches!(action, Enqueue | Lock | Read | Edit),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "role",
                    format!("unknown role {s:?}; one of admin, supervisor, operator, app"),
                )
            })
    }
}

/// A class of actions guarded by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Put items into a queue.
    Enqueue,
    /// Claim, heartbeat, release, complete.
    Work,
    /// Read items, history and queue statistics.
    Read,
    /// Take, keep alive, change and release one's own locks.
    Lock,
    /// Revoke leases, requeue parked items, change queue settings, force
    /// locks open, read a resource's lock history.
    Supervise,
    /// Create principals and tokens.
    ManagePrincipals,
    /// Create, change and delete versioned records.
    Edit,
    /// Change a collection's settings (conflict and lock policy).
    Configure,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Enqueue => "enqueue items",
            Action::Work => "claim and work items",
            Action::Read => "read queues and items",
            Action::Lock => "take locks",
            Action::Supervise => "supervise queues and locks",
            Action::ManagePrincipals => "manage principals",
            Action::Edit => "write records",
            Action::Configure => "change collection settings",
        }
    }
}

/// An authenticated caller: a person or an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    /// Store identifier.
    pub id: i64,
    /// Unique name; this is the `holder` of leases it takes.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// Refuses with [`Error::Forbidden`] unless the role allows `action`.
    pub fn require(&self, action: Action) -> Result<()> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "role {} may not {}",
                self.role,
                action.describe()
            )))
        }
    }
}

/// Validates a principal name: 1..=64 characters, letters, digits, `.`,
/// `_`, `-`, `@`.
pub fn validate_principal_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            "1 to 64 characters: letters, digits, '.', '_', '-', '@'",
        ))
    }
}

/// Shortest password accepted, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest password accepted, in bytes (hashing cost grows with length;
/// nobody types more).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Validates a new password: [`MIN_PASSWORD_BYTES`]..=[`MAX_PASSWORD_BYTES`]
/// bytes. Refuses with `Error::invalid("password", ..)`.
pub fn validate_password(password: &str) -> Result<()> {
    if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "password",
            format!("{MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes"),
        ))
    }
}

/// Whether `who` may set the password of the principal named `name`:
/// admins for anyone, everyone for themselves.
pub fn may_set_password(who: &Principal, name: &str) -> Result<()> {
    if who.name == name {
        Ok(())
    } else {
        who.require(Action::ManagePrincipals)
    }
}

/// A web login: who is signed in, until when.
///
/// The session's secret (held by the browser) is never stored, only its
/// SHA-256; `id` is public and is the `session` label of every lock taken
/// through the web, so that logging out can release them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// Public, non-secret identifier: `s-` and 16 hex digits.
    pub id: String,
    /// Who is signed in (as the principal is now, not as it was at login).
    pub principal: Principal,
    /// When the login happened.
    pub created_at: DateTime<Utc>,
    /// When the session stops being valid.
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// Whether the session is still valid at `now` (it is not once
    /// `expires_at` is reached).
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

/// How long a public session id is: `s-` and 16 hex digits.
pub const SESSION_ID_LEN: usize = 18;

/// An API token as listed: never the token, only an identifier derived
/// from its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The first 16 hex digits of the token's SHA-256 ([`token_id`]).
    pub id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The public id of a token: the first 16 hex digits (8 bytes) of its
/// SHA-256 hash. Unique in practice (64 bits); a revocation naming an id
/// that matched two tokens of one principal would revoke both.
pub fn token_id(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Validates a token id as given by a caller: 16 lowercase hex digits.
pub fn validate_token_id(id: &str) -> Result<()> {
    if id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::invalid("id", "16 lowercase hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Action::*;
        assert!(Role::Operator.allows(Work));
        assert!(!Role::Operator.allows(Enqueue));
        assert!(!Role::Operator.allows(Supervise));
        assert!(Role::App.allows(Enqueue));
        assert!(Role::App.allows(Lock) && Role::Operator.allows(Lock));
        assert!(!Role::Operator.allows(Supervise) && !Role::App.allows(Supervise));
        assert!(!Role::App.allows(Work));
        assert!(Role::Supervisor.allows(Supervise));
        assert!(Role::Supervisor.allows(Work));
        assert!(!Role::Supervisor.allows(ManagePrincipals));
        assert!(Role::Admin.allows(ManagePrincipals));
        for r in Role::ALL {
            assert!(r.allows(Edit) && r.allows(Read));
            assert_eq!(r.allows(Configure), r == Role::Admin);
        }
    }

    #[test]
    fn role_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn passwords_have_limits() {
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("1234567").is_err());
        assert!(validate_password(&"x".repeat(1024)).is_ok());
        let e = validate_password(&"x".repeat(1025)).unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "password"));
        // Bytes, not characters: four 2-byte characters are 8 bytes.
        assert!(validate_password("éééé").is_ok());
    }

    #[test]
    fn who_may_set_a_password() {
        let p = |name: &str, role| Principal {
            id: 1,
            name: name.into(),
            role,
        };
        assert!(may_set_password(&p("alice", Role::Operator), "alice").is_ok());
        assert!(may_set_password(&p("alice", Role::Operator), "bob").is_err());
        assert!(may_set_password(&p("sup", Role::Supervisor), "bob").is_err());
        assert!(may_set_password(&p("root", Role::Admin), "bob").is_ok());
    }

    #[test]
    fn token_ids() {
        let hash: Vec<u8> = (0u8..32).collect();
        assert_eq!(token_id(&hash), "0001020304050607");
        assert!(validate_token_id("0001020304050607").is_ok());
        assert!(validate_token_id("000102030405060").is_err());
        assert!(validate_token_id("000102030405060G").is_err());
        assert!(validate_token_id("ABCDEF0123456789").is_err());
    }

    #[test]
    fn sessions_end_at_their_expiry() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let s = Session {
            id: "s-0123456789abcdef".into(),
            principal: Principal {
                id: 1,
                name: "a".into(),
                role: Role::Operator,
            },
            created_at: t,
            expires_at: t + chrono::Duration::seconds(10),
        };
        assert_eq!(s.id.len(), SESSION_ID_LEN);
        assert!(s.is_live(t + chrono::Duration::milliseconds(9_999)));
        assert!(!s.is_live(t + chrono::Duration::seconds(10)));
    }

    #[test]
    fn principal_names() {
        assert!(validate_principal_name("alice@desk-1").is_ok());
        assert!(validate_principal_name("").is_err());
        assert!(validate_principal_name("a b").is_err());
        assert!(validate_principal_name(&"x".repeat(65)).is_err());
    }
}
