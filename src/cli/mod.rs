//! The `autoprov` command line: `serve`, and the admin commands that work on
//! the same database with the same settings.

mod admin;
mod csv;
pub mod logging;
mod phones;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Settings, SettingsArgs};

#[derive(Parser, Debug)]
#[command(name = "autoprov", version, about = "Provisioning and auto-configuration server for SIP desk phones")]
#[command(
    after_help = "Settings come from built-in defaults, then the --config TOML file, then AUTOPROV_* environment variables, then flags.\nAUTOPROV_ADMIN_PASSWORD sets the first superuser's password on an empty database."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: phones over HTTP(S), the API over HTTPS.
    Serve,
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// Check the settings, the vendor profiles and the certificates (TLS,
    /// device CAs, SIP TLS CAs) without starting: exits non-zero with the
    /// reason. The database is not opened.
    CheckConfig,
    /// Copy the SQLite database to FILE (a new file, 0600) while the server
    /// runs; restore by putting the copy in place of autoprov.db with the
    /// server stopped. PostgreSQL: use pg_dump.
    Backup { file: std::path::PathBuf },
    /// Domains (tenants).
    #[command(subcommand)]
    Domain(DomainCommand),
    /// API users.
    #[command(subcommand)]
    User(UserCommand),
    /// List vendor families, their models and the files phones ask for.
    Profiles,
    /// Print exactly the bytes a phone would receive (installers' preview).
    Render {
        /// The phone's MAC, in any usual spelling.
        mac: String,
        /// The file name the phone asks for [default: its family's
        /// per-phone file].
        file: Option<String>,
        /// The base URL the phone used [default: the public URL, else
        /// http://localhost:<HTTP port>/].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Phones that fetched their files.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Import handsets from CSV (all rows are checked first; any error: nothing written).
    Import {
        file: std::path::PathBuf,
        #[arg(long, default_value = "default")]
        domain: String,
        /// Check only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Update extensions that exist (else they are errors).
        #[arg(long)]
        update: bool,
    },
    /// Write a domain's handsets as CSV to standard output (passwords included).
    Export {
        #[arg(long, default_value = "default")]
        domain: String,
    },
    /// Queue a resync NOTIFY for a handset (the server's push worker sends it).
    Notify {
        extension: String,
        /// Use the vendor's reboot event.
        #[arg(long)]
        reboot: bool,
        #[arg(long, default_value = "default")]
        domain: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Give a phone (by MAC) to an extension; creates the handset if the
    /// domain allows claims to create. A push goes out.
    Claim {
        mac: String,
        extension: String,
        #[arg(long, default_value = "default")]
        domain: String,
        /// The model [default: what the phone reported].
        #[arg(long)]
        model: Option<String>,
    },
    /// List devices: unknown ones (no handset has their MAC), or a domain's.
    List {
        #[arg(long, value_name = "known|unknown", default_value = "unknown")]
        state: String,
        /// The domain whose known devices to list.
        #[arg(long, default_value = "default")]
        domain: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Apply pending migrations and exit.
    Migrate,
}

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Create a domain.
    Add {
        name: String,
        /// The SIP server its phones register with, HOST[:PORT].
        #[arg(long, value_name = "HOST[:PORT]")]
        sip_server: String,
        #[arg(long, value_name = "udp|tcp|tls", default_value = "udp")]
        transport: String,
    },
    /// List domains.
    List,
    /// Print the URL to give a domain's phones (it carries the domain's
    /// provisioning token); --rotate draws a new token first.
    Url {
        #[arg(default_value = "default")]
        name: String,
        /// The host name phones reach this server by [default: the public
        /// URL's, else localhost].
        #[arg(long)]
        host: Option<String>,
        /// Draw a new token; the old one keeps working for --grace-hours.
        #[arg(long)]
        rotate: bool,
        #[arg(long, value_name = "HOURS", default_value_t = 168, requires = "rotate")]
        grace_hours: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an API user; prints a generated password unless --password-stdin.
    Add {
        /// NAME@DOMAIN
        login: String,
        /// May act in every domain.
        #[arg(long)]
        superuser: bool,
        #[arg(long, value_name = "admin|platform|readonly", default_value = "admin")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List API users.
    List,
    /// Set a user's password; prints a generated one unless --password-stdin.
    Passwd {
        /// NAME@DOMAIN
        login: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Runs the command line; errors end in one line on stderr and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let result = Settings::resolve(&cli.settings, &|k| std::env::var(k).ok()).map_err(anyhow::Error::from).and_then(|settings| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)?
            .block_on(run(cli.command, settings))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autoprov: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::serve(settings).await,
        Command::Db(DbCommand::Migrate) => admin::migrate(&settings).await,
        Command::Backup { file } => admin::backup(&settings, &file).await,
        Command::CheckConfig => admin::check_config(&settings),
        Command::Domain(c) => admin::domain(&settings, c).await,
        Command::User(c) => admin::user(&settings, c).await,
        Command::Profiles => phones::profiles(&settings),
        Command::Render { mac, file, url } => phones::render(&settings, &mac, file.as_deref(), url).await,
        Command::Device(DeviceCommand::List { state, domain }) => phones::devices(&settings, &state, &domain).await,
        Command::Device(DeviceCommand::Claim { mac, extension, domain, model }) => {
            phones::claim(&settings, &mac, &extension, &domain, model).await
        }
        Command::Import { file, domain, dry_run, update } => csv::import(&settings, &file, &domain, dry_run, update).await,
        Command::Export { domain } => csv::export(&settings, &domain).await,
        Command::Notify { extension, reboot, domain } => phones::notify(&settings, &extension, reboot, &domain).await,
    }
}
