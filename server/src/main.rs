//! The `basalt` binary: parse the command line, read settings, and run a command.
//! `serve` (the default) starts the server through the same `App::build` the tests use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use basalt_server::config::{self, CONFIG_ENV, KEYS, Layers, Settings};
use basalt_server::db::Db;
use basalt_server::schema::Actor;
use basalt_server::{App, Core, telemetry};
use clap::{Arg, ArgMatches, Command};
use tokio::signal::unix::{SignalKind, signal};

/// mimalloc returns freed pages to the OS. With glibc's allocator, every 19 MiB
/// argon2 buffer raised the mmap threshold and then stayed resident per arena: an idle
/// server sat at ~200 MB after a few sign-ins, and a sign-in burst reached 900 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        .subcommand(Command::new("health").about(
            "Exit 0 if the server on `http` answers GET /api/health with 200 (for container healthchecks)",
        ))
        .subcommand(
            Command::new("superuser")
                .about("Manage superusers")
                .subcommand_required(true)
                .subcommand(
                    Command::new("upsert")
                        .about("Create a superuser, or set the password of an existing one")
                        .arg(Arg::new("email").required(true))
                        .arg(Arg::new("password").required(true)),
                )
                .subcommand(
                    Command::new("delete")
                        .about("Delete a superuser")
                        .arg(Arg::new("email").required(true)),
                ),
        )
        .subcommand(
            Command::new("schema")
                .about("Export or import the user schema as JSON")
                .subcommand_required(true)
                .subcommand(
                    Command::new("export")
                        .about("Write every user collection to FILE (- for stdout)")
                        .arg(Arg::new("file").required(true)),
                )
                .subcommand(
                    Command::new("import")
                        .about("Bring the schema to the collections in FILE (- for stdin)")
                        .arg(Arg::new("file").required(true))
                        .arg(
                            Arg::new("delete-missing")
                                .long("delete-missing")
                                .action(clap::ArgAction::SetTrue)
                                .help("Also delete user collections the file does not list"),
                        ),
                ),
        )
        .subcommand(
            Command::new("functions")
                .about("WASM functions")
                .subcommand_required(true)
                .subcommand(
                    Command::new("deploy")
                        .about("Deploy a component (a new version when NAME exists)")
                        .arg(Arg::new("file").required(true).help("The .wasm component"))
                        .arg(Arg::new("name").long("name").required(true).help("The function's name"))
                        .arg(
                            Arg::new("trigger")
                                .long("trigger")
                                .action(clap::ArgAction::Append)
                                .help("`http` or `{collection|*}.before-create|before-update|before-delete`; repeat for several"),
                        )
                        .arg(Arg::new("scopes").long("scopes").help(
                            "The service identity's scopes, as JSON: \"superuser\" or [{\"collection\": …, \"operations\": […]}]",
                        ))
                        .arg(Arg::new("limits").long("limits").help(
                            "Limits as JSON, e.g. {\"timeoutMs\": 500, \"memoryMb\": 32, \"outputKb\": 256, \"hostCalls\": 100}",
                        ))
                        .arg(Arg::new("filter").long("filter").help(
                            "After-event triggers fire only for records this filter matches, e.g. \"published = true\"",
                        ))
                        .arg(Arg::new("retries").long("retries").help(
                            "Retries of failed after-event calls as JSON, e.g. {\"maxAttempts\": 5, \"backoffMs\": 1000}",
                        ))
                        .arg(
                            Arg::new("schedule")
                                .long("schedule")
                                .action(clap::ArgAction::Append)
                                .help("A cron schedule (repeatable): \"*/5 * * * *\", or JSON {\"cron\": …, \"timezone\": \"Europe/Paris\", \"catchUp\": true}"),
                        )
                        .arg(
                            Arg::new("outbound")
                                .long("outbound")
                                .action(clap::ArgAction::Append)
                                .help("Where it may send HTTP requests (repeatable): https://api.example.com:443"),
                        )
                        .arg(
                            Arg::new("disabled")
                                .long("disabled")
                                .action(clap::ArgAction::SetTrue)
                                .help("Deploy it disabled"),
                        ),
                )
                .subcommand(Command::new("list").about("List the live functions")),
        )
        .subcommand(
            Command::new("graphql")
                .about("The GraphQL API")
                .subcommand_required(true)
                .subcommand(Command::new("schema").about(
                    "Print the GraphQL schema (SDL) as everyone but superusers sees it",
                )),
        )
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
    basalt_server::install_crypto_provider();
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
        match matches.subcommand() {
            Some(("migrate", _)) => migrate(settings).await,
            Some(("health", _)) => health(&settings).await,
            Some(("superuser", sub)) => superuser(settings, sub).await,
            Some(("schema", sub)) => schema(settings, sub).await,
            Some(("graphql", _)) => graphql_schema(settings).await,
            Some(("functions", args)) => functions(settings, args).await,
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
    // Handlers first: from the moment the server says it listens, a signal must mean
    // a graceful stop, not the default of dying on the spot.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    raise_open_files_limit();
    let app = App::build(settings).await?;
    let shutdown = app.shutdown_token();
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

/// Ask the server this configuration serves (`http`; a wildcard address is asked on
/// loopback) for `GET /api/health`, within 3 seconds. A container healthcheck runs
/// this, so the image needs no curl.
async fn health(settings: &Settings) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = settings.http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /api/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 32];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(
            String::from_utf8_lossy(head.get(..n).unwrap_or_default()).into_owned(),
        )
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within 3 s"))?
        .map_err(|e| anyhow::anyhow!("cannot reach {addr}: {e}"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status == "200" {
        println!("ok");
        Ok(())
    } else {
        anyhow::bail!("{addr} answered /api/health with {status:?}")
    }
}

/// Every realtime client holds a socket: lift the soft limit on open files to the hard
/// one (as Go and nginx do), so 10,000 clients don't stop at a default of 1,024.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(open_files = ?limit.maximum, "raised the open files limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open files limit"),
    }
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

fn arg<'a>(matches: &'a ArgMatches, name: &str) -> &'a str {
    matches.get_one::<String>(name).map_or("", String::as_str)
}

async fn superuser(settings: Settings, matches: &ArgMatches) -> anyhow::Result<()> {
    let core = Core::open(&settings).await?;
    let snapshot = core.schema.snapshot();
    match matches.subcommand() {
        Some(("upsert", args)) => {
            let email = arg(args, "email");
            let (_, created) = core
                .auth
                .upsert_superuser(&snapshot, email, arg(args, "password"))
                .await
                .map_err(|e| anyhow::anyhow!(describe_auth_error(e)))?;
            println!(
                "{} superuser {email}",
                if created { "created" } else { "updated" }
            );
        }
        Some(("delete", args)) => {
            let email = arg(args, "email");
            if !core.auth.delete_superuser(&snapshot, email).await? {
                anyhow::bail!("no superuser {email}");
            }
            println!("deleted superuser {email}");
        }
        _ => {}
    }
    core.db.close().await?;
    Ok(())
}

fn describe_auth_error(err: basalt_server::auth::AuthError) -> String {
    match err {
        basalt_server::auth::AuthError::Validation(errors) => errors
            .into_map()
            .into_iter()
            .map(|(field, e)| format!("{field}: {}", e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// `basalt graphql schema`: the SDL of the database's current schema.
async fn functions(settings: Settings, matches: &ArgMatches) -> anyhow::Result<()> {
    let core = Core::open(&settings).await?;
    match matches.subcommand() {
        Some(("deploy", args)) => {
            let path = arg(args, "file");
            let component =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
            let json = |name: &str| -> anyhow::Result<Option<serde_json::Value>> {
                args.get_one::<String>(name)
                    .map(|text| {
                        serde_json::from_str(text)
                            .map_err(|e| anyhow::anyhow!("--{name} is not JSON: {e}"))
                    })
                    .transpose()
            };
            let manifest = serde_json::json!({
                "name": arg(args, "name"),
                "triggers": args.get_many::<String>("trigger").map(|t| t.cloned().collect::<Vec<_>>()).unwrap_or_default(),
                "scopes": json("scopes")?,
                "limits": json("limits")?.unwrap_or_else(|| serde_json::json!({})),
                "enabled": !args.get_flag("disabled"),
                "filter": args.get_one::<String>("filter"),
                "retries": json("retries")?.unwrap_or_else(|| serde_json::json!({})),
                "schedules": args
                    .get_many::<String>("schedule")
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        if s.trim_start().starts_with('{') {
                            serde_json::from_str(s)
                                .map_err(|e| anyhow::anyhow!("--schedule is not JSON: {e}"))
                        } else {
                            Ok(serde_json::json!({"cron": s}))
                        }
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
                "outbound": args.get_many::<String>("outbound").map(|o| o.cloned().collect::<Vec<_>>()).unwrap_or_default(),
            });
            let manifest: basalt_server::functions::Manifest = serde_json::from_value(manifest)
                .map_err(|e| anyhow::anyhow!("the manifest: {e}"))?;
            let deployed = core
                .functions
                .deploy(manifest, component)
                .await
                .map_err(|e| {
                    let problem = e.problem();
                    let fields = problem.fields.into_map();
                    let details: Vec<String> = fields
                        .iter()
                        .map(|(field, e)| format!("{field}: {}", e.message))
                        .collect();
                    if details.is_empty() {
                        anyhow::anyhow!("{}", problem.message)
                    } else {
                        anyhow::anyhow!("{} {}", problem.message, details.join("; "))
                    }
                })?;
            println!(
                "deployed {} version {} ({} bytes; a running server picks it up within seconds)",
                deployed.name, deployed.version, deployed.size
            );
        }
        Some(("list", _)) => {
            core.functions.refresh().await?;
            let live = core.functions.live();
            let mut functions: Vec<_> = live.values().collect();
            functions.sort_by(|a, b| a.name.cmp(&b.name));
            for d in functions {
                println!(
                    "{}\tv{}\t{}\t{}",
                    d.name,
                    d.version,
                    if d.manifest.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    d.manifest.triggers.join(",")
                );
            }
        }
        _ => {}
    }
    core.db.close().await?;
    Ok(())
}

async fn graphql_schema(settings: Settings) -> anyhow::Result<()> {
    let core = Core::open(&settings).await?;
    let graphql =
        basalt_server::graphql::GraphqlService::new(core.records, core.schema, settings.graphql);
    let sdl = graphql.sdl().map_err(|p| anyhow::anyhow!(p.message))?;
    print!("{sdl}");
    Ok(())
}

async fn schema(settings: Settings, matches: &ArgMatches) -> anyhow::Result<()> {
    let core = Core::open(&settings).await?;
    match matches.subcommand() {
        Some(("export", args)) => {
            let text = serde_json::to_string_pretty(&core.schema.export())?;
            match arg(args, "file") {
                "-" => println!("{text}"),
                path => {
                    std::fs::write(path, format!("{text}\n"))
                        .map_err(|e| anyhow::anyhow!("cannot write {path}: {e}"))?;
                    eprintln!("exported the schema to {path}");
                }
            }
        }
        Some(("import", args)) => {
            let path = arg(args, "file");
            let text = if path == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?
            };
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{path} is not JSON: {e}"))?;
            // PocketBase exports a plain list; the import API wraps it in `collections`.
            let list = match &value {
                serde_json::Value::Array(list) => list.clone(),
                other => other
                    .get("collections")
                    .and_then(serde_json::Value::as_array)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("{path}: expected a list of collections"))?,
            };
            let changed = core
                .schema
                .import(&list, args.get_flag("delete-missing"), &Actor::Cli)
                .await
                .map_err(|e| match e {
                    basalt_server::schema::SchemaError::Validation(errors) => anyhow::anyhow!(
                        "the schema is invalid: {}",
                        errors
                            .into_map()
                            .into_iter()
                            .map(|(field, e)| format!("{field}: {}", e.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    other => anyhow::anyhow!(other),
                })?;
            println!("imported {path}: {changed} collection(s) changed");
        }
        _ => {}
    }
    core.db.close().await?;
    Ok(())
}
