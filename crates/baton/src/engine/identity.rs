//! People's identity: passwords, web sessions, and token management.
//!
//! A password is hashed with argon2id (see [`crate::identity`]) on the
//! blocking pool, at most as many at once as there are cores, so that a
//! burst of logins costs bounded memory (19 MiB each) and never stalls
//! the async threads. A login that fails — unknown name, no password,
//! wrong password — verifies against a dummy hash, so all three take the
//! same time and do not reveal which names exist.
//!
//! A session's secret goes to the browser; the store keeps its SHA-256
//! and a public id (`s-` + 16 hex digits), which the web pages use as the
//! `session` label of the locks they take, so that logging out releases
//! them. Sessions are remembered for a few seconds like tokens (see
//! `auth_cache`); logging out or revoking a token forgets the entry at
//! once on this server.

use baton_core::identity::{self, Session, TokenInfo};
use baton_core::{Action, Error, Principal, Result};

use super::Engine;
use crate::identity::{
    dummy_password_hash, generate_session_id, generate_session_secret, generate_token,
    hash_password, hash_token, verify_password,
};

impl Engine {
    /// Sets the password of the principal `name` (admins for anyone,
    /// anyone for themselves). 8..=1024 bytes, else
    /// `Error::Invalid { field: "password" }`; `NotFound` for an unknown
    /// name. Existing sessions stay valid.
    pub async fn set_password(&self, who: &Principal, name: &str, password: &str) -> Result<()> {
        identity::may_set_password(who, name)?;
        identity::validate_password(password)?;
        if self.inner.store.principal(name).await?.is_none() {
            return Err(Error::not_found("principal", name));
        }
        let hash = self.hashing(password.to_owned(), None).await?;
        self.inner.store.set_password_hash(name, Some(&hash)).await
    }

    /// Signs in with a name and a password: a new session secret (32
    /// random bytes, base64url; give it to the browser, it is not stored)
    /// and the session, valid for `EngineSettings::session_ttl`. `None`
    /// for an unknown name, a principal without a password or a wrong
    /// password, each taking about as long as the others.
    pub async fn login(&self, name: &str, password: &str) -> Result<Option<(String, Session)>> {
        let found = if identity::validate_principal_name(name).is_ok() {
            self.inner.store.principal_with_password(name).await?
        } else {
            None
        };
        // A password too long to be anyone's is refused without hashing
        // (its length is no secret).
        if password.len() > identity::MAX_PASSWORD_BYTES {
            return Ok(None);
        }
        let (principal, hash) = match found {
            Some((p, Some(hash))) => (Some(p), hash),
            _ => (None, dummy_password_hash().to_owned()),
        };
        let matches = self.hashing(password.to_owned(), Some(hash)).await? == "ok";
        let Some(principal) = principal.filter(|_| matches) else {
            metrics::counter!("baton_logins_total", "result" => "refused").increment(1);
            return Ok(None);
        };
        let now = self.now();
        let secret = generate_session_secret();
        let session = Session {
            id: generate_session_id(),
            principal,
            created_at: now,
            expires_at: now + self.inner.settings.session_ttl,
        };
        self.inner
            .store
            .create_session(&session, &hash_token(&secret))
            .await?;
        metrics::counter!("baton_logins_total", "result" => "ok").increment(1);
        Ok(Some((secret, session)))
    }

    /// The live session of a secret; `None` when unknown, logged out or
    /// expired. Remembered for a few seconds (see `auth_cache`), never
    /// past its expiry.
    pub async fn session(&self, secret: &str) -> Result<Option<Session>> {
        let hash = hash_token(secret);
        let now = self.now();
        if let Some(s) = self.inner.session_cache.get(&hash) {
            if s.is_live(now) {
                return Ok(Some(s));
            }
            self.inner.session_cache.remove(&hash);
            return Ok(None);
        }
        match self.inner.store.session_by_hash(&hash).await? {
            Some(s) if s.is_live(now) => {
                self.inner.session_cache.put(hash, s.clone());
                Ok(Some(s))
            }
            _ => Ok(None),
        }
    }

    /// Ends the session of a secret and releases every lock its principal
    /// holds with the session's id as `session` label. Nothing happens for
    /// an unknown secret.
    pub async fn logout(&self, secret: &str) -> Result<()> {
        let hash = hash_token(secret);
        // Forgotten first: from now on this server refuses the secret,
        // so no new lock can be taken under it while we release.
        self.inner.session_cache.remove(&hash);
        if let Some(session) = self.inner.store.delete_session(&hash).await? {
            self.release_session(&session.principal, &session.id)
                .await?;
        }
        Ok(())
    }

    /// Admin: a new token for the principal `name` (`NotFound` if there is
    /// none): its listing and the token itself, shown only now.
    pub async fn create_token(&self, who: &Principal, name: &str) -> Result<(TokenInfo, String)> {
        who.require(Action::ManagePrincipals)?;
        let principal = self.principal_named(name).await?;
        let token = generate_token();
        let hash = hash_token(&token);
        let now = self.now();
        self.inner.store.add_token(principal.id, &hash, now).await?;
        Ok((
            TokenInfo {
                id: identity::token_id(&hash),
                created_at: now,
            },
            token,
        ))
    }

    /// Admin: the tokens of the principal `name`, oldest first.
    pub async fn tokens(&self, who: &Principal, name: &str) -> Result<Vec<TokenInfo>> {
        who.require(Action::ManagePrincipals)?;
        let principal = self.principal_named(name).await?;
        self.inner.store.tokens(principal.id).await
    }

    /// Admin: revokes the token `id` of the principal `name`. It stops
    /// working at once on this server (and within the auth cache's TTL on
    /// others sharing the database). `NotFound` for an unknown principal
    /// or token; `Invalid` for an id that is not 16 hex digits.
    pub async fn revoke_token(&self, who: &Principal, name: &str, id: &str) -> Result<()> {
        who.require(Action::ManagePrincipals)?;
        identity::validate_token_id(id)?;
        let principal = self.principal_named(name).await?;
        for hash in self.inner.store.revoke_token(principal.id, id).await? {
            self.inner.auth_cache.remove(&hash);
        }
        Ok(())
    }

    /// Trusted (the CLI): creates the principal `name` with `role` and,
    /// when given, a password, without any token. The password is checked
    /// before anything is created.
    pub async fn create_user(
        &self,
        name: &str,
        role: baton_core::Role,
        password: Option<&str>,
    ) -> Result<Principal> {
        identity::validate_principal_name(name)?;
        let hash = match password {
            Some(p) => {
                identity::validate_password(p)?;
                Some(self.hashing(p.to_owned(), None).await?)
            }
            None => None,
        };
        let principal = self
            .inner
            .store
            .create_principal(name, role, self.now())
            .await?;
        if let Some(hash) = hash {
            self.inner
                .store
                .set_password_hash(name, Some(&hash))
                .await?;
        }
        Ok(principal)
    }

    async fn principal_named(&self, name: &str) -> Result<Principal> {
        self.inner
            .store
            .principal(name)
            .await?
            .ok_or_else(|| Error::not_found("principal", name))
    }

    /// Hashes `password` (`against: None`, answering the PHC string) or
    /// verifies it against a hash (answering `"ok"` or `""`), on the
    /// blocking pool, at most one per core at a time.
    async fn hashing(&self, password: String, against: Option<String>) -> Result<String> {
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|e| baton_core::StoreError::fatal(format!("password hashing: {e}")))?;
        tokio::task::spawn_blocking(move || match against {
            None => hash_password(&password),
            Some(hash) => Ok(if verify_password(&password, &hash) {
                "ok".to_owned()
            } else {
                String::new()
            }),
        })
        .await
        .map_err(|e| baton_core::StoreError::fatal(format!("password hashing task: {e}")))?
    }
}
