//! The built-in templates (askama, compiled in) and their names as vendor
//! profiles refer to them. Per-phone templates see a [`PhoneContext`];
//! common (per-model or per-family) templates a [`CommonContext`].
//!
//! Key/value formats are rendered with `escape = "none"`: every value that
//! reaches them is validated to one line without control characters, and
//! extra settings are checked for the format by `render::settings`. XML
//! formats escape every value.

use askama::Template;

use super::{CommonContext, PhoneContext};

macro_rules! templates {
    ($( $name:literal => $ty:ident ( $ctx:ident, $escape:literal ) ),+ $(,)?) => {
        $(
            #[derive(Template)]
            #[template(path = $name, escape = $escape)]
            // A template may use nothing of its context (an empty directory).
            #[allow(dead_code)]
            struct $ty<'a> {
                c: &'a $ctx<'a>,
            }
        )+

        /// The names every profile may use.
        pub const NAMES: &[&str] = &[$($name),+];

        /// Renders per-phone template `name`; `None` if it is not a per-phone template.
        pub fn render_phone(name: &str, c: &PhoneContext<'_>) -> Option<askama::Result<String>> {
            $(
                if let (true, Some(t)) = (name == $name, templates!(@phone $ctx, $ty, c)) {
                    return Some(t.render());
                }
            )+
            None
        }

        /// Renders common template `name`; `None` if it is not a common template.
        pub fn render_common(name: &str, c: &CommonContext<'_>) -> Option<askama::Result<String>> {
            $(
                if let (true, Some(t)) = (name == $name, templates!(@common $ctx, $ty, c)) {
                    return Some(t.render());
                }
            )+
            None
        }

        /// Whether `name` takes a phone's record (else: a common file).
        pub fn is_per_phone(name: &str) -> bool {
            $( if name == $name { return templates!(@is_phone $ctx); } )+
            false
        }
    };
    (@phone PhoneContext, $ty:ident, $c:ident) => { Some($ty { c: $c }) };
    (@phone CommonContext, $ty:ident, $c:ident) => { None::<$ty> };
    (@common CommonContext, $ty:ident, $c:ident) => { Some($ty { c: $c }) };
    (@common PhoneContext, $ty:ident, $c:ident) => { None::<$ty> };
    (@is_phone PhoneContext) => { true };
    (@is_phone CommonContext) => { false };
}

templates! {
    "yealink/mac.cfg" => YealinkMac(PhoneContext, "none"),
    "yealink/common.cfg" => YealinkCommon(CommonContext, "none"),
    "polycom/mac.cfg" => PolycomMac(PhoneContext, "html"),
    "polycom/master.cfg" => PolycomMaster(CommonContext, "html"),
    "polycom/autoprov.cfg" => PolycomAutoprov(PhoneContext, "html"),
    "polycom/directory.xml" => PolycomDirectory(PhoneContext, "html"),
    "polycom/site-directory.xml" => PolycomSiteDirectory(CommonContext, "html"),
    "snom/mac.xml" => SnomMac(PhoneContext, "html"),
    "snom/common.xml" => SnomCommon(CommonContext, "html"),
    "cisco/mac.xml" => CiscoMac(PhoneContext, "html"),
    "cisco/common.xml" => CiscoCommon(CommonContext, "html"),
    "grandstream/mac.xml" => GrandstreamMac(PhoneContext, "html"),
    "grandstream/common.xml" => GrandstreamCommon(CommonContext, "html"),
    "fanvil/mac.cfg" => FanvilMac(PhoneContext, "none"),
    "fanvil/common.cfg" => FanvilCommon(CommonContext, "none"),
}

pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}
