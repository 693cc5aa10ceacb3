//! API user passwords: argon2id hashes in PHC string form.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::model::Secret;

/// The shortest API password we accept from a person.
pub const MIN_API_PASSWORD_LEN: usize = 12;

pub fn hash(password: &Secret) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

/// Constant-time check of `password` against a stored PHC string. A stored
/// string that does not parse verifies nothing.
pub fn verify(password: &Secret, phc: &str) -> bool {
    PasswordHash::new(phc).map(|h| Argon2::default().verify_password(password.expose().as_bytes(), &h).is_ok()).unwrap_or(false)
}

/// Rules for passwords people choose for API users.
pub fn check_strength(password: &Secret) -> Result<(), crate::model::FieldError> {
    let p = password.expose();
    if p.chars().count() < MIN_API_PASSWORD_LEN || p.chars().any(char::is_control) {
        return Err(crate::model::FieldError::new(
            "password",
            format!("must be at least {MIN_API_PASSWORD_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Secret::new("correct horse battery");
        let h = hash(&p);
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&p, &h));
        assert!(!verify(&Secret::new("wrong"), &h));
        assert!(!verify(&p, "not a hash"));
    }
}
