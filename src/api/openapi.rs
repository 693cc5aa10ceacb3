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
        phone_event,
    ),
    modifiers(&BasicAuth),
    security(("basic" = []))
)]
pub struct ApiDoc;

/// Phones report their calls (served by the phones' front end,
/// `provision::http`, on the HTTP and HTTPS listeners; described here so
/// the document has all of it). Each handset's config names these URLs
/// with its own event token and the vendor's variables in the query; some
/// phones POST them (the body is ignored).
#[utoipa::path(
    method(get, post),
    path = "/ev/{eventtoken}/{event}",
    tag = "phone events",
    summary = "A phone reports an event of its own (its action URL)",
    description = "Called by the phone, not by API clients: HTTP or HTTPS, no Basic auth; the secret is the handset's \
event token in the path (drawn anew when its MAC changes). Events: registered, unregistered, ringing (incoming), \
calling (outgoing), established, held, resumed, ended, dnd-on, dnd-off, forward-on, forward-off. Each updates Handset \
Status and Handset Select's status text; an event of a call already ended, or of an earlier stage than its call \
reached (ringing after established), is ignored and still answered 200. A wrong or missing token is 404 and counts \
as a scan-guard miss (a source with too many distinct misses is banned: 403).",
    params(
        ("eventtoken" = String, Path, description = "The handset's event token (24 letters and digits)"),
        ("event" = String, Path, description = "registered, unregistered, ringing, calling, established, held, resumed, ended, dnd-on, dnd-off, forward-on or forward-off"),
        ("callid" = Option<String>, Query, description = "The phone's call id (the vendor's variable, substituted by the phone); events without one are ordered by arrival"),
        ("remote" = Option<String>, Query, description = "The other party: a SIP URI (its user part is kept) or a number; at most 64 printable characters"),
    ),
    responses(
        (status = 200, description = "Taken (or ignored as late); empty body"),
        (status = 400, description = "Unknown event, or a query over 2 KiB"),
        (status = 403, description = "The source is banned by the scan guard and proved nothing"),
        (status = 404, description = "No handset has this event token (or none was given)"),
    ),
    security(())
)]
#[allow(dead_code)]
fn phone_event() {}

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}
