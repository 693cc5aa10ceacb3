//! End-to-end tests: the real server on ephemeral loopback ports, driven over
//! real sockets. One test binary (every file directly under tests/ would be
//! a separate binary linking the whole crate), one module per feature.
//!
//! Tests register themselves (`e2e!`, `both_backends!` in `harness`) and run
//! here under libtest-mimic, which takes cargo test's usual arguments. Tests
//! that take a [`harness::Backend`] run twice, on SQLite and on PostgreSQL.
//! A test whose outside program (`peers`) is not installed is reported as
//! not run, and the run ends with the list of those tests and why; under
//! `AUTOPROV_TEST_REQUIRE_ALL=1` (`.ci/run`) such a test fails instead.

mod harness;
mod peers;

mod admin_ui;
mod api_auth;
mod api_handsets;
mod api_status_domain;
mod binary;
mod browser;
mod call_control;
mod claim;
mod cli;
mod csv;
mod fixtures;
mod formats;
mod hostile;
mod kept_files;
mod lifecycle;
mod monitoring;
mod nat_office;
mod netns;
mod nodes;
mod phone_config;
mod phone_events;
mod provisioning;
mod push;
mod reload;
mod sip_phone;
mod tftp;
mod tftp_client;
mod tftp_hostile;
mod time_zones;
mod vendor_formats;
mod vendor_truth;
mod zero_trust;

use std::io::Write;

fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let mut not_run = Vec::new();
    let mut trials: Vec<libtest_mimic::Trial> = Vec::new();
    let mut tests: Vec<&harness::E2e> = inventory::iter::<harness::E2e>().collect();
    tests.sort_by_key(|t| t.full_name());
    for test in tests {
        let name = test.full_name();
        let missing: Vec<String> = test.needs.iter().filter_map(|p| p.missing()).collect();
        let run = test.run;
        let trial = if missing.is_empty() {
            libtest_mimic::Trial::test(&name, move || run_test(run))
        } else if peers::require_all() {
            let why = missing.join("; ");
            libtest_mimic::Trial::test(&name, move || Err(format!("cannot run (AUTOPROV_TEST_REQUIRE_ALL=1): {why}").into()))
        } else {
            if selected(&args, &name) {
                not_run.push((name.clone(), missing.join("; ")));
            }
            libtest_mimic::Trial::test(&name, || Err("not run: an outside program is missing".into())).with_ignored_flag(true)
        };
        trials.push(trial);
    }
    let conclusion = libtest_mimic::run(&args, trials);
    peers::shutdown();
    if !not_run.is_empty() && !args.list {
        // Straight to the terminal: this must be seen without --nocapture.
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\n{} end-to-end test(s) NOT RUN (an outside program is missing):", not_run.len());
        for (name, why) in &not_run {
            let _ = writeln!(err, "  {name}: {why}");
        }
        let _ = writeln!(err);
    }
    conclusion.exit_code()
}

/// Whether `name` is selected by the command line's filter (as libtest
/// selects: a substring, or the exact name with `--exact`).
fn selected(args: &libtest_mimic::Arguments, name: &str) -> bool {
    let skipped = args.skip.iter().any(|s| if args.exact { name == s } else { name.contains(s.as_str()) });
    let kept = match &args.filter {
        None => true,
        Some(f) if args.exact => name == f,
        Some(f) => name.contains(f.as_str()),
    };
    kept && !skipped && !args.ignored
}

/// The longest a test may run; the slowest (50,000 CSV rows on a loaded
/// two-core machine) takes about two minutes.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(480);

/// Runs one test on its own multi-threaded runtime, as `#[tokio::test]`
/// would, turning a panic into the test's failure.
fn run_test(run: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) -> Result<(), libtest_mimic::Failed> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
    // A test that hangs fails after TEST_LIMIT instead of holding the
    // whole suite (and CI) until it is killed.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            if tokio::time::timeout(TEST_LIMIT, run()).await.is_err() {
                panic!("no result after {} s: the test hung", TEST_LIMIT.as_secs());
            }
        })
    }));
    // Servers a failed test left running must not hold its runtime up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    outcome.map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the test panicked".into());
        message.into()
    })
}
