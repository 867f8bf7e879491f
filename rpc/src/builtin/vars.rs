//! `/vars` and `/brpc_metrics`: the global metrics registry, as `name : value` lines (or an
//! HTML table) and in Prometheus text format.

use super::doc::{Block, Doc};
use super::Reply;
use crate::policy::http::{percent_decode, HttpRequest, HttpResponse};
use crate::server::ServerInner;
use spindle_metrics::{prometheus, Registry, WildcardFilter};

/// The filter of a `/vars` request: the path after `/vars/` and the `filter` query parameter,
/// joined (brpc's syntax: `*`, `$` for one character, `,` or `;` between patterns).
fn filter_of(req: &HttpRequest) -> String {
    let path = req.path().strip_prefix("/vars").unwrap_or("");
    let mut f = percent_decode(path.trim_start_matches('/')).into_owned();
    if let Some(q) = req.query_param("filter") {
        if !f.is_empty() {
            f.push(';');
        }
        f.push_str(&q);
    }
    f
}

/// `/vars`, `/vars/<filter>`, `/vars?filter=<filter>`.
pub(super) fn vars(_: &ServerInner, req: &HttpRequest) -> Reply {
    let pattern = filter_of(req);
    let filter = WildcardFilter::with_question_mark(&pattern, '$');
    let mut rows = Vec::new();
    Registry::global().for_each(&filter, |name, v| {
        rows.push(vec![name.to_owned(), v.value().to_string()]);
    });
    if rows.is_empty() && !filter.is_empty() {
        return Reply::Doc(
            404,
            Doc::new("vars").text(format!("no variable matches \"{pattern}\"\n")),
        );
    }
    let text: String = rows
        .iter()
        .map(|r| format!("{} : {}\n", r[0], r[1]))
        .collect();
    // The text form is exactly the registry's `describe` output; HTML gets a table.
    let mut doc = Doc::new("vars");
    if super::doc::wants_html(req) {
        doc.push(Block::Table(vec!["name".into(), "value".into()], rows));
    } else {
        doc.push(Block::Text(text));
    }
    Reply::Doc(200, doc)
}

/// `/brpc_metrics`: every numeric variable in the Prometheus text exposition format.
pub(super) fn brpc_metrics(_: &ServerInner, _: &HttpRequest) -> Reply {
    Reply::Raw(
        HttpResponse::new(200)
            .with_header("Content-Type", prometheus::CONTENT_TYPE)
            .with_body(prometheus::render(Registry::global()).as_bytes()),
    )
}
