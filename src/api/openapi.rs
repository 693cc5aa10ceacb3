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
        phone_event, phone_xml_event,
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
calling (outgoing), established, held, resumed, ended, missed (an unanswered incoming call: ends it as ended does), \
dnd-on, dnd-off, forward-on, forward-off. Each updates Handset Status and Handset Select's status text; an event of a call already ended, or of an earlier stage than its call \
reached (ringing after established), is ignored and still answered 200. A wrong or missing token is 404 and counts \
as a scan-guard miss (a source with too many distinct misses is banned: 403).",
    params(
        ("eventtoken" = String, Path, description = "The handset's event token (24 letters and digits)"),
        ("event" = String, Path, description = "registered, unregistered, ringing, calling, established, held, resumed, ended, missed, dnd-on, dnd-off, forward-on or forward-off"),
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

/// Phones that report their calls as XML notifications (profile
/// `[events.xml]`) POST them to one URL per handset; served by
/// `provision::http` beside `phone_event`. The body's example is the
/// profiles' (see [`document`]).
#[utoipa::path(
    post,
    path = "/ev/{eventtoken}/xml",
    tag = "phone events",
    summary = "A phone reports its events as an XML notification",
    description = "Called by the phone, not by API clients: HTTP or HTTPS, no Basic auth; the secret is the handset's \
event token in the path. The body is the phone's XML notification (at most 16 KiB): each element under the root (and the \
root itself) that a vendor profile's [events.xml] rules name is one event, in document order (for instance \
IncomingCallEvent is ringing, OutgoingCallEvent calling, CallStateChangeEvent with CallState Connected, Hold or \
Disconnected is established, held or ended), the other party taken from the element the rule names; other elements \
are ignored. Events update Handset Status and Select as GET /ev/{eventtoken}/{event} does. A wrong or missing token \
is 404 and a scan-guard miss, whatever the body.",
    params(
        ("eventtoken" = String, Path, description = "The handset's event token (24 letters and digits)"),
    ),
    request_body(
        content = String,
        content_type = "application/xml",
        description = "The phone's XML notification (text/xml is taken alike; the content type is not checked)"
    ),
    responses(
        (status = 200, description = "Taken (events the rules do not name, or late ones, are ignored); empty body"),
        (status = 400, description = "The body is not XML (UTF-8)"),
        (status = 403, description = "The source is banned by the scan guard and proved nothing"),
        (status = 404, description = "No handset has this event token (or none was given)"),
        (status = 413, description = "The body is over 16 KiB"),
    ),
    security(())
)]
#[allow(dead_code)]
fn phone_xml_event() {}

/// The document as served: [`ApiDoc`] with what only the vendor profiles
/// know, the example of the XML notifications' body (the first built-in
/// profile's `[events.xml] example`).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let profiles = crate::profiles::Profiles::built_in();
    let example = profiles.iter().find_map(|p| p.events.xml.as_ref().and_then(|x| x.example.clone()));
    let body = doc
        .paths
        .paths
        .get_mut("/ev/{eventtoken}/xml")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.request_body.as_mut());
    if let (Some(example), Some(utoipa::openapi::RefOr::T(body))) = (example, body) {
        for content in body.content.values_mut() {
            if let utoipa::openapi::RefOr::T(content) = content {
                content.example = Some(serde_json::Value::String(example.trim_start().to_string()));
            }
        }
    }
    doc
}

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}
