//! The API described as OpenAPI 3 (utoipa), served at `/api/openapi.json`,
//! with Swagger UI at `/api/docs` (built in: nothing is fetched).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, calls, devices, domain, handsets, status};

#[derive(OpenApi)]
#[openapi(
    info(title = "autoprov", description = "Jingl-compatible handset API of the autoprov provisioning server. HTTPS only; Basic auth as user@domain:password."),
    paths(
        handsets::search, handsets::select, handsets::update, handsets::create, handsets::delete, handsets::resync, handsets::import,
        status::search, status::select, status::report, status::registration,
        domain::show, domain::update, domain::rotate_token,
        calls::action, calls::not_ours,
        audit::list,
        devices::list, devices::claim,
    ),
    modifiers(&BasicAuth),
    security(("basic" = []))
)]
pub struct ApiDoc;

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}
