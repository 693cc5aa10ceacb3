//! API users: `name@domain`, a role, and an argon2 password hash.

use super::FieldError;

/// What an API user may do inside its own domain. Superusers are a flag on
/// top of a role: they may act in any domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything in its domain, including domain settings and the audit log.
    Admin,
    /// The voice platform: reads, handset writes and status reports.
    Platform,
    /// Reads only.
    Readonly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Platform => "platform",
            Role::Readonly => "readonly",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "admin" => Ok(Role::Admin),
            "platform" => Ok(Role::Platform),
            "readonly" => Ok(Role::Readonly),
            _ => Err(FieldError::new("role", "must be admin, platform or readonly")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApiUser {
    pub id: i64,
    pub name: String,
    pub domain_id: i64,
    pub domain: String,
    pub role: Role,
    pub superuser: bool,
    pub password_hash: String,
}

impl ApiUser {
    pub fn login(&self) -> String {
        format!("{}@{}", self.name, self.domain)
    }
}

/// Splits `name@domain` into its lower-cased parts, validating both. The
/// domain may be a full host name (`mycompany.example.com`): Jingl's logins
/// are written that way, and the API looks up its first label.
pub fn parse_login(login: &str) -> Result<(String, String), FieldError> {
    let (name, domain) = login.rsplit_once('@').ok_or_else(|| FieldError::new("user", "must be written name@domain"))?;
    let name = name.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    super::validate_token("user", &name, 64)?;
    match domain.split_once('.') {
        Some((label, _)) => {
            super::domain::validate_domain_name(label)?;
            super::validate_host("domain", &domain)?;
        }
        None => super::domain::validate_domain_name(&domain)?,
    }
    Ok((name, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        assert_eq!(parse_login("Admin@Default").unwrap(), ("admin".into(), "default".into()));
        assert!(parse_login("admin").is_err());
        assert!(parse_login("a b@default").is_err());
    }
}
