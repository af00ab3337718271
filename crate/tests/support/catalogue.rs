//! Reads the bad-input catalogue of `SECURITY.md`: table rows `| ID | input | \`message\` |`. In a
//! message, `…` stands for a figure or path that depends on the file at hand; everything else must
//! be what the code prints, in order. A message of several lines is written on one, joined by
//! single spaces.

use std::collections::BTreeMap;

/// The rows whose ID starts with `prefix`, ID → message.
pub fn rows(prefix: &str) -> BTreeMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../SECURITY.md");
    let text = std::fs::read_to_string(&path).expect("SECURITY.md at the repository root");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(|c| c == '|' || c == ' '))
            .collect();
        if cells.len() < 3
            || !cells[0].starts_with(prefix)
            || !cells[0][prefix.len()..].chars().all(|c| c.is_ascii_digit())
        {
            continue;
        }
        // In a code span: `message`, or ``message`` when it holds a backtick itself.
        let cell = cells.last().unwrap();
        assert!(
            cell.starts_with('`') && cell.ends_with('`'),
            "{line}: the message is not in backticks"
        );
        let msg = cell.trim_matches('`');
        let msg = if cell.starts_with("``") {
            msg.strip_prefix(' ').unwrap_or(msg).strip_suffix(' ').unwrap_or(msg)
        } else {
            msg
        };
        assert!(
            out.insert(cells[0].to_string(), msg.replace("\\|", "|")).is_none(),
            "ID {} twice",
            cells[0]
        );
    }
    out
}

/// Whether `got` is `want` with each `…` standing for some text.
pub fn matches(want: &str, got: &str) -> bool {
    let parts: Vec<&str> = want.split('…').collect();
    if parts.len() == 1 {
        return want == got;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !got.starts_with(first) || !got.ends_with(last) || got.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &got[first.len()..got.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// Checks every row with `prefix` against `cases` (ID → the message the code gives), both ways:
/// no row without a case, no case without a row.
pub fn check(prefix: &str, cases: &BTreeMap<&str, String>) {
    let rows = rows(prefix);
    let mut bad = Vec::new();
    for (id, want) in &rows {
        match cases.get(id.as_str()) {
            None => bad.push(format!("{id}: in SECURITY.md, not exercised by the test")),
            Some(got) if !matches(want, got) => bad.push(format!(
                "{id}: SECURITY.md says\n    {want}\n  the code says\n    {got}"
            )),
            Some(_) => {}
        }
    }
    for id in cases.keys() {
        if !rows.contains_key(*id) {
            bad.push(format!(
                "{id}: exercised by the test, missing from SECURITY.md (the code says {:?})",
                cases[id]
            ));
        }
    }
    assert!(bad.is_empty(), "SECURITY.md and the code disagree:\n{}", bad.join("\n"));
}
