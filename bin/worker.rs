//! `hook-slinger-worker`: delivers queued webhooks. Run as many as you like.

use hook_slinger::{config::Settings, shutdown, telemetry, worker};

/// See Cargo.toml: glibc's allocator was a sixth of the CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hook-slinger-worker: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(&settings.log);
    worker::run(settings, shutdown::signal()).await?;
    Ok(())
}
