//! The monitor's one stylesheet and one small script, served as files so
//! the Content-Security-Policy can forbid inline code.

use poem::{handler, http::header, IntoResponse, Response};

/// Cache-busting version in the asset URLs.
pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

const CSS: &str = r#"
:root {
  --bg: #f6f7f9; --panel: #fff; --ink: #1d2330; --muted: #667085; --line: #e4e7ec;
  --brand: #3b5bdb; --brand-ink: #fff;
  --queued: #1c64f2; --queued-bg: #e1effe;
  --delivering: #7e3af2; --delivering-bg: #edebfe;
  --scheduled: #b45309; --scheduled-bg: #fef3c7;
  --succeeded: #047857; --succeeded-bg: #def7ec;
  --failed: #c81e1e; --failed-bg: #fde8e8;
  --held: #0e7490; --held-bg: #cffafe;
  --radius: 10px;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--brand); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
header.top { background: #111827; color: #fff; }
header.top .bar { max-width: 1200px; margin: 0 auto; padding: 10px 20px; display: flex; align-items: center; gap: 18px; flex-wrap: wrap; }
header.top .brand { font-weight: 700; font-size: 16px; color: #fff; letter-spacing: .2px; }
header.top .brand span { color: #8da2fb; }
header.top nav { display: flex; gap: 4px; flex-wrap: wrap; }
header.top nav a { color: #cbd5e1; padding: 6px 10px; border-radius: 6px; }
header.top nav a.on, header.top nav a:hover { background: #1f2937; color: #fff; text-decoration: none; }
header.top .right { margin-left: auto; display: flex; align-items: center; gap: 12px; color: #9ca3af; font-size: 12px; }
.live-dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: #10b981; margin-right: 5px; }
main { max-width: 1200px; margin: 0 auto; padding: 20px; }
h1 { font-size: 20px; margin: 4px 0 16px; }
h2 { font-size: 15px; margin: 0 0 12px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); padding: 16px; margin-bottom: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin-bottom: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); padding: 14px 16px; display: block; color: inherit; }
a.card:hover { text-decoration: none; border-color: #c7d2fe; }
.card .n { font-size: 26px; font-weight: 700; margin-top: 2px; font-variant-numeric: tabular-nums; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
.card.queued { border-top: 3px solid var(--queued); } .card.delivering { border-top: 3px solid var(--delivering); }
.card.scheduled { border-top: 3px solid var(--scheduled); } .card.succeeded { border-top: 3px solid var(--succeeded); }
.card.failed { border-top: 3px solid var(--failed); } .card.held { border-top: 3px solid var(--held); } .card.neutral { border-top: 3px solid #98a2b3; }
.grid2 { display: grid; grid-template-columns: 2fr 1fr; gap: 16px; }
@media (max-width: 860px) { .grid2 { grid-template-columns: 1fr; } }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .3px; background: #fafbfc; }
tbody tr:hover { background: #f9fafb; }
td.wrap { white-space: normal; word-break: break-word; }
td.wide { min-width: 260px; } td.mid { min-width: 130px; } td.src { min-width: 150px; }
td.ingest { white-space: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.badge.queued { color: var(--queued); background: var(--queued-bg); }
.badge.delivering { color: var(--delivering); background: var(--delivering-bg); }
.badge.scheduled { color: var(--scheduled); background: var(--scheduled-bg); }
.badge.succeeded, .badge.ok, .badge.alive { color: var(--succeeded); background: var(--succeeded-bg); }
.badge.failed, .badge.err, .badge.gone { color: var(--failed); background: var(--failed-bg); }
.badge.held { color: var(--held); background: var(--held-bg); }
.badge.idle { color: var(--muted); background: #f2f4f7; }
.badge.warn { color: var(--scheduled); background: var(--scheduled-bg); border: 1px solid #fcd34d; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
form.inline { display: inline; }
.filters { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; }
.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 3px; }
input, select { font: inherit; padding: 6px 8px; border: 1px solid #d0d5dd; border-radius: 6px; background: #fff; min-width: 0; }
input:focus, select:focus { outline: 2px solid #c7d2fe; border-color: var(--brand); }
button, .btn { font: inherit; font-weight: 600; padding: 6px 12px; border-radius: 6px; border: 1px solid #d0d5dd; background: #fff; color: var(--ink); cursor: pointer; display: inline-block; }
button.primary { background: var(--brand); border-color: var(--brand); color: var(--brand-ink); }
button.danger { color: var(--failed); border-color: #f8b4b4; }
button.danger:hover { background: var(--failed-bg); }
button:hover { filter: brightness(.97); }
.row-actions { display: flex; gap: 6px; flex-wrap: wrap; align-items: center; }
.actions { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 14px; }
h1.mono { font-size: 16px; word-break: break-all; }
.flash { padding: 10px 14px; border-radius: 8px; margin-bottom: 14px; background: #ecfdf3; color: #05603a; border: 1px solid #abefc6; }
.flash.bad { background: #fef3f2; color: #b42318; border-color: #fecdca; }
.held-banner form { margin-left: 6px; }
.pager { display: flex; justify-content: space-between; align-items: center; margin-top: 12px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px; margin: 0; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; word-break: break-all; }
pre.payload { background: #0f172a; color: #e2e8f0; padding: 14px; border-radius: 8px; overflow: auto; max-height: 420px; margin: 0; }
.chart svg { width: 100%; height: auto; display: block; }
.chart .legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin-top: 6px; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
.sw.ok { background: #10b981; } .sw.err { background: #ef4444; }
.login { max-width: 360px; margin: 12vh auto; }
.login form { display: flex; flex-direction: column; gap: 12px; }
.login label { display: flex; flex-direction: column; gap: 4px; font-size: 13px; color: var(--muted); }
.empty { text-align: center; color: var(--muted); padding: 28px 0; }
@media (max-width: 640px) {
  main { padding: 12px; }
  .hide-sm { display: none; }
  th, td { padding: 7px 6px; }
  header.top .right { margin-left: 0; width: 100%; }
}
"#;

const JS: &str = r#"
// Live updates: every 2 s, fetch this page again and swap the [data-live]
// region, unless the tab is hidden or the person is typing in it.
(function () {
  document.addEventListener('submit', function (e) {
    var msg = e.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
  var live = document.querySelector('[data-live]');
  if (!live) return;
  var stamp = document.getElementById('live-stamp');
  setInterval(function () {
    if (document.hidden) return;
    var a = document.activeElement;
    if (a && live.contains(a) && /INPUT|SELECT|TEXTAREA/.test(a.tagName)) return;
    fetch(location.href, { credentials: 'same-origin', headers: { 'X-Live': '1' } })
      .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, 'text/html').querySelector('[data-live]');
        if (fresh && fresh.innerHTML !== live.innerHTML) live.innerHTML = fresh.innerHTML;
        if (stamp) stamp.textContent = 'updated ' + new Date().toLocaleTimeString();
      })
      .catch(function () {});
  }, 2000);
})();
"#;

#[handler]
pub(super) fn style() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

#[handler]
pub(super) fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, ty: &'static str) -> Response {
    body.with_content_type(ty).with_header(header::CACHE_CONTROL, "public, max-age=3600").into_response()
}
