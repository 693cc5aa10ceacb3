//! Settings: built-in defaults < TOML file (`--config`) < environment
//! (`AUTOPROV_*`) < command-line flags. clap reads the last two (a flag wins
//! over its environment variable); the file and the defaults fill the rest.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::model::Secret;

/// A listener address, or `off` to disable the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.trim().parse().map(Listen::On).map_err(|_| format!("{s:?} is not ip:port (as 0.0.0.0:8443 or [::]:8443) or off"))
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Listen {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::On(a) => Some(a),
        }
    }
}

/// The settings flags and environment can give; shared by every subcommand
/// so the CLI works on the same database as `serve`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SettingsArgs {
    /// TOML settings file (keys as the long flags, with '_' for '-').
    #[arg(long, global = true, env = "AUTOPROV_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the database, the self-signed certificate and the bootstrap
    /// admin password live [default: ./autoprov-data].
    #[arg(long, global = true, env = "AUTOPROV_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://FILE or postgres://USER:PASS@HOST/DB; plain DATABASE_URL is
    /// read too [default: sqlite://<data dir>/autoprov.db].
    #[arg(long, global = true, env = "AUTOPROV_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Plain HTTP listener for phones, or off [default: 0.0.0.0:8080].
    #[arg(long, global = true, env = "AUTOPROV_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<Listen>,
    /// HTTPS listener for phones, the API and the admin UI, or off
    /// [default: 0.0.0.0:8443].
    #[arg(long, global = true, env = "AUTOPROV_HTTPS_LISTEN", value_name = "ADDR")]
    pub https_listen: Option<Listen>,
    /// TFTP listener for phones, or off [default: 0.0.0.0:6969].
    #[arg(long, global = true, env = "AUTOPROV_TFTP_LISTEN", value_name = "ADDR")]
    pub tftp_listen: Option<Listen>,
    /// PEM certificate chain for HTTPS [default: self-signed, made in the
    /// data dir on first start].
    #[arg(long, global = true, env = "AUTOPROV_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, global = true, env = "AUTOPROV_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies (comma-separated CIDRs) whose X-Forwarded-Proto and
    /// X-Forwarded-For are believed [default: none].
    #[arg(long, global = true, env = "AUTOPROV_TRUSTED_PROXIES", value_name = "CIDRS", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// The base URL phones are told to come back to, as
    /// https://prov.example.com/ [default: the address the phone used].
    #[arg(long, global = true, env = "AUTOPROV_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// A path prefix under which phones' files are also served, as /prov
    /// [default: none; files are always served at the root].
    #[arg(long, global = true, env = "AUTOPROV_PROVISION_PREFIX", value_name = "PATH")]
    pub provision_prefix: Option<String>,
    /// A directory of vendor profile TOML files that replace or add to the
    /// built-in ones [default: built-in only].
    #[arg(long, global = true, env = "AUTOPROV_PROFILES_DIR", value_name = "DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// How many unknown devices are kept; the oldest are evicted
    /// [default: 10000].
    #[arg(long, global = true, env = "AUTOPROV_UNKNOWN_DEVICE_CAP", value_name = "N")]
    pub unknown_device_cap: Option<u32>,
    /// Minutes between a phone's own periodic config checks [default: 1440].
    #[arg(long, global = true, env = "AUTOPROV_RESYNC_MINUTES", value_name = "MIN")]
    pub resync_minutes: Option<u32>,
    /// The SIP socket pushes (NOTIFY) are sent from, or off to send none
    /// [default: 0.0.0.0:5070].
    #[arg(long, global = true, env = "AUTOPROV_SIP_LISTEN", value_name = "ADDR")]
    pub sip_listen: Option<Listen>,
    /// NOTIFYs per second at most; 0 lifts the limit [default: 200].
    #[arg(long, global = true, env = "AUTOPROV_PUSH_RATE", value_name = "N")]
    pub push_rate: Option<u32>,
    /// Attempts before a push is failed [default: 5].
    #[arg(long, global = true, env = "AUTOPROV_PUSH_ATTEMPTS", value_name = "N")]
    pub push_attempts: Option<u32>,
    /// Hold all pushes: queue them but send nothing [default: false].
    #[arg(long, global = true, env = "AUTOPROV_PUSH_HOLD", value_name = "BOOL")]
    pub push_hold: Option<bool>,
    /// Distinct unknown MACs (or wrong tokens or credentials) one address
    /// may ask for within the scan window before it is banned [default: 20].
    #[arg(long, global = true, env = "AUTOPROV_SCAN_THRESHOLD", value_name = "N")]
    pub scan_threshold: Option<u32>,
    /// The scan guard's window, as 10m or 1h [default: 10m].
    #[arg(long, global = true, env = "AUTOPROV_SCAN_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    pub scan_window: Option<std::time::Duration>,
    /// How long a scanning address is banned [default: 15m].
    #[arg(long, global = true, env = "AUTOPROV_SCAN_BAN", value_name = "DURATION", value_parser = parse_duration)]
    pub scan_ban: Option<std::time::Duration>,
    /// Tell phones that came over HTTP or TFTP to come back over HTTPS: auto
    /// (when tls_cert is an operator's certificate, which phones can trust;
    /// never with the self-signed one), on, or off [default: auto].
    #[arg(long, global = true, env = "AUTOPROV_HTTPS_UPGRADE", value_name = "auto|on|off")]
    pub https_upgrade: Option<HttpsUpgrade>,
    /// The vendors' device-issuing CA certificates (a PEM file, or a
    /// directory of them): the HTTPS listener then asks phones for their
    /// device certificate [default: none].
    #[arg(long, global = true, env = "AUTOPROV_CLIENT_CA", value_name = "FILE|DIR")]
    pub client_ca: Option<PathBuf>,
}

/// Whether phones are sent to HTTPS (see [`SettingsArgs::https_upgrade`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpsUpgrade {
    #[default]
    Auto,
    On,
    Off,
}

impl FromStr for HttpsUpgrade {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(HttpsUpgrade::Auto),
            "on" | "true" | "yes" => Ok(HttpsUpgrade::On),
            "off" | "false" | "no" => Ok(HttpsUpgrade::Off),
            _ => Err(format!("{s:?} is not auto, on or off")),
        }
    }
}

impl<'de> Deserialize<'de> for HttpsUpgrade {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration such as 10m or 1h: {e}"))
}

/// A duration in the TOML file, written as 10m or 1h.
#[derive(Clone, Copy, Debug)]
struct FileDuration(std::time::Duration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_duration(&String::deserialize(d)?).map(FileDuration).map_err(serde::de::Error::custom)
    }
}

/// The TOML file: the same keys as [`SettingsArgs`].
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    http_listen: Option<Listen>,
    https_listen: Option<Listen>,
    tftp_listen: Option<Listen>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trusted_proxies: Option<Vec<IpNet>>,
    public_url: Option<String>,
    provision_prefix: Option<String>,
    profiles_dir: Option<PathBuf>,
    unknown_device_cap: Option<u32>,
    resync_minutes: Option<u32>,
    sip_listen: Option<Listen>,
    push_rate: Option<u32>,
    push_attempts: Option<u32>,
    push_hold: Option<bool>,
    scan_threshold: Option<u32>,
    scan_window: Option<FileDuration>,
    scan_ban: Option<FileDuration>,
    https_upgrade: Option<HttpsUpgrade>,
    client_ca: Option<PathBuf>,
}

/// Resolved settings; everything else reads these.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub http_listen: Listen,
    pub https_listen: Listen,
    pub tftp_listen: Listen,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
    /// `AUTOPROV_ADMIN_PASSWORD`: the bootstrap superuser's password. Only
    /// from the environment, never a flag (flags show in `ps`).
    pub admin_password: Option<Secret>,
    /// Base URL written into configs, ending in `/`.
    pub public_url: Option<String>,
    /// `/prov`-style prefix (no trailing `/`), or `None`.
    pub provision_prefix: Option<String>,
    pub profiles_dir: Option<PathBuf>,
    pub unknown_device_cap: u32,
    pub resync_minutes: u32,
    /// How often recorded fetches are written to the database.
    pub fetch_flush_interval: std::time::Duration,
    /// How often provisioning caches read the change feed for changes made
    /// by other processes or nodes.
    pub change_poll_interval: std::time::Duration,
    /// The provisioning scan guard: distinct misses per address in a
    /// window, and the ban.
    pub scan_policy: crate::guard::StrikePolicy,
    pub https_upgrade: HttpsUpgrade,
    pub client_ca: Option<PathBuf>,
    pub sip_listen: Listen,
    /// Pacing, retries and SIP timers of pushes.
    pub push: crate::push::PushPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Layers the file (if any) under the flags and environment.
    pub fn resolve(args: &SettingsArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./autoprov-data"));
        let database_url = args
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("autoprov.db").display()));
        let settings = Settings {
            database_url,
            http_listen: args.http_listen.or(file.http_listen).unwrap_or(Listen::On(([0, 0, 0, 0], 8080).into())),
            https_listen: args.https_listen.or(file.https_listen).unwrap_or(Listen::On(([0, 0, 0, 0], 8443).into())),
            tftp_listen: args.tftp_listen.or(file.tftp_listen).unwrap_or(Listen::On(([0, 0, 0, 0], 6969).into())),
            tls_cert: args.tls_cert.clone().or(file.tls_cert),
            tls_key: args.tls_key.clone().or(file.tls_key),
            trusted_proxies: args.trusted_proxies.clone().or(file.trusted_proxies).unwrap_or_default(),
            admin_password: std::env::var("AUTOPROV_ADMIN_PASSWORD").ok().filter(|s| !s.is_empty()).map(Secret::new),
            public_url: args.public_url.clone().or(file.public_url).map(normalise_public_url).transpose()?,
            provision_prefix: args
                .provision_prefix
                .clone()
                .or(file.provision_prefix)
                .map(normalise_prefix)
                .transpose()?
                .flatten(),
            profiles_dir: args.profiles_dir.clone().or(file.profiles_dir),
            unknown_device_cap: args.unknown_device_cap.or(file.unknown_device_cap).unwrap_or(10_000),
            resync_minutes: args.resync_minutes.or(file.resync_minutes).unwrap_or(1440).clamp(1, 44_640),
            fetch_flush_interval: std::time::Duration::from_secs(1),
            change_poll_interval: std::time::Duration::from_millis(500),
            scan_policy: crate::guard::StrikePolicy {
                threshold: args.scan_threshold.or(file.scan_threshold).unwrap_or(SCAN_POLICY.threshold).max(1),
                window: args.scan_window.or(file.scan_window.map(|d| d.0)).unwrap_or(SCAN_POLICY.window),
                ban: args.scan_ban.or(file.scan_ban.map(|d| d.0)).unwrap_or(SCAN_POLICY.ban),
                capacity: SCAN_POLICY.capacity,
            },
            https_upgrade: args.https_upgrade.or(file.https_upgrade).unwrap_or_default(),
            client_ca: args.client_ca.clone().or(file.client_ca),
            sip_listen: args.sip_listen.or(file.sip_listen).unwrap_or(Listen::On(([0, 0, 0, 0], 5070).into())),
            push: crate::push::PushPolicy {
                rate_per_second: args.push_rate.or(file.push_rate).unwrap_or(200),
                max_attempts: args.push_attempts.or(file.push_attempts).unwrap_or(5).max(1),
                hold: args.push_hold.or(file.push_hold).unwrap_or(false),
                ..Default::default()
            },
            data_dir,
        };
        if settings.tls_cert.is_some() != settings.tls_key.is_some() {
            return Err(ConfigError::Invalid("tls_cert and tls_key go together: give both or neither".into()));
        }
        Ok(settings)
    }

    /// Whether phones that came over HTTP or TFTP are told to come back
    /// over HTTPS: `auto` does when the certificate is the operator's (phones
    /// refuse the self-signed one).
    pub fn sends_phones_to_https(&self) -> bool {
        match self.https_upgrade {
            HttpsUpgrade::Auto => self.tls_cert.is_some(),
            HttpsUpgrade::On => true,
            HttpsUpgrade::Off => false,
        }
    }

    /// Defaults for a server in `data_dir` on loopback ephemeral ports: what
    /// tests and embedders start from.
    pub fn for_data_dir(data_dir: &Path) -> Settings {
        let any = Listen::On(([127, 0, 0, 1], 0).into());
        Settings {
            data_dir: data_dir.to_path_buf(),
            database_url: format!("sqlite://{}", data_dir.join("autoprov.db").display()),
            http_listen: any,
            https_listen: any,
            tftp_listen: any,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            admin_password: None,
            public_url: None,
            provision_prefix: None,
            profiles_dir: None,
            unknown_device_cap: 10_000,
            resync_minutes: 1440,
            fetch_flush_interval: std::time::Duration::from_millis(50),
            change_poll_interval: std::time::Duration::from_millis(100),
            scan_policy: SCAN_POLICY,
            https_upgrade: HttpsUpgrade::Auto,
            client_ca: None,
            sip_listen: any,
            push: crate::push::PushPolicy::default(),
        }
    }
}

/// The scan guard's defaults: more than 20 distinct misses from one address
/// within 10 minutes ban it for 15 minutes; at most 65,536 addresses are
/// tracked.
pub const SCAN_POLICY: crate::guard::StrikePolicy = crate::guard::StrikePolicy {
    threshold: 20,
    window: std::time::Duration::from_secs(10 * 60),
    ban: std::time::Duration::from_secs(15 * 60),
    capacity: 65_536,
};

/// `https://prov.example.com` → `https://prov.example.com/`; it goes into
/// phone configs verbatim, so only a plain http(s)/tftp URL is accepted.
fn normalise_public_url(url: String) -> Result<String, ConfigError> {
    let ok_scheme = ["http://", "https://", "tftp://"].iter().any(|s| url.starts_with(s));
    let ok_chars = url.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:/[]@%".contains(&b));
    if !ok_scheme || !ok_chars || url.len() > 200 {
        return Err(ConfigError::Invalid(format!("public_url {url:?} must be an http://, https:// or tftp:// URL")));
    }
    Ok(if url.ends_with('/') { url } else { format!("{url}/") })
}

/// `prov/` → `/prov`; `/` or empty → none.
fn normalise_prefix(prefix: String) -> Result<Option<String>, ConfigError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    if !trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b)) || trimmed.contains("..") {
        return Err(ConfigError::Invalid(format!("provision_prefix {prefix:?} must be a plain path such as /prov")));
    }
    Ok(Some(format!("/{trimmed}")))
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let err = |reason: String| ConfigError::File { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    toml::from_str(&text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert_eq!("off".parse::<Listen>().unwrap(), Listen::Off);
        assert_eq!("127.0.0.1:69".parse::<Listen>().unwrap().addr().unwrap().port(), 69);
        assert!("8080".parse::<Listen>().is_err());
    }

    #[test]
    fn file_sits_between_defaults_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autoprov.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/prov\"\nhttp_listen = \"off\"\nhttps_listen = \"127.0.0.1:9443\"\nscan_window = \"2m\"\nhttps_upgrade = \"off\"\n",
        )
        .unwrap();
        let args =
            SettingsArgs { config: Some(path), https_listen: Some("127.0.0.1:10443".parse().unwrap()), ..Default::default() };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/prov"));
        assert_eq!(s.http_listen, Listen::Off);
        assert_eq!(s.https_listen.addr().unwrap().port(), 10443);
        assert_eq!(s.tftp_listen.addr().unwrap().port(), 6969);
        assert_eq!(s.scan_policy.window, std::time::Duration::from_secs(120));
        assert_eq!(s.scan_policy.threshold, 20);
        assert_eq!(s.https_upgrade, HttpsUpgrade::Off);
        assert!(s.database_url == "sqlite:///srv/prov/autoprov.db" || std::env::var("DATABASE_URL").is_ok());
    }

    #[test]
    fn unknown_keys_in_the_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autoprov.toml");
        std::fs::write(&path, "htp_listen = \"off\"\n").unwrap();
        let err = Settings::resolve(&SettingsArgs { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("htp_listen"), "{err}");
    }
}
