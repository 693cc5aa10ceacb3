//! `autoprov db|domain|user …`: administration on the server's database.

use std::io::BufRead;

use super::{DomainCommand, UserCommand};
use crate::config::Settings;
use crate::model::domain::parse_sip_server;
use crate::model::user::parse_login;
use crate::model::{DomainChanges, Role, Secret, Transport};
use crate::store::{Actor, Store};

async fn open(settings: &Settings) -> anyhow::Result<Store> {
    Ok(Store::open(&settings.database_url).await?)
}

pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = open(settings).await?;
    store.close().await;
    println!("Database {} is up to date", crate::store::redact_url(&settings.database_url));
    Ok(())
}

/// Settings were read and checked on the way here (a bad value stops the
/// command line); what is left are the files they name.
pub fn check_config(settings: &Settings) -> anyhow::Result<()> {
    let profiles = crate::profiles::Profiles::load(settings.profiles_dir.as_deref())?;
    println!("Profiles: {} families", profiles.iter().count());
    println!("{}", crate::tls::check(settings)?);
    if let Some(ca) = &settings.sip_tls_ca {
        crate::sip::TlsClient::new(Some(ca))?;
        println!("SIP TLS CAs: {}", ca.display());
    }
    println!("Database: {} (not opened)", crate::store::redact_url(&settings.database_url));
    println!("Configuration OK");
    Ok(())
}

pub async fn backup(settings: &Settings, file: &std::path::Path) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let sqlite = store.backend() == crate::store::Backend::Sqlite;
    if sqlite {
        crate::files::create_private_new(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    }
    let path = file.to_str().ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 path", file.display()))?;
    let copied = store.backup_into(path).await;
    store.close().await;
    if copied.is_err() && sqlite {
        // Leave no empty or half-written copy behind to be mistaken for a backup.
        let _ = std::fs::remove_file(file);
    }
    copied?;
    println!("Database copied to {}", file.display());
    Ok(())
}

pub async fn domain(settings: &Settings, command: DomainCommand) -> anyhow::Result<()> {
    let store = open(settings).await?;
    match command {
        DomainCommand::Add { name, sip_server, transport } => {
            let (host, port) = parse_sip_server(&sip_server)?;
            let changes = DomainChanges {
                sip_server: Some(host),
                sip_port: port,
                sip_transport: Some(Transport::parse("transport", &transport)?),
                ..Default::default()
            };
            let d = store.create_domain(&Actor::cli(), &name, &changes).await?;
            println!("Created domain {} (SIP server {}:{} over {})", d.name, d.sip_server, d.sip_port, d.sip_transport.as_str());
        }
        DomainCommand::List => {
            println!("{:<24} {:<32} {:>5} {:<9} TIME ZONE", "DOMAIN", "SIP SERVER", "PORT", "TRANSPORT");
            for d in store.list_domains().await? {
                println!("{:<24} {:<32} {:>5} {:<9} {}", d.name, d.sip_server, d.sip_port, d.sip_transport.as_str(), d.timezone);
            }
        }
        DomainCommand::Url { name, host, rotate, grace_hours } => {
            let d = if rotate {
                let grace = crate::model::access::parse_grace_hours(grace_hours)?;
                store.rotate_provisioning_token(&Actor::cli(), &name, grace).await?
            } else {
                store.domain_by_name(&name).await?.ok_or_else(|| anyhow::anyhow!("domain {name} not found"))?
            };
            let urls = crate::service::domains::ProvisioningUrls {
                public_url: settings.public_base(),
                http_port: settings.http_listen.addr().map(|a| a.port()),
                https_port: settings.https_listen.addr().map(|a| a.port()),
                tftp_port: settings.tftp_listen.addr().map(|a| a.port()),
                prefix: settings.prefix(),
                prefer_https: settings.sends_phones_to_https(),
            };
            let host = host.unwrap_or_else(|| "localhost".into());
            let (preferred, each) = urls.for_token(&host, d.access.token.expose());
            println!("{preferred}");
            for (scheme, url) in each.iter().filter(|(_, u)| **u != preferred) {
                eprintln!("{scheme:>5}: {url}");
            }
            if !d.access.require_token {
                eprintln!("(requiretoken is off: the domain's phones are also served at the bare URL)");
            }
        }
    }
    store.close().await;
    Ok(())
}

pub async fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let store = open(settings).await?;
    match command {
        UserCommand::Add { login, superuser, role, password_stdin } => {
            let (name, domain) = parse_login(&login)?;
            let role = Role::parse(&role)?;
            let (password, generated) = password(password_stdin)?;
            let hash = crate::auth::password::hash(&password);
            let u = store.create_user(&Actor::cli(), &name, &domain, role, superuser, &hash).await?;
            println!("Created {} ({}{})", u.login(), u.role.as_str(), if u.superuser { ", superuser" } else { "" });
            if generated {
                println!("Password: {}", password.expose());
            }
        }
        UserCommand::List => {
            println!("{:<40} {:<9} SUPERUSER", "USER", "ROLE");
            for u in store.list_users().await? {
                println!("{:<40} {:<9} {}", u.login(), u.role.as_str(), if u.superuser { "yes" } else { "no" });
            }
        }
        UserCommand::Passwd { login, password_stdin } => {
            let (name, domain) = parse_login(&login)?;
            let (password, generated) = password(password_stdin)?;
            store.set_user_password(&Actor::cli(), &name, &domain, &crate::auth::password::hash(&password)).await?;
            println!("Password of {name}@{domain} changed");
            if generated {
                println!("Password: {}", password.expose());
            }
        }
    }
    store.close().await;
    Ok(())
}

/// The password from stdin's first line, or a generated one.
fn password(from_stdin: bool) -> anyhow::Result<(Secret, bool)> {
    if !from_stdin {
        return Ok((Secret::generate(24), true));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = Secret::new(line.trim_end_matches(['\r', '\n']));
    crate::auth::password::check_strength(&p)?;
    Ok((p, false))
}
