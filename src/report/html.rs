//! The page itself: the template (`template.html`, inline CSS and script, nothing fetched)
//! with the data embedded as JSON in a `<script type="application/json">` element.
//!
//! Values and quotes come from PDFs, which anyone can write: nothing of them is ever HTML
//! here. The JSON escapes every `<`, `>` and `&` (as `\u003c`...), so no text can close the
//! script element or open a comment, and the page's script only ever puts text into the
//! document through `textContent`. The only HTML made from data is the chart, whose labels
//! `eval::report` escapes.

use super::data::ReportData;
use anyhow::{Context, Result};

const TEMPLATE: &str = include_str!("template.html");

/// `s` safe inside HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that can stand inside a `<script>` element: `<`, `>`, `&` and the two JavaScript line
/// separators written as `\uXXXX` escapes (JSON.parse reads them back unchanged).
pub fn script_json<T: serde::Serialize>(value: &T) -> Result<String> {
    let json = serde_json::to_string(value).context("serialising the review page's data")?;
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The whole page.
pub fn render(data: &ReportData) -> Result<String> {
    let json = script_json(data)?;
    let chart = data
        .gold
        .as_ref()
        .map(|g| g.chart_svg.as_str())
        .unwrap_or("");
    let title = escape_html(&format!("paramx review: {}", data.heading));
    // One pass over the template, so that no substituted text is searched for placeholders.
    let mut out = String::with_capacity(TEMPLATE.len() + json.len() + chart.len());
    let mut rest = TEMPLATE;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let (text, len) = if after.starts_with("{{TITLE}}") {
            (title.as_str(), "{{TITLE}}".len())
        } else if after.starts_with("{{CHART}}") {
            (chart, "{{CHART}}".len())
        } else if after.starts_with("{{DATA}}") {
            (json.as_str(), "{{DATA}}".len())
        } else {
            ("{{", 2)
        };
        out.push_str(text);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_a_script_cannot_close_it() -> Result<()> {
        let hostile = "</script><script>alert(1)</script><!-- & \u{2028}";
        let s = script_json(&hostile)?;
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: String = serde_json::from_str(&s)?;
        assert_eq!(back, hostile);
        Ok(())
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_template_has_each_placeholder_once() {
        for p in ["{{TITLE}}", "{{CHART}}", "{{DATA}}"] {
            assert_eq!(TEMPLATE.matches(p).count(), 1, "{p}");
        }
    }
}
