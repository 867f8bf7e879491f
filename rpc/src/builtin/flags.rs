//! `/flags`: every flag of the process (spindle-runtime's registry) with its value, default and
//! whether it is reloadable; `/flags/<name>?setvalue=<v>` changes a reloadable flag through
//! [`flags::reload`] and refuses the others with its reason.

use super::doc::{Block, Doc};
use super::Reply;
use crate::policy::http::{percent_decode, HttpRequest};
use crate::server::ServerInner;
use spindle_metrics::WildcardFilter;
use spindle_runtime::flags::{self, FlagError};

/// `/flags`, `/flags/<names or wildcards>`, `/flags/<name>?setvalue=<value>`.
pub(super) fn flags(_: &ServerInner, req: &HttpRequest) -> Reply {
    let path = req.path().strip_prefix("/flags").unwrap_or("");
    let pattern = percent_decode(path.trim_start_matches('/')).into_owned();
    if let Some(value) = req.query_param("setvalue") {
        return set(&pattern, &value);
    }
    let filter = WildcardFilter::with_question_mark(&pattern, '$');
    let rows: Vec<Vec<String>> = flags::list()
        .into_iter()
        .filter(|f| filter.matches(f.name))
        .map(|f| {
            vec![
                f.name.to_owned(),
                f.value,
                f.default,
                if f.reloadable { "yes" } else { "no" }.to_owned(),
                f.help.to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() && !filter.is_empty() {
        return Reply::Doc(
            404,
            Doc::new("flags").text(format!("no flag matches \"{pattern}\"\n")),
        );
    }
    let head = ["name", "value", "default", "reloadable", "description"]
        .map(str::to_owned)
        .to_vec();
    Reply::Doc(200, Doc::new("flags").block(Block::Table(head, rows)))
}

/// Sets flag `name` to `value` at run time.
fn set(name: &str, value: &str) -> Reply {
    let page = |status, text: String| Reply::Doc(status, Doc::new("flags").text(text));
    if name.is_empty() || name.contains(['*', '$', ',', ';']) {
        return page(
            400,
            "setvalue needs exactly one flag: /flags/<name>?setvalue=<value>\n".to_owned(),
        );
    }
    match flags::reload(name, value) {
        Ok(()) => {
            let now = flags::get(name).unwrap_or_else(|_| value.to_owned());
            page(200, format!("set flag {name} to {now}\n"))
        }
        Err(e) => {
            let status = match &e {
                FlagError::Unknown { .. } => 404,
                FlagError::NotReloadable { .. } | FlagError::Frozen { .. } => 403,
                _ => 400,
            };
            page(status, format!("cannot set flag {name}: {e}\n"))
        }
    }
}
