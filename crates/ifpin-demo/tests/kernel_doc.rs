//! `docs/kernel.md` and the vector catalogue say the same thing: every table of the doc whose
//! header starts with `| vector |` is parsed, and each row must be the catalogue's row (the
//! privilege, the kernel's answer, whether it leaves the front port, the level that closes it),
//! every vector exactly once. The demo compares its measurements with the catalogue, so this is
//! what keeps the doc true to what the demo checks.

use std::collections::BTreeMap;

use ifpin_demo::catalogue::{ESCAPES, OVERRIDES};

/// One row as the doc writes it: privilege, answer, leaves the front port, closed by.
type Row = (String, String, String, String);

fn doc_rows() -> BTreeMap<String, Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kernel.md");
    let text = std::fs::read_to_string(path).expect("docs/kernel.md is in the repository");
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        if cells.first().is_some_and(|c| c == "vector") {
            assert_eq!(
                cells,
                [
                    "vector",
                    "privilege",
                    "kernel's answer",
                    "leaves the front port",
                    "closed by"
                ],
                "the columns of a vector table"
            );
            in_table = true;
            continue;
        }
        if !in_table || cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let [id, privilege, answer, leaves, closed] = <[String; 5]>::try_from(cells)
            .unwrap_or_else(|c| panic!("a vector row has five cells: {c:?}"));
        let previous = rows.insert(id.clone(), (privilege, answer, leaves, closed));
        assert!(previous.is_none(), "{id} is in docs/kernel.md twice");
    }
    rows
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn catalogue_rows() -> BTreeMap<String, Row> {
    let overrides = OVERRIDES.iter().map(|v| {
        (
            v.id.to_owned(),
            (
                v.privilege.to_string(),
                v.documented.answer().to_owned(),
                yes_no(v.documented.leaves_front()),
                v.closed_by
                    .map_or_else(|| "kernel".to_owned(), |l| l.as_str().to_owned()),
            ),
        )
    });
    let escapes = ESCAPES.iter().map(|e| {
        (
            e.id.to_owned(),
            (
                e.privilege.to_string(),
                e.documented.answer().to_owned(),
                yes_no(e.documented.leaves_front()),
                e.closed_by.as_str().to_owned(),
            ),
        )
    });
    overrides.chain(escapes).collect()
}

#[test]
fn the_tables_of_docs_kernel_md_are_the_catalogue() {
    let doc = doc_rows();
    let code = catalogue_rows();
    assert_eq!(
        code.len(),
        OVERRIDES.len() + ESCAPES.len(),
        "ids are unique"
    );
    let mut problems = Vec::new();
    for (id, row) in &code {
        match doc.get(id) {
            None => problems.push(format!("{id}: in the catalogue, not in docs/kernel.md")),
            Some(written) if written != row => problems.push(format!(
                "{id}: docs/kernel.md says {written:?}, the catalogue {row:?}"
            )),
            Some(_) => {}
        }
    }
    for id in doc.keys().filter(|id| !code.contains_key(*id)) {
        problems.push(format!("{id}: in docs/kernel.md, not in the catalogue"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_documented_in_names_a_heading_of_docs_kernel_md() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kernel.md");
    let text = std::fs::read_to_string(path).expect("docs/kernel.md");
    // GitHub's anchor of a heading: lower case, spaces to dashes, punctuation dropped.
    let anchors: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let places = OVERRIDES
        .iter()
        .map(|v| v.documented_in)
        .chain(ESCAPES.iter().map(|e| e.documented_in))
        .chain([ifpin_demo::cases::LIFECYCLE_DOC]);
    for place in places {
        let anchor = place
            .strip_prefix("docs/kernel.md#")
            .unwrap_or_else(|| panic!("{place} is not in docs/kernel.md"));
        assert!(
            anchors.iter().any(|a| a == anchor),
            "no heading for #{anchor} in docs/kernel.md: {anchors:?}"
        );
    }
}
