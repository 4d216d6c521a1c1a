//! Principals, roles and what each role may do.
//!
//! Authorization is a business rule, so it lives here and is enforced by the
//! engine, not by the HTTP layer: an in-process caller gets the same checks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result};

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
    fn principal_names() {
        assert!(validate_principal_name("alice@desk-1").is_ok());
        assert!(validate_principal_name("").is_err());
        assert!(validate_principal_name("a b").is_err());
        assert!(validate_principal_name(&"x".repeat(65)).is_err());
    }
}
