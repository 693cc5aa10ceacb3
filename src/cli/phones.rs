//! `autoprov profiles|render|device …`: what installers look at.

use std::io::Write;

use crate::auth::Caller;
use crate::config::{Listen, Settings};
use crate::model::Mac;
use crate::profiles::Profiles;
use crate::provision::{ProvisionPolicy, Provisioner};
use crate::service::Service;
use crate::store::devices::DeviceScope;
use crate::store::Store;

pub fn profiles(settings: &Settings) -> anyhow::Result<()> {
    let profiles = Profiles::load(settings.profiles_dir.as_deref())?;
    for p in profiles.iter() {
        println!("{} ({}): NOTIFY {:?}, SIP port {}, {}", p.family, p.vendor, p.notify_event, p.sip_port, p.source);
        for f in &p.files {
            let kind = if f.per_phone() { "per phone" } else { "common" };
            println!("  {:<28} {:<10} {}", f.name, kind, f.template);
        }
        let models: Vec<String> = p
            .models
            .iter()
            .map(|(name, m)| match &m.code {
                Some(code) => format!("{name}({code})"),
                None => name.clone(),
            })
            .collect();
        if !models.is_empty() {
            println!("  models: {}", models.join(" "));
        }
    }
    Ok(())
}

pub async fn render(settings: &Settings, mac: &str, file: Option<&str>, url: Option<String>) -> anyhow::Result<()> {
    let mac: Mac = mac.parse()?;
    let profiles = Profiles::load(settings.profiles_dir.as_deref())?;
    let store = Store::open(&settings.database_url).await?;
    // A preview asks for no proof: no Digest nonce is ever checked.
    let policy = ProvisionPolicy {
        scan: settings.scan_policy(),
        resync_minutes: settings.resync_minutes,
        come_back: Default::default(),
        // A preview keeps nothing.
        rendered_budget_bytes: 0,
    };
    // Nothing is counted: the metrics are the preview's own.
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(profiles.iter().map(|p| p.family.as_str())));
    let provisioner = Provisioner::new(store.clone(), profiles, policy, crate::model::Secret::generate(32), metrics);
    let base = url.or_else(|| settings.public_base()).unwrap_or_else(|| match settings.http_listen {
        Listen::On(a) => format!("http://localhost:{}/", a.port()),
        Listen::Off => "https://localhost/".into(),
    });
    let result = provisioner.preview(&mac, file, &base, false).await;
    store.close().await;
    let (file, served) = result.map_err(|e| anyhow::anyhow!("{mac}: {e}"))?;
    eprintln!("# {file} as served to a phone that used {base} ({} bytes, {})", served.body.len(), served.content_type);
    std::io::stdout().write_all(&served.body)?;
    Ok(())
}

pub async fn devices(settings: &Settings, state: &str, domain: &str) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    let scope = match state {
        "unknown" => DeviceScope::Unknown,
        "known" => {
            let d = store.domain_by_name(domain).await?.ok_or_else(|| anyhow::anyhow!("domain {domain} not found"))?;
            DeviceScope::Known(d.id)
        }
        _ => anyhow::bail!("--state must be known or unknown"),
    };
    println!(
        "{:<12} {:<10} {:<16} {:<12} {:<14} {:<24} {:>6} LAST SEEN",
        "MAC", "EXTENSION", "IP", "VENDOR", "MODEL", "FILE", "COUNT"
    );
    let mut after: Option<Mac> = None;
    loop {
        let page = store.list_devices(scope.clone(), after.as_ref(), 1000).await?;
        for d in &page {
            println!(
                "{:<12} {:<10} {:<16} {:<12} {:<14} {:<24} {:>6} {}",
                d.mac,
                d.extensionnumber.as_deref().unwrap_or("-"),
                d.ip,
                d.vendor,
                d.model,
                d.lastfile,
                d.fetchcount,
                crate::model::rfc3339(d.lastseen)
            );
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = last.mac.parse().ok(),
            _ => break,
        }
    }
    store.close().await;
    Ok(())
}

pub async fn notify(settings: &Settings, extension: &str, reboot: bool, domain: &str) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    let d = store.domain_by_name(domain).await?.ok_or_else(|| anyhow::anyhow!("domain {domain} not found"))?;
    let result = Service::new(store.clone()).resync(&Caller::cli(d.id, &d.name), extension, reboot).await;
    store.close().await;
    result?;
    println!("{} of {extension}@{domain} queued; the server's push worker sends it", if reboot { "Reboot" } else { "Resync" });
    Ok(())
}

pub async fn claim(settings: &Settings, mac: &str, extension: &str, domain: &str, model: Option<String>) -> anyhow::Result<()> {
    let mac: Mac = mac.parse()?;
    crate::model::validate_extension(extension)?;
    let store = Store::open(&settings.database_url).await?;
    let result = async {
        let d = store.domain_by_name(domain).await?.ok_or_else(|| anyhow::anyhow!("domain {domain} not found"))?;
        Ok::<_, anyhow::Error>(Service::new(store.clone()).claim(&Caller::cli(d.id, &d.name), mac, extension, model).await?)
    }
    .await;
    store.close().await;
    let view = result?;
    println!(
        "{mac} is now {extension}@{domain} ({}), revision {}; a push is queued",
        view.handset.model.as_deref().unwrap_or("model unknown"),
        view.handset.revision
    );
    Ok(())
}
