//! Devices: every phone that asked for its per-phone file, known (served as
//! a handset) or not, with what its last fetch said.

/// A device as its last fetch left it (the API's device record).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Device {
    pub mac: String,
    /// The handset it was served as (`None`: unknown).
    pub extensionnumber: Option<String>,
    /// The address of its last fetch.
    pub ip: String,
    pub useragent: String,
    pub vendor: String,
    pub model: String,
    pub firmware: String,
    pub lastfile: String,
    pub protocol: String,
    /// The revision it last fetched (known phones).
    pub revision: Option<i64>,
    /// Unix milliseconds.
    pub firstseen: i64,
    pub lastseen: i64,
    pub fetchcount: i64,
    /// The domain whose token the phone last fetched under.
    #[serde(skip)]
    pub token_domain_id: Option<i64>,
}

impl Device {
    /// Whether a user of `domain_id` may see (and claim) this unknown phone:
    /// it came under the domain's token, or from one of its site networks.
    pub fn visible_to(&self, domain_id: i64, networks: &[ipnet::IpNet]) -> bool {
        self.token_domain_id == Some(domain_id)
            || self.ip.parse::<std::net::IpAddr>().is_ok_and(|ip| networks.iter().any(|n| n.contains(&ip)))
    }
}

/// One row of a domain's audit log: who changed what (field names, never
/// values), when, from where.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub extensionnumber: Option<String>,
    pub client_ip: String,
    /// The changed fields' names, comma-separated.
    pub fields: String,
}
