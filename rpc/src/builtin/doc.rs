//! A builtin page's content, rendered as plain text (curl, scripts) or HTML (browsers).
//!
//! A [`Doc`] is a title and a list of [`Block`]s. [`Doc::respond`] picks the form from the
//! request: HTML when `Accept` names `text/html`, plain text otherwise. Text output is meant to
//! be read and grepped: headings as `[name]`, tables with aligned columns, links as
//! `path  about`. HTML output escapes every piece of text it did not write itself.

use crate::policy::http::{HttpRequest, HttpResponse};
use std::fmt::Write;

/// One part of a page.
#[derive(Clone, Debug)]
pub enum Block {
    /// A section heading.
    Heading(String),
    /// Preformatted text.
    Text(String),
    /// `(href, about)` links.
    Links(Vec<(String, String)>),
    /// A table: header cells and rows.
    Table(Vec<String>, Vec<Vec<String>>),
}

/// A page: a title and blocks.
#[derive(Clone, Debug)]
pub struct Doc {
    /// The page's title (HTML only).
    title: String,
    /// The content.
    blocks: Vec<Block>,
}

/// Whether `req` comes from a browser (its `Accept` names `text/html`).
pub fn wants_html(req: &HttpRequest) -> bool {
    req.header("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl Doc {
    /// An empty page titled `title`.
    pub fn new(title: &str) -> Doc {
        Doc {
            title: title.to_owned(),
            blocks: Vec::new(),
        }
    }

    /// Appends a block (builder style).
    pub fn block(mut self, b: Block) -> Doc {
        self.blocks.push(b);
        self
    }

    /// Appends preformatted text (builder style).
    pub fn text(self, t: impl Into<String>) -> Doc {
        self.block(Block::Text(t.into()))
    }

    /// Appends a block.
    pub fn push(&mut self, b: Block) {
        self.blocks.push(b);
    }

    /// The page as plain text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for b in &self.blocks {
            match b {
                Block::Heading(h) => {
                    if !out.is_empty() && !out.ends_with("\n\n") {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "[{h}]");
                }
                Block::Text(t) => {
                    out.push_str(t);
                    if !t.ends_with('\n') {
                        out.push('\n');
                    }
                }
                Block::Links(links) => {
                    let w = links.iter().map(|l| l.0.len()).max().unwrap_or(0);
                    for (href, about) in links {
                        let _ = writeln!(out, "{href:<w$}  {about}");
                    }
                }
                Block::Table(head, rows) => text_table(&mut out, head, rows),
            }
        }
        out
    }

    /// The page as an HTML document.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
             <style>body{{font-family:monospace}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style>\
             </head><body>\n<p>",
            escape(&self.title)
        );
        for p in super::PAGES {
            let _ = write!(out, "<a href=\"{0}\">{0}</a> ", p.path);
        }
        out.push_str("</p>\n");
        for b in &self.blocks {
            match b {
                Block::Heading(h) => {
                    let _ = writeln!(out, "<h3>{}</h3>", escape(h));
                }
                Block::Text(t) => {
                    let _ = writeln!(out, "<pre>{}</pre>", escape(t));
                }
                Block::Links(links) => {
                    out.push_str("<ul>\n");
                    for (href, about) in links {
                        let _ = writeln!(
                            out,
                            "<li><a href=\"{0}\">{0}</a> {1}</li>",
                            escape(href),
                            escape(about)
                        );
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table(head, rows) => {
                    out.push_str("<table>\n<tr>");
                    for h in head {
                        let _ = write!(out, "<th>{}</th>", escape(h));
                    }
                    out.push_str("</tr>\n");
                    for r in rows {
                        out.push_str("<tr>");
                        for c in r {
                            let _ = write!(out, "<td>{}</td>", escape(c));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</table>\n");
                }
            }
        }
        out.push_str("</body></html>\n");
        out
    }

    /// The response to `req`: HTML for a browser, plain text otherwise.
    pub fn respond(&self, status: u16, req: &HttpRequest) -> HttpResponse {
        if wants_html(req) {
            HttpResponse::new(status)
                .with_header("Content-Type", "text/html; charset=utf-8")
                .with_body(self.to_html().as_bytes())
        } else {
            HttpResponse::text(status, self.to_text())
        }
    }
}

/// Writes a table with columns padded to their widest cell.
fn text_table(out: &mut String, head: &[String], rows: &[Vec<String>]) {
    let n = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate().take(n) {
            if i + 1 == n {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<0$} | ", w[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head);
    for r in rows {
        line(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_html() {
        let d = Doc::new("t<")
            .block(Block::Heading("h".into()))
            .block(Block::Table(
                vec!["name".into(), "v".into()],
                vec![
                    vec!["a".into(), "1".into()],
                    vec!["long".into(), "<2>".into()],
                ],
            ));
        assert_eq!(d.to_text(), "[h]\nname | v\na    | 1\nlong | <2>\n");
        let h = d.to_html();
        assert!(h.contains("<title>t&lt;</title>"));
        assert!(h.contains("<td>&lt;2&gt;</td>"));
        let req = HttpRequest::new("GET", "/").with_header("Accept", "text/html,*/*");
        assert!(wants_html(&req));
        assert!(!wants_html(&HttpRequest::new("GET", "/")));
    }
}
