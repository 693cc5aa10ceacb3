//! `autoprov import|export`: a site's handsets as CSV.

use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::auth::Caller;
use crate::config::Settings;
use crate::handset_csv;
use crate::service::import::{ImportMode, ImportOutcome};
use crate::service::Service;
use crate::store::Store;

pub async fn import(settings: &Settings, file: &Path, domain: &str, dry_run: bool, update: bool) -> anyhow::Result<()> {
    // Opened once here so a missing file is named before the database is.
    std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let store = Store::open(&settings.database_url).await?;
    let result = import_into(&store, file, domain, dry_run, update).await;
    store.close().await;
    result
}

async fn import_into(store: &Store, file: &Path, domain: &str, dry_run: bool, update: bool) -> anyhow::Result<()> {
    let d = store.domain_by_name(domain).await?.ok_or_else(|| anyhow::anyhow!("domain {domain} not found"))?;
    let bar = std::io::stderr().is_terminal().then(indicatif::ProgressBar::hidden);
    let progress = |done: usize, total: usize| match &bar {
        Some(bar) => {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64)
        }
        None if done % 10_000 == 0 || done == total => eprintln!("imported {done}/{total}"),
        None => {}
    };
    // One process, one import: the queue is this run's alone.
    let service = Service::new(store.clone());
    let caller = Caller::cli(d.id, &d.name);
    let ticket = service.queue_import(&caller)?;
    let csv = std::sync::Arc::new(handset_csv::CsvFile::at(file));
    let outcome = service.import(&caller, ticket, csv, ImportMode { dry_run, update }, &progress).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match outcome {
        ImportOutcome::Refused(refused) => {
            for e in &refused.errors {
                eprintln!("line {}: {}", e.line, e.error);
            }
            if refused.unlisted() > 0 {
                eprintln!("… and {} more", refused.unlisted());
            }
            anyhow::bail!("{} row(s) refused; nothing was written", refused.total);
        }
        ImportOutcome::Checked(rows) => println!("{rows} row(s) checked; nothing written (--dry-run)"),
        ImportOutcome::Written(r) => {
            println!("{} created, {} updated, {} unchanged in {domain}", r.created, r.updated, r.unchanged)
        }
    }
    Ok(())
}

pub async fn export(settings: &Settings, domain: &str) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    let result = async {
        let d = store.domain_by_name(domain).await?.ok_or_else(|| anyhow::anyhow!("domain {domain} not found"))?;
        Ok::<_, anyhow::Error>(handset_csv::write(&store.domain_handsets(d.id).await?)?)
    }
    .await;
    store.close().await;
    std::io::stdout().write_all(&result?)?;
    Ok(())
}
