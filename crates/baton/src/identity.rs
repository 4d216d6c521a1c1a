//! Secrets: API tokens and session secrets generated from the OS's
//! randomness and stored only as SHA-256 hashes, and passwords stored
//! only as argon2id hashes.
//!
//! Tokens and session secrets carry 256 random bits, so a fast hash
//! (SHA-256) is the right tool: there is nothing to brute-force, and
//! authentication stays one index lookup. Passwords, which people choose,
//! get a slow, memory-hard hash: argon2id with the `argon2` crate's
//! default parameters (19 MiB, 2 passes, 1 lane; OWASP's recommendation),
//! as a PHC string, so parameters can be raised later and old hashes
//! still verify. Measured on the 2-core machine: 47 ms to hash, 26 ms to
//! verify (`cargo test -p baton --lib password_hash_cost -- --ignored
//! --nocapture` prints it; argon2 is built optimised in every profile).

pub use baton_core::identity::token_id;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of every token, so a leaked one is recognisable in logs and by
/// secret scanners.
pub const TOKEN_PREFIX: &str = "baton_";

/// A new random token, `baton_` followed by 43 URL-safe characters.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The hash under which a token is stored and looked up.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new session secret: 32 random bytes, base64url without padding (43
/// characters).
pub fn generate_session_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new public session id: `s-` and 16 hex digits (64 random bits).
pub fn generate_session_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("s-{hex}")
}

/// Hashes a password with argon2id (default parameters, fresh 16-byte
/// salt) into a PHC string. CPU- and memory-heavy: call it off the async
/// threads.
pub fn hash_password(password: &str) -> baton_core::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| baton_core::StoreError::fatal(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| baton_core::StoreError::fatal(format!("hashing a password: {e}")).into())
}

/// Whether `password` matches the PHC string `hash` (with the parameters
/// the hash names). A hash that cannot be parsed matches nothing.
/// CPU- and memory-heavy: call it off the async threads.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, computed once: logins of unknown names
/// or of principals without a password are verified against it, so they
/// take as long as a wrong password does.
pub(crate) fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // Hashing a random password cannot fail; if it did, verifying against
    // an empty string fails at once, which only loses the equal timing.
    DUMMY.get_or_init(|| hash_password(&generate_session_secret()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_salted_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse", &a));
        assert!(verify_password("correct horse", &b));
        assert!(!verify_password("correct horse!", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("anything at all", dummy_password_hash()));
    }

    #[test]
    fn session_secrets_and_ids() {
        let s = generate_session_secret();
        assert_eq!(s.len(), 43);
        assert_ne!(s, generate_session_secret());
        let id = generate_session_id();
        assert_eq!(id.len(), baton_core::identity::SESSION_ID_LEN);
        assert!(id.starts_with("s-"));
        assert!(baton_core::validate_session(&id).is_ok());
        assert_ne!(id, generate_session_id());
    }

    /// Prints what one hash and one verification cost on this machine
    /// (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn password_hash_cost() {
        let start = std::time::Instant::now();
        let n = 10;
        let mut h = String::new();
        for _ in 0..n {
            h = hash_password("a password of 20 chars").unwrap();
        }
        let hash = start.elapsed() / n;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(verify_password("a password of 20 chars", &h));
        }
        println!("hash {:?}, verify {:?}", hash, start.elapsed() / n);
    }

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
