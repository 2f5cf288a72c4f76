//! `hook-slinger-app`: the HTTP API.

use hook_slinger::{api::Application, config::Settings, shutdown, telemetry};

/// See Cargo.toml: glibc's allocator was a sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hook-slinger-app: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(&settings.log);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error.cause_chain = ?e, "{e}");
            eprintln!("hook-slinger-app: {e}");
            std::process::exit(2);
        }
    };
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
