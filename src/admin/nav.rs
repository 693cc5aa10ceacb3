//! The frame every page of the UI shares: who is logged in, in which
//! domain, the menu, and the token the page's forms carry.

use super::session::Session;
use super::{AdminState, PageResult};
use crate::model::Role;

pub struct Nav {
    pub login: String,
    pub domain: String,
    pub csrf: String,
    /// Domains a superuser may switch to (empty for everyone else).
    pub domains: Vec<String>,
    /// The menu entry of this page.
    pub active: &'static str,
    pub can_write: bool,
    pub is_admin: bool,
    pub superuser: bool,
}

impl Nav {
    pub async fn new(state: &AdminState, session: &Session, active: &'static str) -> PageResult<Nav> {
        let user = &session.row.user;
        let domains =
            if user.superuser { state.api.store.list_domains().await?.into_iter().map(|d| d.name).collect() } else { Vec::new() };
        Ok(Nav {
            login: user.login(),
            domain: session.row.domain.clone(),
            csrf: session.row.csrf.clone(),
            domains,
            active,
            can_write: user.superuser || user.role != Role::Readonly,
            is_admin: user.superuser || user.role == Role::Admin,
            superuser: user.superuser,
        })
    }
}
