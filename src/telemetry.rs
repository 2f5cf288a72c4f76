//! Logging: coloured human lines by default, JSON lines for machines.
//!
//! Every log line inside a job's span carries its `job_id`, so one job's
//! story can be followed from the app's accept line through each worker
//! attempt.

use std::{fmt, io::IsTerminal};

use owo_colors::{OwoColorize, Style};
use tracing::{field::Field, Event, Level, Subscriber};
use tracing_subscriber::{
    field::{RecordFields, Visit},
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter},
    layer::SubscriberExt,
    registry::LookupSpan,
    EnvFilter,
};

use crate::config::{ColorMode, LogFormat, LogSettings};

/// Installs the global subscriber writing to stdout. Call once, first thing
/// in `main`.
pub fn init(log: &LogSettings) {
    let color = match log.color {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => std::io::stdout().is_terminal(),
    };
    let subscriber = subscriber(log, color, std::io::stdout);
    // A second init (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Builds a subscriber that writes to `sink`; tests pass their own sink.
pub fn subscriber<W>(log: &LogSettings, color: bool, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Config validated LOG_LEVEL already; fall back rather than panic.
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Our own crate logs at the chosen level; chatty dependencies stay at warn
    // unless the operator names them.
    let filter = if log.level.contains('=') {
        filter
    } else {
        filter
            .add_directive("apalis=warn".parse().expect("static directive"))
            .add_directive("apalis_core=warn".parse().expect("static directive"))
            .add_directive("apalis_redis=warn".parse().expect("static directive"))
    };
    match log.format {
        LogFormat::Json => Box::new(
            tracing_subscriber::registry().with(filter).with(otel::layer(log.otel_export)).with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => Box::new(
            tracing_subscriber::registry().with(filter).with(otel::layer(log.otel_export)).with(
                tracing_subscriber::fmt::layer()
                    .event_format(Pretty { color })
                    .fmt_fields(PrettyFields { color })
                    .with_writer(sink),
            ),
        ),
    }
}

/// Optional OpenTelemetry export: with the `otel` cargo feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, every span (and so every job's
/// accept and attempts, by `job_id`) is also sent to that OTLP/HTTP
/// collector. Off otherwise, at no cost.
#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::SpanExporter;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetryLayer;
    use tracing_subscriber::registry::LookupSpan;

    /// The export layer, or `None` when no endpoint is configured or the
    /// exporter cannot be built (logs must work even then).
    pub(super) fn layer<S>(enabled: bool) -> Option<OpenTelemetryLayer<S, SdkTracer>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // `enabled` is OTEL_EXPORTER_OTLP_ENDPOINT being set (config.rs); the
        // exporter reads that standard variable itself, with
        // OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME and the rest.
        if !enabled {
            return None;
        }
        let exporter = match SpanExporter::builder().with_http().build() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: OpenTelemetry export disabled: {e}");
                return None;
            }
        };
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
        let tracer = provider.tracer("hook-slinger");
        // The global provider keeps the batch exporter alive for the process.
        opentelemetry::global::set_tracer_provider(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }
}

/// Without the `otel` feature there is never an export layer.
#[cfg(not(feature = "otel"))]
mod otel {
    pub(super) fn layer(_enabled: bool) -> Option<tracing_subscriber::layer::Identity> {
        None
    }
}

/// `2026-11-25T20:33:04.123Z  INFO delivered  job_id=… host=… status=200 duration_ms=12`
struct Pretty {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for Pretty
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let level = *event.metadata().level();
        let level_style = match level {
            Level::ERROR => Style::new().red().bold(),
            Level::WARN => Style::new().yellow().bold(),
            Level::INFO => Style::new().green().bold(),
            Level::DEBUG => Style::new().blue(),
            Level::TRACE => Style::new().magenta(),
        };
        if self.color {
            write!(w, "{} {:>5} ", now.dimmed(), level.style(level_style))?;
        } else {
            write!(w, "{now} {level:>5} ")?;
        }
        let mut fields = Collect::default();
        event.record(&mut fields);
        if let Some(msg) = &fields.message {
            if self.color {
                write!(w, "{}", msg.bold())?;
            } else {
                w.write_str(msg)?;
            }
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>() {
                    if !f.is_empty() {
                        write!(w, " {f}")?;
                    }
                }
            }
        }
        write_fields(&mut w, &fields.fields, self.color)?;
        writeln!(w)
    }
}

/// Renders span fields with the same colours as event fields.
struct PrettyFields {
    color: bool,
}

impl<'w> FormatFields<'w> for PrettyFields {
    fn format_fields<R: RecordFields>(&self, mut w: Writer<'w>, fields: R) -> fmt::Result {
        let mut c = Collect::default();
        fields.record(&mut c);
        let mut first = true;
        for (k, v) in &c.fields {
            if !first {
                w.write_char(' ')?;
            }
            first = false;
            write_field(&mut w, k, v, self.color)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.fields.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            self.fields.push((field.name(), format!("{value:?}")));
        }
    }
}

fn write_fields(w: &mut Writer<'_>, fields: &[(&'static str, String)], color: bool) -> fmt::Result {
    for (k, v) in fields {
        w.write_char(' ')?;
        write_field(w, k, v, color)?;
    }
    Ok(())
}

fn write_field(w: &mut Writer<'_>, key: &str, value: &str, color: bool) -> fmt::Result {
    if !color {
        return write!(w, "{key}={value}");
    }
    let style = match key {
        "job_id" => Style::new().cyan().bold(),
        "host" | "worker" => Style::new().blue(),
        "status" => match value.parse::<i64>() {
            Ok(200..=299) => Style::new().green(),
            Ok(400..=499) => Style::new().yellow(),
            _ => Style::new().red(),
        },
        "error" | "error.message" => Style::new().red(),
        _ => Style::new(),
    };
    write!(w, "{}={}", key.dimmed(), value.style(style))
}
