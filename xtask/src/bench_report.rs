//! Writing benchmark results into `docs/benchmarks.md`: one `## NAME`
//! section per benchmark, replaced by each new run so the file holds the
//! latest figures of each once, and the conversions of program output into
//! Markdown.

use std::process::Command;

use crate::TaskError;

/// What to say next to figures about other work on the machine, from the
/// 1-minute load average read when the run began.
pub(crate) fn load_note() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    describe_load(loadavg.split_whitespace().next(), cores)
}

fn describe_load(load: Option<&str>, cores: usize) -> String {
    let Some(value) = load.and_then(|l| l.parse::<f64>().ok()) else {
        return "Load average unknown (no /proc/loadavg).".into();
    };
    let mut note = format!("Load average (1 min) when the run began: {value:.2}, on {cores} cores.");
    // One busy core's worth of other work already competes with the
    // benchmark (which uses one or two cores), so it is worth saying.
    if value >= 1.0 {
        note.push_str(
            " Other work (builds and tests of other engineers) shared the machine, so the absolute \
             figures are lower and noisier than on an idle one; the ratios, measured in the same \
             run, are the steadier figures.",
        );
    }
    note
}

/// Today's date and time in UTC, as `date -u` prints it.
pub(crate) fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "date unknown".into())
}

/// Program output as Markdown: kept as it is when it already holds a
/// Markdown table (lines starting with `|`), otherwise fenced as text so
/// its column alignment survives.
pub(crate) fn as_markdown(output: &str) -> String {
    let output = output.trim_end();
    if output.lines().any(|l| l.trim_start().starts_with('|')) {
        format!("{output}\n")
    } else {
        format!("```text\n{output}\n```\n")
    }
}

/// A whitespace-aligned table (a header line of column names, then rows of
/// as many fields) as a Markdown table, numbers right-aligned. `header`
/// gives the column names, since names with spaces cannot be split out of
/// the header line. `None` if a row has another number of fields or
/// there is no row.
pub(crate) fn columns_to_markdown(text: &str, header: &[&str]) -> Option<String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    lines.next()?;
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    if rows.is_empty() || rows.iter().any(|r| r.len() != header.len()) {
        return None;
    }
    let mut table = format!("| {} |\n|{}\n", header.join(" | "), "---:|".repeat(header.len()));
    for row in rows {
        table.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    Some(table)
}

/// `doc` with the section `## {heading}` replaced by `section` (which must
/// begin with that heading line), or with `section` appended when there is
/// none. A section runs to the next `## ` heading or the end; `###`
/// subsections belong to it.
pub(crate) fn replace_section(doc: &str, heading: &str, section: &str) -> String {
    let title = format!("## {heading}");
    let mut offset = 0;
    let mut start = None;
    let mut end = doc.len();
    for line in doc.split_inclusive('\n') {
        let text = line.trim_end();
        if start.is_none() && text == title {
            start = Some(offset);
        } else if start.is_some() && text.starts_with("## ") {
            end = offset;
            break;
        }
        offset += line.len();
    }
    let section = section.trim_end();
    match start {
        Some(start) => {
            let after = &doc[end..];
            let separator = if after.is_empty() { "\n" } else { "\n\n" };
            format!("{}{section}{separator}{after}", &doc[..start])
        }
        None => format!("{}\n\n{section}\n", doc.trim_end()),
    }
}

/// Replaces (or adds) the section `## {heading}` of the file at `path`.
pub(crate) fn write_section(path: &std::path::Path, heading: &str, section: &str) -> Result<(), TaskError> {
    let doc = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    std::fs::write(path, replace_section(&doc, heading, section))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Benchmarks\n\nIntro.\n\n## www-unix\n\nText.\n\n### 2026-01-01\n\n| a |\n\n\
                       ## udp\n\nOld udp.\n\n### old run\n\nold table\n\n## block\n\nBlock.\n";

    #[test]
    fn a_section_is_replaced_in_place_with_its_subsections() {
        let doc = replace_section(DOC, "udp", "## udp\n\nNew udp.\n");
        assert!(!doc.contains("Old udp") && !doc.contains("old run") && !doc.contains("old table"), "{doc}");
        let (www, udp, block) = (
            doc.find("## www-unix").unwrap(),
            doc.find("## udp\n\nNew udp.\n\n").unwrap(),
            doc.find("## block").unwrap(),
        );
        assert!(www < udp && udp < block, "{doc}");
        assert!(doc.contains("### 2026-01-01"), "another section's subsection stays: {doc}");
        assert_eq!(doc.matches("## udp").count(), 1);
    }

    #[test]
    fn the_last_section_is_replaced_to_the_end_and_a_new_one_appended() {
        let doc = replace_section(DOC, "block", "## block\n\nNew block.");
        assert!(doc.ends_with("## block\n\nNew block.\n") && !doc.contains("Block."), "{doc}");
        let doc = replace_section(&doc, "tcp", "## tcp\n\nTCP.\n");
        assert!(doc.ends_with("New block.\n\n## tcp\n\nTCP.\n"), "{doc}");
        let again = replace_section(&doc, "tcp", "## tcp\n\nTCP.\n");
        assert_eq!(again, doc, "replacing with the same section changes nothing");
    }

    #[test]
    fn a_heading_that_only_starts_the_same_is_not_taken() {
        let doc = replace_section("## udp-tap\n\nKeep.\n", "udp", "## udp\n\nNew.\n");
        assert_eq!(doc, "## udp-tap\n\nKeep.\n\n## udp\n\nNew.\n");
    }

    const CHECKSUM: &str = "    bytes  checksum GB/s    16-bit GB/s    memcpy GB/s
       64           9.81           2.10          20.31
     1500          21.02           2.35          40.70
";

    #[test]
    fn column_output_becomes_a_markdown_table() {
        let header = ["bytes", "checksum GB/s", "16-bit GB/s", "memcpy GB/s"];
        let table = columns_to_markdown(CHECKSUM, &header).unwrap();
        assert_eq!(
            table,
            "| bytes | checksum GB/s | 16-bit GB/s | memcpy GB/s |\n|---:|---:|---:|---:|\n\
             | 64 | 9.81 | 2.10 | 20.31 |\n| 1500 | 21.02 | 2.35 | 40.70 |\n"
        );
        assert!(columns_to_markdown(&format!("{CHECKSUM}  9000 1.0\n"), &header).is_none(), "short row");
        assert!(columns_to_markdown("header only\n", &header).is_none());
        assert!(columns_to_markdown("", &header).is_none());
    }

    #[test]
    fn output_is_fenced_unless_it_is_markdown() {
        assert_eq!(as_markdown("a   b\n1   2\n\n"), "```text\na   b\n1   2\n```\n");
        assert_eq!(as_markdown("Title:\n\n| a |\n|---|\n"), "Title:\n\n| a |\n|---|\n");
    }

    #[test]
    fn the_load_is_reported_and_high_load_explained() {
        let idle = describe_load(Some("0.20"), 2);
        assert_eq!(idle, "Load average (1 min) when the run began: 0.20, on 2 cores.");
        let busy = describe_load(Some("5.30"), 2);
        assert!(
            busy.starts_with("Load average (1 min) when the run began: 5.30") && busy.contains("shared the machine")
        );
        assert!(describe_load(None, 2).contains("unknown"));
        assert!(describe_load(Some("x"), 2).contains("unknown"));
    }
}
