//! `hook-slinger-monitor`: the web UI (`serve`, the default) and the CLI
//! (`jobs`, `show`, `requeue`, `workers`, `stats`, `endpoints`, `events`,
//! `recover`, `sources`) for watching jobs, fan-out and sources.

use std::process::ExitCode;

use clap::Parser;
use hook_slinger::{
    config::Settings,
    monitor::{
        cli::{self, Cli, Command, Output},
        Console, Monitor,
    },
    shutdown, telemetry,
};

/// See Cargo.toml: glibc's allocator was a sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hook-slinger-monitor: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let command = args.command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        telemetry::init(&settings.log);
        let monitor = match Monitor::build(settings).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error.cause_chain = ?e, "{e}");
                eprintln!("hook-slinger-monitor: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        monitor.run_until_stopped(shutdown::signal()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let console = Console::new(&settings)?;
    let mut stdout = std::io::stdout().lock();
    let mut out = Output { out: &mut stdout, json: args.json, color: cli::use_color(&settings.log) };
    match cli::execute(command, &console, &mut out).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("hook-slinger-monitor: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}
