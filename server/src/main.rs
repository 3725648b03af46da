//! The `basalt` binary: parse the command line, read settings, and run a command.
//! `serve` (the default) starts the server through the same `App::build` the tests use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use basalt_server::config::{self, CONFIG_ENV, KEYS, Layers, Settings};
use basalt_server::db::Db;
use basalt_server::{App, telemetry};
use clap::{Arg, ArgMatches, Command};
use tokio::signal::unix::{SignalKind, signal};

fn cli() -> Command {
    let mut cmd = Command::new("basalt")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Basalt: a self-hostable backend-as-a-service in one binary.")
        .after_help(
            "Every setting can also come from a BASALT_* environment variable or basalt.toml.\n\
             Precedence: defaults < basalt.toml < environment < flags.",
        )
        .subcommand(Command::new("serve").about("Run the server (the default command)"))
        .subcommand(Command::new("migrate").about("Apply pending system migrations and exit"))
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .global(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("Config file [env: BASALT_CONFIG] [default: ./basalt.toml if present]"),
        );
    for key in KEYS {
        cmd = cmd.arg(
            Arg::new(key.name)
                .long(key.flag.trim_start_matches("--"))
                .value_name("VALUE")
                .global(true)
                .help(format!("{} [env: {}]", key.help, key.env)),
        );
    }
    cmd
}

fn settings(matches: &ArgMatches) -> Result<Settings, config::ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = matches.get_one::<PathBuf>("config").cloned().or_else(|| {
        env.get(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let flags = KEYS
        .iter()
        .filter_map(|key| Some((key.name, matches.get_one::<String>(key.name)?.clone())));
    Layers::default()
        .file(file.as_deref())?
        .env(&env)
        .flags(flags)
        .resolve()
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    let settings = match settings(&matches) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("basalt: error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = telemetry::init_logging(&settings) {
        eprintln!("basalt: error: {err}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("basalt: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match matches.subcommand_name() {
            Some("migrate") => migrate(settings).await,
            _ => serve(settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Our error messages already name their cause; `{:#}` would repeat it.
            eprintln!("basalt: error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings).await?;
    let shutdown = app.shutdown_token();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "signal received; a second one stops at once");
        shutdown.cancel();
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    app.run_until_stopped().await
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database, 1).await?;
    let applied = db.migrate().await?;
    db.close().await?;
    println!(
        "applied {applied} migration(s) to {}",
        settings.database.redacted()
    );
    Ok(())
}
