//! Rendering a phone's files from its handset record, its domain and the
//! vendor profile: the askama templates in `templates/<family>/`.

pub mod templates;
#[cfg(test)]
mod vendor_tests;

/// Everything a per-phone template may use. Strings are validated before
/// they get here (one line, no control characters); XML templates escape
/// them, key/value templates write them as they are.
#[derive(Debug)]
pub struct PhoneContext<'a> {
    /// 12 lower-case hex digits, and the same upper-case.
    pub mac: &'a str,
    pub mac_upper: &'a str,
    /// The model from the handset record or the User-Agent; `""` if unknown.
    pub model: &'a str,
    pub extension: &'a str,
    /// The SIP authentication user (the extension).
    pub auth_user: &'a str,
    pub password: &'a str,
    /// The handset's name, or the extension when it has none.
    pub display_name: &'a str,
    /// The line key label (as the display name).
    pub label: &'a str,
    /// The caller ID for outgoing calls; `""` for the platform's default.
    pub outgoing_cli: &'a str,
    pub recording: bool,
    pub sip_server: &'a str,
    pub sip_port: u16,
    /// `udp`, `tcp` or `tls`.
    pub sip_transport: &'a str,
    /// IANA name, as `Europe/London`.
    pub timezone: &'a str,
    pub ntp_server: &'a str,
    /// Where the phone should fetch its files from, ending in `/`
    /// (as `https://prov.example.com/`).
    pub provisioning_url: &'a str,
    /// Periodic re-check of the config, in minutes.
    pub resync_minutes: u32,
    /// Random delay before a periodic or boot-time check, in seconds, so a
    /// site does not hit the server at once.
    pub resync_jitter_seconds: u32,
    /// The handset's revision, written into the file as a comment so that
    /// admins can see which one a phone has.
    pub revision: i64,
    /// The resync NOTIFY event the phone must accept.
    pub notify_event: &'a str,
    /// Extra vendor settings (domain < model < handset), validated for the
    /// vendor's format.
    pub settings: &'a [(String, String)],
}

/// Everything a common (per-family or per-model) file may use: the phone
/// is not known yet when it asks for these.
#[derive(Debug)]
pub struct CommonContext<'a> {
    /// The model named by the file (from its code or name); `""` if none.
    pub model: &'a str,
    /// The model code in the file name; `""` if none.
    pub code: &'a str,
    pub provisioning_url: &'a str,
    pub resync_minutes: u32,
    pub resync_jitter_seconds: u32,
    pub notify_event: &'a str,
}
