//! `firedoor-server report incident|grant|unlock ID` and `report verify FILE`.

use anyhow::Context;
use firedoor_core::report::{to_html, to_markdown, Report, ReportKind};
use firedoor_server::store::Store;
use std::io::Write;
use std::path::Path;

/// Output formats of `report`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Md,
    Json,
    Html,
}

/// Renders `r` in `format`.
pub fn render(r: &Report, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Md => to_markdown(r),
        Format::Html => to_html(r),
        Format::Json => serde_json::to_string_pretty(r)? + "\n",
    })
}

/// `report KIND ID`: writes the report to `out` (standard output by default).
pub async fn write(
    store: &Store,
    kind: ReportKind,
    id: &str,
    format: Format,
    out: Option<&Path>,
) -> anyhow::Result<i32> {
    let by = firedoor_server::audit::cli_actor();
    let now = chrono::Utc::now();
    let r = match firedoor_server::report::build(store, kind, id, &by.name(), now).await {
        Ok(r) => r,
        Err(firedoor_server::error::Error::Rule(e)) => {
            eprintln!("error: {}", e.message);
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    let text = render(&r, format)?;
    match out {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "wrote the {} report on {} ({} lines, audit records up to {}) to {}",
                kind.as_str(),
                r.id,
                r.lines.len(),
                r.head.seq,
                p.display()
            );
        }
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
    }
    Ok(0)
}

/// `report verify FILE.json`: 0 when the report matches the audit log, 1 naming
/// the first line that does not.
pub async fn verify(
    store: &Store,
    key_file: &Path,
    public_key: Option<&str>,
    file: &Path,
) -> anyhow::Result<i32> {
    let vk = crate::audit_cli::public_key_from(key_file, public_key)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let report: Report = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            println!(
                "REPORT NOT VERIFIED: {} is not a JSON report ({e}); verify the JSON form (--format json)",
                file.display()
            );
            return Ok(1);
        }
    };
    match firedoor_server::report::verify(store, &vk, &report).await? {
        Ok(v) => {
            println!(
                "report ok: {} {}: {} lines match the audit log (records up to {}; the whole log of {} records verified)",
                report.kind.as_str(),
                report.id,
                v.lines,
                v.head_seq,
                v.log_records
            );
            Ok(0)
        }
        Err(p) => {
            println!("REPORT NOT VERIFIED: {p}");
            Ok(1)
        }
    }
}
