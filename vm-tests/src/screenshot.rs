//! A terminal screen as an SVG image: what `tmux capture-pane -p -e`
//! prints (the pane's text with the SGR escape sequences of its
//! attributes) drawn on a character grid, for the docs' picture of
//! `ipvsadm-rs --top` (`scripts/screenshot.sh`).
//!
//! Bold and reverse video are drawn (the attributes `--top` uses); the
//! other SGR attributes and colours are read and left out; any other
//! escape sequence is skipped. [`text_lines`] reads the text back out of
//! the image, so a test can hold it to tmux's own plain capture.

use std::fmt::Write as _;

/// The width of a character cell and the height of a line, in pixels
/// (a 14 px monospace font).
const CELL: (f64, f64) = (8.4, 18.0);
const FOREGROUND: &str = "#d8d8d8";
const BACKGROUND: &str = "#1c1c1c";

/// A run of characters with the same attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    column: usize,
    text: String,
    bold: bool,
    reverse: bool,
}

/// The runs of one line of `capture-pane -e` output.
fn runs(line: &str) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let (mut bold, mut reverse, mut column) = (false, false, 0);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() != Some(&'[') {
                chars.next();
                continue;
            }
            chars.next();
            let mut params = String::new();
            let mut last = None;
            for p in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&p) {
                    last = Some(p);
                    break;
                }
                params.push(p);
            }
            if last != Some('m') {
                continue;
            }
            let codes: Vec<u32> = if params.is_empty() {
                vec![0]
            } else {
                params
                    .split([';', ':'])
                    .map(|p| p.parse().unwrap_or(0))
                    .collect()
            };
            let mut i = 0;
            while i < codes.len() {
                match codes[i] {
                    0 => (bold, reverse) = (false, false),
                    1 => bold = true,
                    22 => bold = false,
                    7 => reverse = true,
                    27 => reverse = false,
                    // An extended colour: 38;5;N or 38;2;R;G;B (skipped).
                    38 | 48 | 58 => {
                        i += if codes.get(i + 1) == Some(&2) { 4 } else { 2 };
                    }
                    _ => {}
                }
                i += 1;
            }
            continue;
        }
        if c.is_control() {
            continue;
        }
        match out.last_mut() {
            Some(r) if r.bold == bold && r.reverse == reverse => r.text.push(c),
            _ => out.push(Run {
                column,
                text: c.to_string(),
                bold,
                reverse,
            }),
        }
        column += 1;
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The SVG image of `capture` (the output of `tmux capture-pane -p -e`),
/// `columns` wide, `title` its accessible title.
pub fn svg(capture: &str, columns: usize, title: &str) -> String {
    let lines: Vec<&str> = capture.lines().collect();
    let (w, h) = (
        columns as f64 * CELL.0 + 2.0 * CELL.0,
        lines.len() as f64 * CELL.1 + CELL.1,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.1} {h:.1}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" \
         font-size=\"14\">"
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"{BACKGROUND}\"/>"
    );
    for (n, line) in lines.iter().enumerate() {
        let top = CELL.1 / 2.0 + n as f64 * CELL.1;
        let runs = runs(line);
        for r in runs.iter().filter(|r| r.reverse) {
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{FOREGROUND}\"/>",
                CELL.0 + r.column as f64 * CELL.0,
                r.text.chars().count() as f64 * CELL.0,
                CELL.1,
            );
        }
        let _ = write!(
            out,
            "<text y=\"{:.1}\" xml:space=\"preserve\">",
            top + CELL.1 * 0.75
        );
        for r in &runs {
            let _ = write!(
                out,
                "<tspan x=\"{:.1}\" fill=\"{}\"{}>{}</tspan>",
                CELL.0 + r.column as f64 * CELL.0,
                if r.reverse { BACKGROUND } else { FOREGROUND },
                if r.bold { " font-weight=\"bold\"" } else { "" },
                escape(&r.text)
            );
        }
        out.push_str("</text>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// The text of each line of an image [`svg`] drew, trailing blanks cut:
/// what the screen showed, to compare with `tmux capture-pane -p`.
pub fn text_lines(svg: &str) -> Vec<String> {
    svg.lines()
        .filter(|l| l.starts_with("<text "))
        .map(|l| {
            let mut line = String::new();
            for part in l.split("<tspan ").skip(1) {
                let Some(start) = part.find('>') else {
                    continue;
                };
                let Some(end) = part.find("</tspan>") else {
                    continue;
                };
                let column = part
                    .split("x=\"")
                    .nth(1)
                    .and_then(|x| x.split('"').next())
                    .and_then(|x| x.parse::<f64>().ok())
                    .map_or(0, |x| ((x - CELL.0) / CELL.0).round() as usize);
                while line.chars().count() < column {
                    line.push(' ');
                }
                line.push_str(&unescape(&part[start + 1..end]));
            }
            line.trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_become_runs_and_come_back_as_text() {
        let capture = "\u{1b}[7mProt Local\u{1b}[0m  x<&>\n\u{1b}[1m\u{1b}[7mTCP\u{1b}[27m bold\u{1b}[22m plain\u{1b}[38;5;196m red\u{1b}[39m\n\n";
        let image = svg(capture, 20, "t");
        assert_eq!(
            text_lines(&image),
            vec!["Prot Local  x<&>", "TCP bold plain red", ""]
        );
        assert_eq!(image.matches("<rect x=").count(), 2, "{image}");
        assert_eq!(image.matches("font-weight=\"bold\"").count(), 2, "{image}");
    }
}
