//! First start: an empty database gets domain `default` and the superuser
//! `admin@default`, so a fresh install can be used at once.

use std::path::{Path, PathBuf};

use crate::model::{DomainChanges, Role, Secret};
use crate::store::{Actor, Store, StoreError};

pub const DEFAULT_DOMAIN: &str = "default";
pub const ADMIN_USER: &str = "admin";

/// What the first start did, so `serve` can tell the operator once.
pub struct Bootstrapped {
    /// The generated password, when `AUTOPROV_ADMIN_PASSWORD` gave none.
    pub generated_password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Creates the default domain and superuser when the database has no users,
/// with `password` or a generated one (written to `data_dir`).
pub async fn bootstrap_if_empty(
    store: &Store,
    password: Option<&Secret>,
    data_dir: &Path,
) -> Result<Option<Bootstrapped>, BootstrapError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let actor = Actor { login: "bootstrap".into(), client_ip: None };
    if store.domain_by_name(DEFAULT_DOMAIN).await?.is_none() {
        store.create_domain(&actor, DEFAULT_DOMAIN, &DomainChanges::default()).await?;
    }
    let (password, generated) = match password {
        Some(p) => (p.clone(), false),
        None => (Secret::generate(24), true),
    };
    let hash = crate::auth::password::hash(&password);
    store.create_user(&actor, ADMIN_USER, DEFAULT_DOMAIN, Role::Admin, true, &hash).await?;
    if !generated {
        return Ok(Some(Bootstrapped { generated_password: None, password_file: None }));
    }
    let path = data_dir.join("admin-password");
    crate::files::private_dir(data_dir)
        .and_then(|_| crate::files::write_private(&path, format!("{}\n", password.expose()).as_bytes()))
        .map_err(|e| BootstrapError::File { path: path.clone(), reason: e.to_string() })?;
    Ok(Some(Bootstrapped { generated_password: Some(password), password_file: Some(path) }))
}
