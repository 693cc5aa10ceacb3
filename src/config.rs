//! Settings: built-in defaults < TOML file (`--config`) < environment
//! (`AUTOPROV_*`) < command-line flags.
//!
//! Each setting is declared once, in [`settings!`] below: its flag and
//! environment variable (clap), its TOML key (serde), its type and its
//! default. The macro makes [`SettingsArgs`] (every setting optional: one
//! layer, read by clap from flags and environment or by serde from the
//! file) and [`Settings`] (every setting resolved), and the code between
//! them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::model::Secret;

/// Declares every setting once: `name: Type = default, "ENV_VAR", "VALUE";`
/// with its doc comment (the flag's help). Defaults may use the settings
/// resolved before them (`data_dir` for `database_url`) and read the
/// environment through the function named first (`env`).
macro_rules! settings {
    ($env_fn:ident; $(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr, $env:literal, $value:literal;
    )+) => {
        /// One layer of settings: what flags and environment (clap) or the
        /// TOML file (serde, the same keys with `_`) give; `None` leaves a
        /// setting to the layer below.
        #[derive(clap::Args, Deserialize, Clone, Debug, Default)]
        #[serde(deny_unknown_fields)]
        pub struct SettingsArgs {
            /// TOML settings file (keys as the long flags, with '_' for '-').
            #[arg(long, global = true, env = "AUTOPROV_CONFIG", value_name = "FILE")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])+
                #[arg(long, global = true, env = $env, value_name = $value)]
                pub $name: Option<$ty>,
            )+
        }

        /// Resolved settings; everything else reads these.
        #[derive(Clone, Debug)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
            /// `AUTOPROV_ADMIN_PASSWORD`: the bootstrap superuser's
            /// password. Only from the environment, never a flag (flags show
            /// in `ps`).
            pub admin_password: Option<Secret>,
            /// What is not a setting but tests shorten.
            pub tuning: Tuning,
        }

        impl SettingsArgs {
            /// This layer over `lower`.
            fn over(self, lower: SettingsArgs) -> SettingsArgs {
                SettingsArgs { config: self.config, $( $name: self.$name.or(lower.$name), )+ }
            }

            /// Fills every unset setting with its default.
            fn with_defaults(self, $env_fn: &dyn Fn(&str) -> Option<String>) -> Settings {
                $( let $name: $ty = match self.$name { Some(v) => v, None => $default }; )+
                Settings {
                    $( $name, )+
                    admin_password: $env_fn("AUTOPROV_ADMIN_PASSWORD").filter(|s| !s.is_empty()).map(Secret::new),
                    tuning: Tuning::default(),
                }
            }
        }
    };
}

settings! {
    env;
    /// Where the database, the self-signed certificate and the bootstrap
    /// admin password live [default: ./autoprov-data].
    data_dir: PathBuf = PathBuf::from("./autoprov-data"), "AUTOPROV_DATA_DIR", "DIR";
    /// sqlite://FILE or postgres://USER:PASS@HOST/DB; plain DATABASE_URL is
    /// read too [default: sqlite://<data dir>/autoprov.db].
    database_url: String = env("DATABASE_URL").filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("autoprov.db").display())), "AUTOPROV_DATABASE_URL", "URL";
    /// Plain HTTP listener for phones, or off [default: 0.0.0.0:8080].
    http_listen: Listen = Listen::On(([0, 0, 0, 0], 8080).into()), "AUTOPROV_HTTP_LISTEN", "ADDR";
    /// HTTPS listener for phones, the API and the admin UI, or off
    /// [default: 0.0.0.0:8443].
    https_listen: Listen = Listen::On(([0, 0, 0, 0], 8443).into()), "AUTOPROV_HTTPS_LISTEN", "ADDR";
    /// TFTP listener for phones, or off [default: 0.0.0.0:6969].
    tftp_listen: Listen = Listen::On(([0, 0, 0, 0], 6969).into()), "AUTOPROV_TFTP_LISTEN", "ADDR";
    /// PEM certificate chain for HTTPS [default: self-signed, made in the
    /// data dir on first start].
    tls_cert: Option<PathBuf> = None, "AUTOPROV_TLS_CERT", "FILE";
    /// PEM private key for HTTPS.
    tls_key: Option<PathBuf> = None, "AUTOPROV_TLS_KEY", "FILE";
    /// Reverse proxies (comma-separated CIDRs) whose X-Forwarded-Proto and
    /// X-Forwarded-For are believed [default: none].
    trusted_proxies: Cidrs = Cidrs::default(), "AUTOPROV_TRUSTED_PROXIES", "CIDRS";
    /// The base URL phones are told to come back to, as
    /// https://prov.example.com/ [default: the address the phone used].
    public_url: Option<PublicUrl> = None, "AUTOPROV_PUBLIC_URL", "URL";
    /// A path prefix under which phones' files are also served, as /prov
    /// [default: none; files are always served at the root].
    provision_prefix: Option<Prefix> = None, "AUTOPROV_PROVISION_PREFIX", "PATH";
    /// A directory of vendor profile TOML files that replace or add to the
    /// built-in ones [default: built-in only].
    profiles_dir: Option<PathBuf> = None, "AUTOPROV_PROFILES_DIR", "DIR";
    /// How many unknown devices are kept; the oldest are evicted
    /// [default: 10000].
    unknown_device_cap: u32 = 10_000, "AUTOPROV_UNKNOWN_DEVICE_CAP", "N";
    /// Minutes between a phone's own periodic config checks (1-44640)
    /// [default: 1440].
    resync_minutes: u32 = 1440, "AUTOPROV_RESYNC_MINUTES", "MIN";
    /// Memory for phones' files kept as rendered (with their ETags), in
    /// MiB; 0 keeps none. Phones beyond it are rendered on every fetch
    /// [default: 32].
    rendered_cache_mib: u32 = 32, "AUTOPROV_RENDERED_CACHE_MIB", "MIB";
    /// The SIP socket pushes (NOTIFY) are sent from, or off to send none
    /// [default: 0.0.0.0:5070].
    sip_listen: Listen = Listen::On(([0, 0, 0, 0], 5070).into()), "AUTOPROV_SIP_LISTEN", "ADDR";
    /// The monitoring listener: Prometheus metrics at /metrics, /healthz
    /// and /readyz over plain HTTP, or off [default: 127.0.0.1:9464].
    metrics_listen: Listen = Listen::On(([127, 0, 0, 1], 9464).into()), "AUTOPROV_METRICS_LISTEN", "ADDR";
    /// PEM CA certificates trusted for SIP over TLS to registrars, beside
    /// the public roots [default: none].
    sip_tls_ca: Option<PathBuf> = None, "AUTOPROV_SIP_TLS_CA", "FILE";
    /// NOTIFYs per second at most; 0 lifts the limit [default: 200].
    push_rate: u32 = 200, "AUTOPROV_PUSH_RATE", "N";
    /// Attempts before a push is failed [default: 5].
    push_attempts: u32 = 5, "AUTOPROV_PUSH_ATTEMPTS", "N";
    /// How long a push lease lasts unrenewed: a node renews its leases every
    /// third of this while it lives, so this is how soon another node takes
    /// over the pushes of one that died [default: 10s].
    push_lease: HumanDuration = HumanDuration(Duration::from_secs(10)), "AUTOPROV_PUSH_LEASE", "DURATION";
    /// The longest wait for a database connection: while the database is
    /// down, requests that need it are answered 503 after this long, not
    /// held [default: 2s].
    db_timeout: HumanDuration = HumanDuration(crate::store::DEFAULT_DB_TIMEOUT), "AUTOPROV_DB_TIMEOUT", "DURATION";
    /// Hold all pushes: queue them but send nothing [default: false].
    push_hold: bool = false, "AUTOPROV_PUSH_HOLD", "BOOL";
    /// Distinct unknown MACs (or wrong tokens or credentials) one address
    /// may ask for within the scan window before it is banned [default: 20].
    scan_threshold: u32 = 20, "AUTOPROV_SCAN_THRESHOLD", "N";
    /// The scan guard's window, as 10m or 1h [default: 10m].
    scan_window: HumanDuration = HumanDuration(Duration::from_secs(10 * 60)), "AUTOPROV_SCAN_WINDOW", "DURATION";
    /// How long a scanning address is banned [default: 15m].
    scan_ban: HumanDuration = HumanDuration(Duration::from_secs(15 * 60)), "AUTOPROV_SCAN_BAN", "DURATION";
    /// Tell phones that came over HTTP or TFTP to come back over HTTPS: auto
    /// (when tls_cert is an operator's certificate, which phones can trust;
    /// never with the self-signed one), on, or off [default: auto].
    https_upgrade: HttpsUpgrade = HttpsUpgrade::Auto, "AUTOPROV_HTTPS_UPGRADE", "auto|on|off";
    /// The vendors' device-issuing CA certificates (a PEM file, or a
    /// directory of them): the HTTPS listener then asks phones for their
    /// device certificate [default: none].
    client_ca: Option<PathBuf> = None, "AUTOPROV_CLIENT_CA", "FILE|DIR";
    /// HTTP(S) connections open at once from one client address (an office
    /// behind NAT is one address) [default: 256].
    connections_per_source: u32 = 256, "AUTOPROV_CONNECTIONS_PER_SOURCE", "N";
    /// HTTP(S) connections open at once in all; when all are taken the
    /// longest-idle one is closed for a new one [default: three quarters
    /// of the open-file limit, less a reserve].
    max_connections: Option<u32> = None, "AUTOPROV_MAX_CONNECTIONS", "N";
    /// Time a client has to send a request header, also for an idle
    /// keep-alive connection's next request [default: 20s].
    header_timeout: HumanDuration = HumanDuration(Duration::from_secs(20)), "AUTOPROV_HEADER_TIMEOUT", "DURATION";
    /// Time a client has to start sending a request body; every 500 bytes
    /// received add a second, up to 10 minutes in all [default: 20s].
    body_timeout: HumanDuration = HumanDuration(Duration::from_secs(20)), "AUTOPROV_BODY_TIMEOUT", "DURATION";
    /// TFTP transfers in flight at once, within a quarter of the open-file
    /// limit (each holds a socket); when all are taken, the one that has
    /// waited longest for its first ACK is ended for a new one
    /// [default: 4096].
    tftp_max_transfers: u32 = 4096, "AUTOPROV_TFTP_MAX_TRANSFERS", "N";
    /// TFTP transfers in flight from one client address (an office behind
    /// NAT is one address); more requests from it get no answer until one
    /// ends [default: 64].
    tftp_transfers_per_source: u32 = 64, "AUTOPROV_TFTP_TRANSFERS_PER_SOURCE", "N";
    /// The longest timeout a TFTP client may negotiate (RFC 2349 option,
    /// whole seconds); a longer one is not acknowledged and the 1 s default
    /// applies [default: 5s].
    tftp_max_timeout: HumanDuration = HumanDuration(Duration::from_secs(5)), "AUTOPROV_TFTP_MAX_TIMEOUT", "DURATION";
    /// CSV imports that check or write at once, over all domains; a
    /// domain's imports always take turns [default: 2].
    import_concurrency: u32 = 2, "AUTOPROV_IMPORT_CONCURRENCY", "N";
    /// CSV imports that may wait for their turn (being uploaded, or
    /// spooled on disk); one more is answered 503 [default: 16].
    import_queue: u32 = 16, "AUTOPROV_IMPORT_QUEUE", "N";
    /// Let tenants point webhook relays and AMI at loopback, link-local,
    /// multicast or this server's own addresses (test rigs, a relay on the
    /// same host) [default: false].
    allow_internal_targets: bool = false, "AUTOPROV_ALLOW_INTERNAL_TARGETS", "BOOL";
}

/// What is not a setting: intervals and timers tests shorten.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// How often recorded fetches are written to the database.
    pub fetch_flush_interval: Duration,
    /// How often provisioning caches read the change feed for changes made
    /// by other processes or nodes.
    pub change_poll_interval: Duration,
    /// The first push retry waits this long, each next one twice as long.
    pub push_retry_base: Duration,
    /// SIP timers of pushes.
    pub sip_timers: crate::sip::Timers,
    /// TFTP's timeout when a client negotiates none (RFC 1350 leaves it to
    /// the server).
    pub tftp_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            fetch_flush_interval: Duration::from_secs(1),
            change_poll_interval: Duration::from_millis(500),
            push_retry_base: crate::push::PushPolicy::default().retry_base,
            sip_timers: crate::sip::Timers::default(),
            tftp_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Layers the file (if any) under the flags and environment, reading
    /// the environment's extras (`DATABASE_URL`, `AUTOPROV_ADMIN_PASSWORD`)
    /// through `env`.
    pub fn resolve(args: &SettingsArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => SettingsArgs::default(),
        };
        let settings = args.clone().over(file).with_defaults(env);
        if settings.tls_cert.is_some() != settings.tls_key.is_some() {
            return Err(ConfigError::Invalid("tls_cert and tls_key go together: give both or neither".into()));
        }
        if !(1..=44_640).contains(&settings.resync_minutes) {
            return Err(ConfigError::Invalid("resync_minutes must be 1 to 44640 (a month)".into()));
        }
        Ok(settings)
    }

    /// Defaults for a server in `data_dir` on loopback ephemeral ports, with
    /// short intervals: what tests and embedders start from.
    pub fn for_data_dir(data_dir: &Path) -> Settings {
        let any = Listen::On(([127, 0, 0, 1], 0).into());
        let layer = SettingsArgs {
            data_dir: Some(data_dir.to_path_buf()),
            http_listen: Some(any),
            https_listen: Some(any),
            tftp_listen: Some(any),
            sip_listen: Some(any),
            metrics_listen: Some(any),
            ..Default::default()
        };
        let mut s = layer.with_defaults(&|_| None);
        s.tuning.fetch_flush_interval = Duration::from_millis(50);
        s.tuning.change_poll_interval = Duration::from_millis(100);
        s
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

    /// The provisioning scan guard: distinct misses per address in a window,
    /// and the ban; at most 65,536 addresses are tracked.
    pub fn scan_policy(&self) -> crate::guard::StrikePolicy {
        crate::guard::StrikePolicy {
            threshold: self.scan_threshold.max(1),
            window: self.scan_window.0,
            ban: self.scan_ban.0,
            capacity: 65_536,
        }
    }

    pub fn push_policy(&self) -> crate::push::PushPolicy {
        crate::push::PushPolicy {
            rate_per_second: self.push_rate,
            max_attempts: self.push_attempts.max(1),
            retry_base: self.tuning.push_retry_base,
            timers: self.tuning.sip_timers,
            hold: self.push_hold,
            allow_internal_targets: self.allow_internal_targets,
            sip_tls_ca: self.sip_tls_ca.clone(),
            lease: self.push_lease.0,
        }
    }

    /// How many CSV imports run and wait.
    pub fn import_limits(&self) -> crate::service::import_queue::ImportLimits {
        crate::service::import_queue::ImportLimits {
            concurrency: (self.import_concurrency as usize).max(1),
            waiting: self.import_queue as usize,
        }
    }

    /// Where uploaded CSV files wait for their import.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// The public URL, if set, ending in `/`.
    pub fn public_base(&self) -> Option<String> {
        self.public_url.as_ref().map(|u| u.0.clone())
    }

    /// The path prefix (`/prov`), if set.
    pub fn prefix(&self) -> Option<String> {
        self.provision_prefix.as_ref().and_then(|p| p.0.clone())
    }
}

fn read_file(path: &Path) -> Result<SettingsArgs, ConfigError> {
    let err = |reason: String| ConfigError::File { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    toml::from_str(&text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))
}

/// Implements `Deserialize` through `FromStr`, so one value type serves
/// flags, environment and the TOML file alike.
macro_rules! from_str_deserialize {
    ($($t:ty),+) => {
        $(
            impl<'de> Deserialize<'de> for $t {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
                }
            }
        )+
    };
}

from_str_deserialize!(Listen, HttpsUpgrade, HumanDuration, PublicUrl, Prefix);

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

impl Listen {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::On(a) => Some(a),
        }
    }
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

/// A duration written as people write them: `10m`, `1h`, `90s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("{s:?} is not a duration such as 10m or 1h: {e}"))
    }
}

/// CIDRs: comma-separated in a flag or variable, an array in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<IpNet>);

impl FromStr for Cidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse::<IpNet>().map_err(|_| format!("{c:?} is not a CIDR such as 10.0.0.0/8")))
            .collect::<Result<_, _>>()
            .map(Cidrs)
    }
}

impl<'de> Deserialize<'de> for Cidrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Cidrs(Vec::<IpNet>::deserialize(d)?))
    }
}

/// The base URL written into configs, ending in `/`: only a plain
/// http(s)/tftp URL is accepted, since it goes into phone configs verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl(pub String);

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let ok_scheme = ["http://", "https://", "tftp://"].iter().any(|s| url.starts_with(s));
        let ok_chars = url.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:/[]@%".contains(&b));
        if !ok_scheme || !ok_chars || url.len() > 200 {
            return Err(format!("public_url {url:?} must be an http://, https:// or tftp:// URL"));
        }
        Ok(PublicUrl(if url.ends_with('/') { url.to_string() } else { format!("{url}/") }))
    }
}

/// A `/prov`-style prefix (no trailing `/`); `/` or empty is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(pub Option<String>);

impl FromStr for Prefix {
    type Err = String;

    fn from_str(prefix: &str) -> Result<Self, String> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Prefix(None));
        }
        if !trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b)) || trimmed.contains("..") {
            return Err(format!("provision_prefix {prefix:?} must be a plain path such as /prov"));
        }
        Ok(Prefix(Some(format!("/{trimmed}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

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
            "data_dir = \"/srv/prov\"\nhttp_listen = \"off\"\nhttps_listen = \"127.0.0.1:9443\"\nscan_window = \"2m\"\n\
             https_upgrade = \"off\"\ntrusted_proxies = [\"10.0.0.0/8\"]\ntftp_max_timeout = \"3s\"\n",
        )
        .unwrap();
        let args =
            SettingsArgs { config: Some(path), https_listen: Some("127.0.0.1:10443".parse().unwrap()), ..Default::default() };
        let s = Settings::resolve(&args, &no_env).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/prov"));
        assert_eq!(s.http_listen, Listen::Off);
        assert_eq!(s.https_listen.addr().unwrap().port(), 10443);
        assert_eq!(s.tftp_listen.addr().unwrap().port(), 6969);
        assert_eq!(s.scan_policy().window, Duration::from_secs(120));
        assert_eq!(s.scan_policy().threshold, 20);
        assert_eq!(s.https_upgrade, HttpsUpgrade::Off);
        assert_eq!(s.trusted_proxies.0, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        assert_eq!(s.database_url, "sqlite:///srv/prov/autoprov.db");
        assert_eq!(s.tftp_max_timeout.0, Duration::from_secs(3));
        assert_eq!((s.tftp_max_transfers, s.tftp_transfers_per_source), (4096, 64));
        assert_eq!(s.metrics_listen, Listen::On(([127, 0, 0, 1], 9464).into()), "loopback unless the operator says");
        let with_env = Settings::resolve(&args, &|k| (k == "DATABASE_URL").then(|| "postgres://db/x".to_string())).unwrap();
        assert_eq!(with_env.database_url, "postgres://db/x");
    }

    #[test]
    fn unknown_keys_in_the_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autoprov.toml");
        std::fs::write(&path, "htp_listen = \"off\"\n").unwrap();
        let err = Settings::resolve(&SettingsArgs { config: Some(path), ..Default::default() }, &no_env).unwrap_err();
        assert!(err.to_string().contains("htp_listen"), "{err}");
    }

    #[test]
    fn values_are_checked_where_they_are_read() {
        assert!("https://prov.example.com".parse::<PublicUrl>().unwrap().0.ends_with(".com/"));
        assert!("https://x\"><".parse::<PublicUrl>().is_err());
        assert_eq!("prov/".parse::<Prefix>().unwrap().0.as_deref(), Some("/prov"));
        assert_eq!("/".parse::<Prefix>().unwrap().0, None);
        assert!("../x".parse::<Prefix>().is_err());
        assert_eq!("10.0.0.0/8, 192.0.2.0/24".parse::<Cidrs>().unwrap().0.len(), 2);
        assert!("90s".parse::<HumanDuration>().is_ok() && "soon".parse::<HumanDuration>().is_err());
    }
}
